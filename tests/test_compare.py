"""`llmsurgeon compare` over real runs of the small real-text audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmsurgeon_core.cli import cli

pytestmark = pytest.mark.slow

# Word n-grams alone keep each audit to a few seconds.
AUDIT_OVERRIDES = ("truth=even", "classifier.options.char_ngrams=null")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def audit(config: Path, run_dir: Path, *overrides: str) -> Path:
    sets = [arg for override in (*AUDIT_OVERRIDES, *overrides) for arg in ("--set", override)]
    result = invoke("audit", str(config), "--run-dir", str(run_dir), *sets)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run_dir


@pytest.fixture
def one_run(small_audit) -> Path:
    return audit(small_audit.config, small_audit.root / "step-1")


@pytest.fixture
def two_runs(small_audit) -> tuple[Path, Path]:
    """Audit the same texts twice: all of them, then a shuffled subset, as two checkpoints would."""
    first = audit(small_audit.config, small_audit.root / "step-1")
    second = audit(
        small_audit.config,
        small_audit.root / "step-2",
        f"calibration={first / 'calibration'}",
        "sampler.options.shuffle=true",
        "sampler.options.n_samples=30",
    )
    return first, second


def read_result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_compare_tables_and_files(two_runs, tmp_path: Path) -> None:
    first, second = two_runs
    output = invoke("compare", str(first), str(second))
    assert output.exit_code == 0, output.output
    lines = output.stdout.splitlines()
    assert lines[0] == "# Mixture comparison: small"
    assert "| domain | step-1 | step-2 | known |" in lines
    for domain in read_result(first)["domains"]:
        row = next(line for line in lines if line.startswith(f"| {domain} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for run_dir, cell in zip(two_runs, cells[1:3]):
            result = read_result(run_dir)
            low, high = result["interval"][domain]
            expected = f"{100 * result['estimate'][domain]:.1f} "
            expected += f"({100 * low:.1f}–{100 * high:.1f})"
            assert cell == expected
        assert cells[3] == "33.3"
    metrics_row = next(line for line in lines if line.startswith("| step-2 |"))
    assert f"{read_result(second)['metrics']['overlap_accuracy']:.4f}" in metrics_row
    assert "| 30 |" in metrics_row

    as_json = invoke("compare", str(first), str(second / "result.json"), "--json")
    assert as_json.exit_code == 0, as_json.output
    comparison = json.loads(as_json.stdout)
    assert comparison["taxonomy"] == "small"
    assert [run["label"] for run in comparison["runs"]] == ["step-1", "step-2"]
    assert comparison["runs"][1]["n_samples"] == 30
    assert comparison["runs"][0]["estimate"] == read_result(first)["estimate"]
    assert comparison["runs"][1]["metrics"] == read_result(second)["metrics"]

    # --output writes the same Markdown, the HTML page and the trajectory plot.
    output = tmp_path / "comparison"
    result = invoke("compare", str(first), str(second), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in output.iterdir()) == [
        "compare.html",
        "compare.md",
        "trajectory.png",
    ]
    assert (output / "compare.md").read_text(encoding="utf-8") == result.stdout
    png = (output / "trajectory.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000
    html = (output / "compare.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    assert "http://" not in html
    assert "https://" not in html
    for domain in read_result(first)["domains"]:
        assert f"{domain}</td>" in html
    assert html.count('<th class="num">step-') == 2


def test_compare_rejects_other_taxonomy_or_domains(one_run, tmp_path: Path) -> None:
    other = tmp_path / "other-model"
    shutil.copytree(one_run, other)
    result = read_result(other)
    result["taxonomy"] = "dolma"
    (other / "result.json").write_text(json.dumps(result))
    output = invoke("compare", str(one_run), str(other))
    assert output.exit_code == 2
    assert "'step-1' (taxonomy 'small')" in output.stderr
    assert "'other-model' (taxonomy 'dolma')" in output.stderr

    fewer = tmp_path / "fewer-domains"
    fewer.mkdir()
    result = read_result(one_run)
    dropped = result["domains"].pop()
    for key in ("estimate", "naive", "interval", "truth"):
        result[key].pop(dropped)
    (fewer / "result.json").write_text(json.dumps(result))
    output = invoke("compare", str(one_run), str(fewer))
    assert output.exit_code == 2
    assert "'step-1' and 'fewer-domains'" in output.stderr
    assert "different domains" in output.stderr


def test_compare_rejects_missing_damaged_or_single(one_run, tmp_path: Path) -> None:
    missing = invoke("compare", str(one_run), str(tmp_path / "no-run"))
    assert missing.exit_code == 2
    assert "has no result.json" in missing.stderr
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "result.json").write_text("{not json")
    output = invoke("compare", str(one_run), str(damaged))
    assert output.exit_code == 2
    assert "cannot be read" in output.stderr
    single = invoke("compare", str(one_run))
    assert single.exit_code == 2
    assert "at least two runs" in single.stderr


def test_compare_labels_clashing_names_by_path(one_run, tmp_path: Path) -> None:
    clash = tmp_path / "elsewhere" / "step-1"
    shutil.copytree(one_run, clash)
    output = invoke("compare", str(one_run), str(clash), "--json")
    assert output.exit_code == 0, output.output
    labels = [run["label"] for run in json.loads(output.stdout)["runs"]]
    assert labels == [str(one_run), str(clash)]


def test_compare_lists_differing_known_mixtures(one_run, tmp_path: Path) -> None:
    other = tmp_path / "other-recipe"
    shutil.copytree(one_run, other)
    result = read_result(other)
    result["truth"] = {"legal": 0.5, "speech": 0.25, "python": 0.25}
    (other / "result.json").write_text(json.dumps(result))
    output = invoke("compare", str(one_run), str(other))
    assert output.exit_code == 0, output.output
    lines = output.stdout.splitlines()
    assert "| domain | step-1 | other-recipe |" in lines
    assert "Known mixture % per run:" in lines
    assert "| legal | 33.3 | 50.0 |" in lines
