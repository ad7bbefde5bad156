"""Inspection commands: plugins, taxonomies, config schema and evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmsurgeon_core.cli import cli

# The console script, which main() runs, as a user would.
LLMSURGEON = str(Path(sys.executable).with_name("llmsurgeon"))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_plugins_json_lists_each_kind_from_plugins():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = json.loads(result.stdout)
    kinds = {}
    for plugin in plugins:
        for kind in plugin["components"]:
            kinds.setdefault(kind, set()).add(plugin["distribution"])
    for kind in ("sampler", "classifier", "solver", "taxonomy"):
        assert kind in kinds
        assert "llmsurgeon-core" not in kinds[kind]
    assert all(not plugin["errors"] for plugin in plugins)


def test_config_schema_includes_plugin_options():
    result = invoke("config", "schema")
    assert result.exit_code == 0, result.output
    text = result.stdout
    schema = json.loads(text)
    assert "taxonomy" in schema["properties"]
    assert "max_new_tokens" in text
    assert "Number of texts to draw." in text


def test_taxonomy_show_lists_domains_and_recipe():
    result = invoke("taxonomy", "show", "demo")
    assert result.exit_code == 0, result.output
    assert "- speech:" in result.stdout
    assert "recipe demo-target" in result.stdout


def test_taxonomies_json_names_demo():
    result = invoke("taxonomies", "--json")
    names = [row["name"] for row in json.loads(result.stdout)]
    assert "demo" in names


def test_taxonomy_validate_reports_bad_parent(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("domains:\n  - {id: a}\n  - {id: b, parent: c}\n")
    result = invoke("taxonomy", "validate", str(path))
    assert result.exit_code == 2
    assert "unknown parent 'c'" in result.stderr


def test_taxonomy_validate_accepts_good_file(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text("domains:\n  - {id: a}\n  - {id: b, parent: a}\n")
    result = invoke("taxonomy", "validate", str(path))
    assert result.exit_code == 0
    assert "2 domains" in result.stdout


def test_evaluate_against_recipe_and_file(tmp_path):
    domains = ["legal", "speech", "python", "cpp", "readme"]
    estimate = dict(zip(domains, [0.1, 0.3, 0.25, 0.15, 0.2]))
    naive = dict(zip(domains, [0.2, 0.2, 0.2, 0.2, 0.2]))
    result_path = tmp_path / "result.json"
    result_path.write_text(
        json.dumps({"taxonomy": "demo", "domains": domains, "estimate": estimate, "naive": naive})
    )
    result = invoke("evaluate", str(result_path), "--truth", "demo-target")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["estimate"]["overlap_accuracy"] == 1.0
    assert metrics["naive"]["overlap_accuracy"] < 1.0

    truth_path = tmp_path / "truth.yaml"
    truth_path.write_text("legal: 1\n")
    metrics = json.loads(invoke("evaluate", str(result_path), "--truth", str(truth_path)).stdout)
    assert metrics["estimate"]["overlap_accuracy"] == 0.1


def test_evaluate_unknown_recipe_exits_2(tmp_path):
    result_path = tmp_path / "result.json"
    result_path.write_text(
        json.dumps({"taxonomy": "demo", "domains": ["a"], "estimate": {"a": 1}, "naive": {"a": 1}})
    )
    result = invoke("evaluate", str(result_path), "--truth", "nope")
    assert result.exit_code == 2


def test_taxonomy_validate_sources_finds_empty_glob(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(
        "domains:\n"
        "  - {id: a, sources: [{kind: files, glob: 'missing/*.txt'}]}\n"
        "  - {id: b, sources: [{kind: files, glob: 'missing/*.txt'}]}\n"
    )
    assert invoke("taxonomy", "validate", str(path)).exit_code == 0
    result = invoke("taxonomy", "validate", "--sources", str(path))
    assert result.exit_code == 2
    assert "error:" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["estimate", "."], "is a directory; run `llmsurgeon estimate --help`"),
        (["plugin", "new", "x", "--kind", "nokind"], "'nokind' is not one of"),
        (["nosuchcommand"], "No such command 'nosuchcommand'; run `llmsurgeon --help`"),
    ],
    ids=["directory-as-config", "bad-choice", "unknown-command"],
)
def test_console_usage_error_is_one_line(tmp_path, args, fragment):
    done = subprocess.run(
        [LLMSURGEON, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert done.stdout == ""


def test_console_help_exits_0(tmp_path):
    done = subprocess.run(
        [LLMSURGEON, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0
    assert done.stdout.startswith("Usage: llmsurgeon")
