"""MkDocs hooks that generate the reference pages from the installed code.

``mkdocs.yml`` names this file under ``hooks:``. Before the build reads the
docs folder, :func:`on_files` adds three pages that exist only in the build:

- ``reference/hooks.md`` from the hook specifications and their docstrings,
- ``reference/config.md`` from the config's pydantic models and the
  ``Options`` model of every installed component,
- ``reference/cli.md`` from the click commands, plugin commands included.

The pages describe what is installed where the docs are built, so they
cannot drift from the code.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

import click
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llmsurgeon_core import hookspecs
from llmsurgeon_core.components import ComponentOptions
from llmsurgeon_core.config import AuditConfig
from llmsurgeon_core.registry import KINDS, Registry, load_registry

# Sphinx roles in docstrings, e.g. :class:`~llmsurgeon_core.Sampler`, shown as code.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc):`~?([^`]+)`")
# A section comment of hookspecs.py, such as "# Components", above the hooks it groups.
_SECTION = re.compile(r"^# (\S.*)$")


def _markdown(docstring: str | None) -> str:
    """Turn a reStructuredText-flavoured docstring into Markdown."""
    text = inspect.cleandoc(docstring or "")
    text = _ROLE.sub(r"`\1`", text)
    return text.replace("``", "`")


# Hooks


def hook_specs() -> list[tuple[str, Callable[..., Any]]]:
    """Return ``(section, function)`` for every hook specification, in source order."""
    source = inspect.getsource(hookspecs).splitlines()
    specs = [
        value
        for value in vars(hookspecs).values()
        if inspect.isfunction(value) and hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
    ]
    specs.sort(key=lambda function: inspect.getsourcelines(function)[1])
    result = []
    for function in specs:
        line = inspect.getsourcelines(function)[1]
        titles = [_SECTION.match(text) for text in source[: line - 1]]
        found = [match.group(1) for match in titles if match]
        result.append((found[-1] if found else "Hooks", function))
    return result


def _implementers(registry: Registry, hook_name: str) -> list[str]:
    caller = getattr(registry.plugin_manager.hook, hook_name)
    return sorted(impl.plugin_name for impl in caller.get_hookimpls())


def render_hooks(registry: Registry) -> str:
    """Render the hook reference page."""
    lines = ["# Hook reference", "", _markdown(hookspecs.__doc__), ""]
    section = None
    for title, function in hook_specs():
        if title != section:
            lines += [f"## {title}", ""]
            section = title
        # The module postpones annotations, so the signature contains them as strings.
        signature = str(inspect.signature(function)).replace("'", "")
        implementers = _implementers(registry, function.__name__)
        lines += [
            f"### `{function.__name__}`",
            "",
            "```python",
            f"@hookimpl\ndef {function.__name__}{signature}: ...",
            "```",
            "",
            _markdown(function.__doc__),
            "",
            "Implemented by the installed plugins: "
            + (", ".join(f"`{name}`" for name in implementers) or "none")
            + ".",
            "",
        ]
    return "\n".join(lines)


# Config


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(member) for member in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        # A nested model's own fields follow in the rows below its key.
        value = value.model_dump(mode="json", exclude_defaults=True)
        if not value:
            return "see below"
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """Return the pydantic model that ``annotation`` names, alone or with ``None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _nested_model(members[0]) if len(members) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_rows(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Yield one table row per field, then the rows of nested models' fields."""
    nested = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _nested_model(field.annotation)
        type_name = _cell(_type_name(field.annotation))
        description = field.description or (_markdown(inner.__doc__) if inner else "")
        yield f"| `{key}` | `{type_name}` | {_default(field)} | {_cell(description)} |"
        if inner is not None:
            nested.append((key, inner))
    for key, inner in nested:
        yield from _model_rows(inner, f"{key}.")


def render_model(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Render a pydantic model's fields, nested ones included, as a Markdown table."""
    return [
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
        *_model_rows(model, prefix),
    ]


def render_config(registry: Registry) -> str:
    """Render the config reference page: the audit config, then every component's options."""
    lines = [
        "# Config reference",
        "",
        "An audit config is a YAML or TOML file validated by the pydantic models below.",
        "Unknown keys are rejected. `llmsurgeon config schema` prints the same fields as",
        "JSON Schema, and `--set KEY=VALUE` overrides any of them on the command line.",
        "",
        "## Audit config",
        "",
        _markdown(AuditConfig.__doc__),
        "",
        *render_model(AuditConfig),
        "",
        "## Component options",
        "",
        "The `options` mapping of `sampler`, `classifier` and `solver` (and of any other",
        "component kind) is validated by the chosen component's `Options` model. These are",
        "the components of the plugins installed where this page was built.",
        "",
    ]
    for kind in KINDS:
        options_models = []
        for name in registry.names(kind):
            registration = registry.get(kind, name)
            options = getattr(registration.obj, "Options", None)
            if _nested_model(options) is not None:
                options_models.append((name, registration.plugin, options))
        for name, plugin, options in options_models:
            # The base class's docstring describes no component that inherits it.
            own_doc = "" if options is ComponentOptions else _markdown(options.__doc__)
            lines += [
                f"### {kind} `{name}`",
                "",
                f"Registered by the plugin `{plugin}`. {own_doc}".rstrip(),
                "",
            ]
            lines += render_model(options, f"{kind}.options.") if options.model_fields else []
            lines.append("" if options.model_fields else "This component has no options.\n")
    taxonomies = registry.names("taxonomy")
    if taxonomies:
        lines += [
            "## Registered taxonomies",
            "",
            "`taxonomy` takes one of these names, or the path of a taxonomy file.",
            "",
            ", ".join(f"`{name}`" for name in taxonomies),
            "",
        ]
    return "\n".join(lines)


# Command line


def _with_plugin_commands(registry: Registry) -> tuple[click.Group, dict[str, str]]:
    """Return a copy of the ``llmsurgeon`` group with plugin commands added, and who added each.

    The copy leaves the importable group as it is, for whatever else runs in this process.
    """
    from llmsurgeon_core.cli import cli as core_cli

    cli = copy.copy(core_cli)
    cli.commands = dict(core_cli.commands)
    owners = {}
    for impl in registry.plugin_manager.hook.register_commands.get_hookimpls():
        before = set(cli.commands)
        impl.function(cli=cli)
        owners.update({name: impl.plugin_name for name in set(cli.commands) - before})
    return cli, owners


def _command_sections(
    command: click.Command, context: click.Context, owners: dict[str, str]
) -> Iterator[str]:
    if context.parent is not None:
        owner = owners.get(context.info_name or "")
        yield f"## `{context.command_path}`"
        yield ""
        if owner:
            yield f"Added by the plugin `{owner}`."
            yield ""
        yield "```text"
        yield command.get_help(context)
        yield "```"
        yield ""
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is None or sub.hidden:
                continue
            child = click.Context(sub, info_name=name, parent=context, terminal_width=88)
            yield from _command_sections(sub, child, owners)


def render_cli(registry: Registry) -> str:
    """Render the command-line reference page from each command's ``--help``."""
    cli, owners = _with_plugin_commands(registry)
    root = click.Context(cli, info_name="llmsurgeon", terminal_width=88)
    lines = [
        "# Command-line reference",
        "",
        "Every `llmsurgeon` command with its `--help` text, including the commands that",
        "installed plugins add. Exit status 0 means success, 2 invalid input or config,",
        "and 1 any other failure.",
        "",
        "```text",
        cli.get_help(root),
        "```",
        "",
        *_command_sections(cli, root, owners),
    ]
    return "\n".join(lines)


GENERATED_PAGES: dict[str, Callable[[Registry], str]] = {
    "reference/hooks.md": render_hooks,
    "reference/config.md": render_config,
    "reference/cli.md": render_cli,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages to the build."""
    registry = load_registry()
    for uri, render in GENERATED_PAGES.items():
        files.append(File.generated(config, uri, content=render(registry)))
    return files
