"""Registration, options and helpers of the ``ray`` executor, without starting Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from llmsurgeon_core import ConfigError, PluginError, load_registry
from llmsurgeon_core.cli import cli
from llmsurgeon_core.config import load_config
from llmsurgeon_core.pipeline import Run, check_run
from llmsurgeon_ray.executor import _in_sample_order, merge_usage

IMPORT_CHECK = """
import sys
import llmsurgeon_core.cli, llmsurgeon_core.pipeline
from llmsurgeon_core.registry import load_registry
# Registration imports every plugin's component modules, llmsurgeon_ray.executor included.
registry = load_registry()
assert "ray" in registry.names("executor"), registry.names("executor")
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print("ray modules:", loaded)
"""


def test_core_and_plugins_load_without_ray():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "ray modules: []" in result.stdout


def test_registry_lists_local_and_ray():
    registry = load_registry()
    assert registry.get("executor", "local").plugin == "llmsurgeon-core"
    assert registry.get("executor", "ray").plugin == "ray"
    assert registry.plugins["ray"].components == {"executor": ["ray"]}


def test_plugins_command_lists_executors():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {plugin["name"]: plugin for plugin in json.loads(result.stdout)}
    assert listed["llmsurgeon-core"]["components"] == {"executor": ["local"]}
    assert listed["llmsurgeon-core"]["hooks"] == ["register_executors"]
    assert listed["ray"]["components"] == {"executor": ["ray"]}
    assert listed["ray"]["distribution"] == "llmsurgeon-ray"


def test_unknown_executor_suggests_ray():
    with pytest.raises(PluginError, match="did you mean 'ray'"):
        load_registry().get("executor", "rya")


def _run(tmp_path, executor_options: dict[str, object]) -> Run:
    overrides = ["executor.name=ray", f"run_dir={tmp_path / 'run'}"]
    overrides += [f"executor.options.{key}={value}" for key, value in executor_options.items()]
    return Run(load_config(None, overrides))


def test_local_sizes_rejected_with_address(tmp_path):
    run = _run(tmp_path, {"address": "auto", "num_cpus": 4})
    with pytest.raises(ConfigError, match=r"executor\.options.*num_cpus.*ray start"):
        check_run(run)


def test_small_object_store_rejected(tmp_path):
    run = _run(tmp_path, {"object_store_memory": 1000})
    with pytest.raises(ConfigError, match=r"executor\.options\.object_store_memory"):
        check_run(run)


def test_valid_options_pass_check(tmp_path):
    check_run(_run(tmp_path, {"address": "auto", "sampler_replicas": 4}))


def test_merge_usage_sums_counters():
    merged = merge_usage(
        [{"requests": 2, "tokens": 10, "model": "a"}, {"requests": 3, "tokens": 5, "model": "b"}]
    )
    assert merged == {"requests": 5, "tokens": 15, "model": "a"}


def test_rows_put_back_in_sample_order():
    probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    ordered = _in_sample_order(np.array([2, 0, 1]), probs, 3)
    assert ordered.tolist() == [[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]]


@pytest.mark.parametrize("indices", [[0, 2], [0, 1, 1]])
def test_missing_or_repeated_rows_rejected(indices):
    probs = np.full((len(indices), 2), 0.5)
    with pytest.raises(RuntimeError, match="rows for 3 texts"):
        _in_sample_order(np.array(indices), probs, 3)
