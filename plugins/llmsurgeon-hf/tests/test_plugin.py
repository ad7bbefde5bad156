"""Tests of the plugin hooks and the ``train-target`` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llmsurgeon_core import ConfigError, InvalidInputError, load_registry
from llmsurgeon_hf import plugin
from llmsurgeon_hf.commands import parse_mixture
from llmsurgeon_hf.sampler import HFSampler
from llmsurgeon_hf.train import TARGET_FILE


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("llmsurgeon")
    plugin.register_commands(cli=group)
    return group


def test_entry_point_registers_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSURGEON_LOAD_PLUGINS", "llmsurgeon-hf")
    registry = load_registry()
    registration = registry.get("sampler", "hf")
    assert registration.obj is HFSampler
    assert registration.plugin == "hf"
    assert registry.load_errors() == {}
    assert registry.plugins["hf"].hooks == ["register_commands", "register_samplers"]


def test_hooks_import_no_torch() -> None:
    code = (
        "import sys, click\n"
        "from llmsurgeon_hf import plugin\n"
        "plugin.register_samplers(register=lambda name, cls: None)\n"
        "plugin.register_commands(cli=click.Group())\n"
        "heavy = sorted({'torch', 'transformers', 'tokenizers'} & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_command_registered(cli: click.Group) -> None:
    assert "train-target" in cli.commands


def test_train_target_command(cli: click.Group, taxonomy_file: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "target"
    arguments = ["train-target", "--taxonomy", str(taxonomy_file), "--out", str(output_dir)]
    arguments += ["--mixture", "speech=2,licence=1", "--tokens", "4000", "--seed", "3"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{output_dir}\n"
    assert "training a target" in result.stderr
    target = json.loads((output_dir / TARGET_FILE).read_text(encoding="utf-8"))
    assert target["mixture"] == pytest.approx({"speech": 2 / 3, "licence": 1 / 3, "python": 0})
    assert target["training"]["seed"] == 3
    assert target["training"]["tokens"] == 4000


def test_train_target_command_recipe(cli: click.Group, taxonomy_file: Path, tmp_path: Path) -> None:
    arguments = ["train-target", "--taxonomy", str(taxonomy_file), "--recipe", "even"]
    arguments += ["--out", str(tmp_path / "target"), "--tokens", "2000"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    target = json.loads((tmp_path / "target" / TARGET_FILE).read_text(encoding="utf-8"))
    assert target["mixture"] == pytest.approx({"speech": 1 / 3, "licence": 1 / 3, "python": 1 / 3})


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (["--mixture", "speach=1,licence=1"], "'speach'.*did you mean 'speech'"),
        (["--mixture", "speech=-1,licence=1"], "not a finite non-negative number"),
        (["--mixture", "speech=0,licence=0"], "no positive share"),
        (["--mixture", "speech=abc"], "invalid share 'abc'"),
        (["--mixture", "speech:1"], "write id=share items"),
        (["--mixture", "speech=1,speech=2"], "appears twice"),
        (["--mixture", "speech=1", "--recipe", "even"], "exactly one of recipe"),
        ([], "exactly one of recipe"),
        (["--recipe", "uneven"], "no recipe 'uneven'"),
        (["--mixture", "speech=1", "--tokens", "0"], "--tokens"),
    ],
)
def test_train_target_command_rejects_input(
    cli: click.Group, taxonomy_file: Path, tmp_path: Path, selection: list[str], message: str
) -> None:
    arguments = ["train-target", "--taxonomy", str(taxonomy_file), "--out", str(tmp_path / "t")]
    result = CliRunner().invoke(cli, [*arguments, *selection])
    assert isinstance(result.exception, InvalidInputError)
    assert re.search(message, str(result.exception))
    assert not (tmp_path / "t").exists()


def test_train_target_command_unknown_taxonomy(cli: click.Group, tmp_path: Path) -> None:
    arguments = ["train-target", "--taxonomy", str(tmp_path / "missing.yaml")]
    arguments += ["--mixture", "a=1", "--out", str(tmp_path / "t")]
    result = CliRunner().invoke(cli, arguments)
    assert isinstance(result.exception, InvalidInputError)
    assert "not found" in str(result.exception)


def test_parse_mixture() -> None:
    assert parse_mixture("speech=0.5, licence = 0.25,python=0") == {
        "speech": 0.5,
        "licence": 0.25,
        "python": 0.0,
    }


def test_parse_mixture_rejects_empty_item() -> None:
    with pytest.raises(ConfigError, match="invalid --mixture item ''"):
        parse_mixture("speech=1,")
