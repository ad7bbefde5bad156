"""Config files, overrides and the one-line errors of invalid configs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from llmsurgeon_core import ConfigError
from llmsurgeon_core.cli import cli
from llmsurgeon_core.config import load_config

YAML_CONFIG = """
taxonomy: demo
sampler: {name: hf, options: {n_samples: 10}}
run_dir: runs/x
"""

TOML_CONFIG = """
taxonomy = "demo"
run_dir = "runs/x"
[sampler]
name = "hf"
options = {n_samples = 10}
"""


@pytest.mark.parametrize(("suffix", "text"), [(".yaml", YAML_CONFIG), (".toml", TOML_CONFIG)])
def test_yaml_and_toml_load_alike(tmp_path, suffix, text):
    path = tmp_path / f"audit{suffix}"
    path.write_text(text)
    config = load_config(path)
    assert config.taxonomy == "demo"
    assert config.sampler.options == {"n_samples": 10}
    assert config.classifier.name == "tfidf"
    assert config.solver.name == "nnls"


def test_overrides_parse_scalars_and_nest(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text(YAML_CONFIG)
    config = load_config(
        path, ["sampler.options.n_samples=64", "bootstrap.level=0.8", "truth=demo-target"]
    )
    assert config.sampler.options["n_samples"] == 64
    assert config.bootstrap.level == 0.8
    assert config.truth == "demo-target"


def test_unknown_key_names_key_and_allowed(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text(YAML_CONFIG + "bootstrap: {n_resample: 5}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "'bootstrap.n_resample'" in message
    assert "n_resamples" in message


def test_invalid_value_names_key(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text(YAML_CONFIG)
    with pytest.raises(ConfigError, match=r"'bootstrap\.level'"):
        load_config(path, ["bootstrap.level=1.5"])


def test_malformed_yaml_is_config_error(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("taxonomy: [demo\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_override_without_equals_rejected():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["sampler.options.n_samples"])


def test_demo_config_is_valid():
    config = load_config(None)
    assert config.taxonomy == "demo"
    assert config.truth == "demo-target"


def test_cli_invalid_config_exits_2_with_one_line(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text(YAML_CONFIG + "solvr: {name: nnls}\n")
    result = CliRunner().invoke(cli, ["estimate", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'solvr'" in lines[0]


def test_cli_missing_config_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["audit", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_cli_unknown_component_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["estimate", "--set", "solver.name=nnlss"])
    assert result.exit_code == 2
    assert "did you mean 'nnls'" in result.stderr


def test_relative_taxonomy_read_beside_config(tmp_path, monkeypatch):
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "mine.yaml").write_text("domains:\n  - {id: a}\n  - {id: b}\n")
    (folder / "audit.yaml").write_text(YAML_CONFIG.replace("taxonomy: demo", "taxonomy: mine.yaml"))
    monkeypatch.chdir(tmp_path)
    config = load_config(folder / "audit.yaml")
    assert config.taxonomy == str(folder / "mine.yaml")
