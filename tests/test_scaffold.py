"""Tests of the plugin skeletons that ``llmsurgeon plugin new`` writes."""

from __future__ import annotations

import importlib
import sys

import pytest
from click.testing import CliRunner

from llmsurgeon_core import InvalidInputError, load_registry
from llmsurgeon_core.cli import cli
from llmsurgeon_core.scaffold import PLUGIN_KINDS, write_plugin
from llmsurgeon_core.testing import check_solver

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@pytest.mark.parametrize("kind", PLUGIN_KINDS)
def test_skeleton_files_are_valid(tmp_path, kind):
    root = write_plugin(f"demo-{kind}", kind, tmp_path)

    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package = f"llmsurgeon_demo_{kind}"
    assert pyproject["project"]["name"] == f"llmsurgeon-demo-{kind}"
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    entry_points = pyproject["project"]["entry-points"]["llmsurgeon"]
    assert entry_points == {f"demo-{kind}": f"{package}.plugin"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [package]
    assert (root / "README.md").read_text(encoding="utf-8").startswith(f"# llmsurgeon-demo-{kind}")
    sources = sorted(root.rglob("*.py"))
    assert root / "tests" / "test_conformance.py" in sources
    for path in sources:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_solver_skeleton_registers_conforming_solver(tmp_path, monkeypatch):
    root = write_plugin("scaffolded-solver", "solver", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    for name in list(sys.modules):
        if name.startswith("llmsurgeon_scaffolded_solver"):
            monkeypatch.delitem(sys.modules, name)

    module = importlib.import_module("llmsurgeon_scaffolded_solver.plugin")
    registry = load_registry(extra_plugins=[("scaffolded-solver", module)])

    registration = registry.get("solver", "scaffolded-solver")
    assert registration.plugin == "scaffolded-solver"
    assert registry.plugins["scaffolded-solver"].errors == []
    check_solver(registration.obj)


def test_skeleton_rejects_invalid_input(tmp_path):
    with pytest.raises(InvalidInputError, match="invalid plugin name"):
        write_plugin("Bad_Name", "solver", tmp_path)
    with pytest.raises(InvalidInputError, match="invalid plugin kind"):
        write_plugin("good", "ranker", tmp_path)
    write_plugin("good", "solver", tmp_path)
    with pytest.raises(InvalidInputError, match="not empty"):
        write_plugin("good", "solver", tmp_path)


def test_plugin_new_command(tmp_path):
    runner = CliRunner()

    result = runner.invoke(
        cli, ["plugin", "new", "cli-made", "--kind", "sampler", "--dir", str(tmp_path)]
    )
    again = runner.invoke(
        cli, ["plugin", "new", "cli-made", "--kind", "sampler", "--dir", str(tmp_path)]
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / "llmsurgeon-cli-made" / "llmsurgeon_cli_made" / "sampler.py").is_file()
    assert again.exit_code == 2
    assert "already exists" in again.output
