"""Plugin discovery through entry points, clashes, load errors and the allow-list."""

from __future__ import annotations

import pytest

from llmsurgeon_core import PluginError, load_registry
from llmsurgeon_core.registry import ALLOW_LIST_VARIABLE

SOLVER_PLUGIN = """
from llmsurgeon_core import hookimpl, Solver, SolveResult

class EchoSolver(Solver):
    def solve(self, confusion, sample_probs, reference_priors):
        return SolveResult(sample_probs.mean(axis=0))

@hookimpl
def register_solvers(register):
    register("{name}", EchoSolver)
"""


def test_entry_point_plugin_is_discovered(install_plugin):
    install_plugin("acme-solver", "acme_solver", SOLVER_PLUGIN.format(name="echo"))
    registry = load_registry()
    registration = registry.get("solver", "echo")
    assert registration.plugin == "acme_solver"
    info = registry.plugins["acme_solver"]
    assert info.distribution == "acme-solver"
    assert info.version == "1.0"
    assert info.hooks == ["register_solvers"]
    assert info.components == {"solver": ["echo"]}


def test_clash_names_both_plugins(install_plugin):
    install_plugin("acme-one", "acme_one", SOLVER_PLUGIN.format(name="same"))
    install_plugin("acme-two", "acme_two", SOLVER_PLUGIN.format(name="same"))
    registry = load_registry()
    with pytest.raises(PluginError, match="acme_one, acme_two"):
        registry.get("solver", "same")
    assert "same" not in registry.names("solver")
    assert registry.plugins["acme_one"].errors
    assert registry.plugins["acme_two"].errors


def test_import_failure_is_reported_and_others_load(install_plugin):
    install_plugin("acme-broken", "acme_broken", "raise ImportError('no such backend')\n")
    install_plugin("acme-good", "acme_good", SOLVER_PLUGIN.format(name="good"))
    registry = load_registry()
    assert registry.get("solver", "good").plugin == "acme_good"
    errors = registry.plugins["acme_broken"].errors
    assert len(errors) == 1
    assert "no such backend" in errors[0]


def test_hook_that_raises_is_reported(install_plugin):
    source = (
        "from llmsurgeon_core import hookimpl\n"
        "@hookimpl\n"
        "def register_solvers(register):\n"
        "    raise RuntimeError('boom')\n"
    )
    install_plugin("acme-raises", "acme_raises", source)
    install_plugin("acme-fine", "acme_fine", SOLVER_PLUGIN.format(name="fine"))
    registry = load_registry()
    assert "boom" in registry.plugins["acme_raises"].errors[0]
    assert registry.get("solver", "fine")


def test_allow_list_limits_plugins(install_plugin, monkeypatch):
    install_plugin("acme-a", "acme_a", SOLVER_PLUGIN.format(name="a"))
    install_plugin("acme-b", "acme_b", SOLVER_PLUGIN.format(name="b"))
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "acme-a")
    registry = load_registry()
    assert "acme_a" in registry.plugins
    assert "acme_b" not in registry.plugins
    monkeypatch.setenv(ALLOW_LIST_VARIABLE, "")
    assert load_registry().plugins == {}


def test_unknown_name_suggests_closest(install_plugin):
    install_plugin("acme-solver", "acme_solver", SOLVER_PLUGIN.format(name="echo"))
    with pytest.raises(PluginError, match="did you mean 'echo'"):
        load_registry().get("solver", "ecko")


def test_core_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, llmsurgeon_core, llmsurgeon_core.cli, llmsurgeon_core.pipeline;"
        "heavy = {'torch', 'transformers', 'lightgbm', 'cvxpy', 'vllm', 'sklearn'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
