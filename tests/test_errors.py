"""Invalid input and damaged run files end in one line and the right exit status."""

from __future__ import annotations

import os
import stat

from click.testing import CliRunner

from llmsurgeon_core.cli import cli
from llmsurgeon_core.storage import atomic_directory, atomic_write_text


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, status: int, text: str) -> None:
    assert result.exit_code == status, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert text in lines[0]


def test_negative_truth_share_rejected(tmp_path):
    result = invoke(
        "sample",
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "truth={legal: -1, speech: 1}",
    )
    assert_one_line_error(result, 2, "non-negative")


def test_empty_run_dir_rejected():
    assert_one_line_error(invoke("sample", "--set", "run_dir="), 2, "run_dir must name")


def test_damaged_sampling_file_names_file(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "sampling.json").write_text("{not json")
    result = invoke("sample", "--run-dir", str(run_dir))
    assert_one_line_error(result, 2, "sampling.json")
    assert (run_dir / "sampling.json").read_text() == "{not json"


def test_base_url_without_scheme_rejected(tmp_path):
    result = invoke(
        "sample",
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "sampler={name: openai, options: {base_url: notaurl, model: m}}",
    )
    assert_one_line_error(result, 2, "sampler.options.base_url")


def test_atomic_files_follow_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "text")
        with atomic_directory(tmp_path / "calibration") as staging:
            (staging / "file").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "calibration").stat().st_mode) == 0o755
