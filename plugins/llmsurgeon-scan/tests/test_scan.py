"""End-to-end tests of `llmsurgeon scan` on tiny targets of real text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmsurgeon_core.cli import cli
from llmsurgeon_scan.commands import scan_command

MIXTURES = [{"speech": 0.6, "licence": 0.3, "c++": 0.1}, {"speech": 0.2, "c++": 0.8}]


def _write_config(directory: Path, taxonomy_file: Path, solvers: list[str]) -> Path:
    config = {
        "taxonomy": str(taxonomy_file),
        "mixtures": MIXTURES,
        "target": {
            "tokens": 20_000,
            "context": 32,
            "vocab_size": 300,
            "n_layer": 1,
            "n_embd": 16,
            "n_head": 2,
            "batch_size": 16,
            "learning_rate": 0.01,
        },
        "sampling": {"n_samples": 60, "max_new_tokens": 24, "batch_size": 30},
        "reference": {"max_per_domain": 60, "chunk_words": 24, "folds": 3},
        "solvers": [{"name": name} for name in solvers],
        "bootstrap": {"n_resamples": 10},
        "scan_dir": str(directory / "scan"),
    }
    path = directory / "scan.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _run_scan(config: Path) -> dict:
    cli.add_command(scan_command)
    outcome = CliRunner().invoke(cli, ["scan", str(config)], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return json.loads((config.parent / "scan" / "scan.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_scan_table_cache_and_plot(tmp_path: Path, taxonomy_file: Path) -> None:
    first = _run_scan(_write_config(tmp_path, taxonomy_file, ["nnls", "cc"]))
    assert first["counts"] == {"trained": 2, "sampled": 2, "calibrated": 1, "solved": 4}
    assert len(first["targets"]) == 2
    assert len(first["audits"]) == 4
    for audit in first["audits"]:
        assert sum(audit["estimate"].values()) == pytest.approx(1.0)
        assert 0.0 <= audit["metrics"]["overlap_accuracy"] <= 1.0
        assert 0.0 <= audit["coverage"] <= 1.0
        assert 0 < audit["generation"]["tagged_samples"] <= 60
        assert 0.0 <= audit["generation"]["gap"]["overlap_accuracy"] <= 1.0
        assert 0.0 <= audit["generation"]["coverage"] <= 1.0
    assert first["audits"][0]["truth"] == pytest.approx(MIXTURES[0])

    scan_dir = tmp_path / "scan"
    markdown = (scan_dir / "scan.md").read_text(encoding="utf-8")
    assert "| tiny" not in markdown
    assert "| tfidf | naive |" in markdown
    assert "| tfidf | nnls |" in markdown
    assert "| tfidf | cc |" in markdown
    assert "Generation fidelity" in markdown
    assert "- command: `llmsurgeon scan" in markdown
    assert (scan_dir / "scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    names = sorted(path.name for path in (scan_dir / "targets").iterdir())
    assert len(names) == 2
    assert all(name.startswith(("m00-speech60-licence30-c_2b__2b_10-", "m01-")) for name in names)
    assert all("+" not in name for name in names)

    written = {path: path.stat().st_mtime_ns for path in scan_dir.glob("*/*/*.jsonl")}
    written.update({path: path.stat().st_mtime_ns for path in scan_dir.glob("targets/*/*")})
    assert len(written) >= 4
    second = _run_scan(_write_config(tmp_path, taxonomy_file, ["nnls", "cc", "pcc"]))
    assert {path: path.stat().st_mtime_ns for path in written} == written
    assert second["counts"] == {"trained": 0, "sampled": 0, "calibrated": 0, "solved": 2}
    assert len(second["audits"]) == 6
    assert [a["estimate"] for a in second["audits"] if a["solver"] == "nnls"] == [
        a["estimate"] for a in first["audits"] if a["solver"] == "nnls"
    ]


@pytest.mark.slow
def test_generation_calibration_shares_targets(tmp_path: Path, taxonomy_file: Path) -> None:
    reference_scan = _run_scan(_write_config(tmp_path, taxonomy_file, ["nnls"]))
    assert reference_scan["counts"]["calibrated"] == 1

    generation_dir = tmp_path / "generation"
    generation_dir.mkdir()
    config_path = _write_config(generation_dir, taxonomy_file, ["nnls"])
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["calibrate"] = {"mode": "generation", "prompts_per_domain": 8}
    config["targets_dir"] = str(tmp_path / "scan")
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    generation_scan = _run_scan(config_path)

    assert generation_scan["counts"] == {"trained": 0, "sampled": 0, "calibrated": 2, "solved": 2}
    assert not (generation_dir / "scan" / "targets").exists()
    calibrations = sorted((generation_dir / "scan" / "calibrations").iterdir())
    assert len(calibrations) == 2
    for calibration in calibrations:
        stored = json.loads(
            (calibration / "calibration" / "calibration.json").read_text(encoding="utf-8")
        )
        assert stored["mode"] == "generation"
    markdown = (generation_dir / "scan" / "scan.md").read_text(encoding="utf-8")
    assert "- calibration: C from each target's continuations of 8 reference" in markdown
    reference_markdown = (tmp_path / "scan" / "scan.md").read_text(encoding="utf-8")
    assert "- calibration: C from out-of-fold predictions of reference text" in reference_markdown
