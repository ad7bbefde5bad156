"""``llmsurgeon install`` and ``uninstall``: pip in llmsurgeon's own environment.

Both commands run ``python -m pip`` with the interpreter that runs llmsurgeon,
so a plugin lands where llmsurgeon finds it, then report the plugins that
appeared, disappeared or changed version. The registry is read before and
after pip in a fresh interpreter, because a running process keeps the entry
points and modules it has already imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import click

from .errors import LlmsurgeonError
from .registry import ALLOW_LIST_VARIABLE

__all__ = [
    "PluginChange",
    "PluginSnapshot",
    "diff_snapshots",
    "install",
    "plugin_distributions",
    "read_snapshot",
    "run_pip",
    "uninstall",
]

# Entry-point name -> ``PluginInfo.to_json()``, as ``python -m llmsurgeon_core.plugin_manager``
# prints it in the fresh interpreter.
PluginSnapshot = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PluginChange:
    """A plugin that pip added, removed or replaced with another version."""

    change: str  # "added", "removed" or "changed"
    name: str
    plugin: dict[str, Any]
    previous_version: str | None = None

    def describe(self) -> str:
        """Render the change with the plugin's components by kind, then its load errors."""
        version = self.plugin.get("version")
        if self.change == "changed":
            version = f"{self.previous_version} -> {version}"
        components = self.plugin.get("components") or {}
        provided = "; ".join(f"{kind} {', '.join(names)}" for kind, names in components.items())
        line = f"{self.change} plugin {self.name} ({self.plugin.get('distribution')} {version})"
        if provided:
            line += f": {provided}"
        for error in self.plugin.get("errors") or []:
            line += f"\n  error: {error}"
        return line


def read_snapshot() -> PluginSnapshot:
    """Return every installed plugin by entry-point name, read by a fresh interpreter.

    The allow-list variable is dropped for that interpreter, so a plugin that
    pip installed shows up even where the allow-list would not load it.

    Raises:
        LlmsurgeonError: if the interpreter fails to list the plugins.
    """
    environment = {k: v for k, v in os.environ.items() if k != ALLOW_LIST_VARIABLE}
    completed = subprocess.run(
        [sys.executable, "-m", __name__],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise LlmsurgeonError(f"failed to list the installed plugins: {last_line}")
    return json.loads(completed.stdout)


def diff_snapshots(before: PluginSnapshot, after: PluginSnapshot) -> list[PluginChange]:
    """Return the plugins added, removed or changed in version, sorted by name."""
    changes = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            changes.append(PluginChange("added", name, after[name]))
        elif name not in after:
            changes.append(PluginChange("removed", name, before[name]))
        elif before[name].get("version") != after[name].get("version"):
            changes.append(PluginChange("changed", name, after[name], before[name].get("version")))
    return changes


def run_pip(command: str, arguments: list[str]) -> int:
    """Run ``python -m pip COMMAND ARGUMENTS`` in this interpreter; return pip's exit status."""
    return subprocess.run(
        [sys.executable, "-m", "pip", command, *arguments], check=False
    ).returncode


def _is_distribution(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def plugin_distributions(arguments: list[str], snapshot: PluginSnapshot) -> list[str]:
    """Replace each argument that names a plugin but no distribution by the plugin's distribution.

    So ``llmsurgeon uninstall my-solver`` removes ``llmsurgeon-my-solver``, while
    a name that is an installed distribution is passed to pip unchanged.
    """
    replaced = []
    for argument in arguments:
        distribution = (snapshot.get(argument) or {}).get("distribution")
        if distribution and not argument.startswith("-") and not _is_distribution(argument):
            click.echo(f"{argument} is a plugin of the distribution {distribution}", err=True)
            argument = distribution
        replaced.append(argument)
    return replaced


def _pip_with_report(
    command: str, arguments: list[str], before: PluginSnapshot | None = None
) -> None:
    before = read_snapshot() if before is None else before
    status = run_pip(command, arguments)
    if status != 0:
        raise LlmsurgeonError(
            f"pip {command} failed with exit status {status}; see pip's output above"
        )
    changes = diff_snapshots(before, read_snapshot())
    for change in changes:
        click.echo(change.describe())
    if not changes:
        click.echo("no llmsurgeon plugin was added, removed or changed", err=True)


_PIP_ARGUMENTS = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@click.command(context_settings=_PIP_ARGUMENTS)
@click.argument("arguments", nargs=-1, required=True, type=click.UNPROCESSED)
def install(arguments: tuple[str, ...]) -> None:
    """Install plugins with pip into llmsurgeon's environment.

    ARGUMENTS go to `pip install` unchanged, e.g. `llmsurgeon install -e DIR`
    or `llmsurgeon install llmsurgeon-cvxpy`. Prints the plugins that appeared,
    disappeared or changed version.
    """
    _pip_with_report("install", list(arguments))


@click.command(context_settings=_PIP_ARGUMENTS)
@click.argument("arguments", nargs=-1, required=True, type=click.UNPROCESSED)
def uninstall(arguments: tuple[str, ...]) -> None:
    """Uninstall distributions with pip from llmsurgeon's environment.

    ARGUMENTS go to `pip uninstall` with `--yes` added, so pip does not ask
    for confirmation. A plugin name that is not also a distribution's name
    (`my-solver`) is replaced by its distribution (`llmsurgeon-my-solver`).
    Prints the plugins that disappeared.
    """
    before = read_snapshot()
    arguments_with_yes = plugin_distributions(list(arguments), before)
    if not {"-y", "--yes"} & set(arguments_with_yes):
        arguments_with_yes.insert(0, "--yes")
    _pip_with_report("uninstall", arguments_with_yes, before)


def _print_snapshot() -> None:
    from .registry import load_registry

    registry = load_registry()
    plugins = {name: info.to_json() for name, info in registry.plugins.items()}
    sys.stdout.write(json.dumps(plugins) + "\n")


if __name__ == "__main__":
    _print_snapshot()
