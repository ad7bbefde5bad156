"""Crash safety: SIGKILL at seeded random points of every stage, the run lock, and
byte-identical results from the same config and seed."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmsurgeon_core.cli import cli
from llmsurgeon_core.sampling import read_samples

pytestmark = pytest.mark.slow

LLMSURGEON = str(Path(sys.executable).with_name("llmsurgeon"))
STAGES = ("calibrate", "sample", "estimate")
# Seeds the kill points, so a failure can be rerun with the same ones.
KILL_SEED = 20240


def environment(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "LLMSURGEON_CACHE_DIR": str(root / "cache"),
    }


def run_stage(
    stage: str,
    config: Path,
    run_dir: Path,
    kill_when: Callable[[float], bool] | None = None,
) -> tuple[int, str, float]:
    """Run one stage in a subprocess; SIGKILL it once ``kill_when(elapsed)`` is true.

    Returns the exit status (negative for a signal), the output and the seconds it ran.
    """
    command = [LLMSURGEON, stage, str(config), "--run-dir", str(run_dir)]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment(config.parent),
    )
    if kill_when is not None:
        while process.poll() is None:
            if kill_when(time.monotonic() - started):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    output, _ = process.communicate(timeout=300)
    return process.returncode, output.decode("utf-8", "replace"), time.monotonic() - started


def after_seconds(seconds: float) -> Callable[[float], bool]:
    return lambda elapsed: elapsed >= seconds


def once_exists(pattern_dir: Path, prefix: str, extra: float) -> Callable[[float], bool]:
    """Return a trigger that fires ``extra`` seconds after a name with ``prefix`` appears."""
    seen_at: list[float] = []

    def trigger(elapsed: float) -> bool:
        if not seen_at and pattern_dir.exists():
            if any(p.name.startswith(prefix) for p in pattern_dir.iterdir()):
                seen_at.append(elapsed)
        return bool(seen_at) and elapsed >= seen_at[0] + extra

    return trigger


def once_lines(path: Path, lines: int) -> Callable[[float], bool]:
    def trigger(elapsed: float) -> bool:
        return path.exists() and path.read_bytes().count(b"\n") >= lines

    return trigger


def kill_points(
    stage: str, run_dir: Path, duration: float, rng: random.Random, n_samples: int
) -> list[Callable[[float], bool]]:
    """Return two kill triggers for ``stage``: one at a random time, one at a random event."""
    at_random_time = after_seconds(rng.uniform(0.4, 1.0) * duration)
    if stage == "calibrate":
        event = once_exists(run_dir, ".calibration", rng.uniform(0.0, 0.05))
    elif stage == "sample":
        event = once_lines(run_dir / "samples.jsonl", rng.randrange(1, n_samples))
    else:
        event = once_exists(run_dir, "predictions.npz", rng.uniform(0.0, 0.3))
    return [at_random_time, event]


@pytest.fixture
def single_batch_audit(small_audit):
    """The small audit with one sample per batch, so a kill lands between many appends."""
    config = yaml.safe_load(small_audit.config.read_text())
    config["sampler"]["options"]["batch_size"] = 1
    small_audit.config.write_text(yaml.safe_dump(config))
    return small_audit


def test_kill_at_random_points_then_rerun(single_batch_audit):
    audit = single_batch_audit
    clean_dir = audit.root / "clean"
    durations = {}
    for stage in STAGES:
        status, output, durations[stage] = run_stage(stage, audit.config, clean_dir)
        assert status == 0, output
    clean_samples = read_samples(clean_dir / "samples.jsonl")

    rng = random.Random(KILL_SEED)
    crashed_dir = audit.root / "crashed"
    outcomes = []
    for stage in STAGES:
        for trigger in kill_points(stage, crashed_dir, durations[stage], rng, len(clean_samples)):
            status, output, _ = run_stage(stage, audit.config, crashed_dir, trigger)
            outcomes.append((stage, status))
            assert status in (0, -signal.SIGKILL), output
            # Whatever the kill left, the samples written so far are whole and in order.
            stored = read_samples(crashed_dir / "samples.jsonl")
            assert [r["id"] for r in stored] == list(range(len(stored)))
        status, output, _ = run_stage(stage, audit.config, crashed_dir)
        assert status == 0, output

    assert any(status == -signal.SIGKILL for _, status in outcomes), outcomes
    resumed = read_samples(crashed_dir / "samples.jsonl")
    assert [r["id"] for r in resumed] == [r["id"] for r in clean_samples]
    assert [r["text"] for r in resumed] == [r["text"] for r in clean_samples]
    assert (crashed_dir / "samples.jsonl").read_bytes() == (
        clean_dir / "samples.jsonl"
    ).read_bytes()
    assert (crashed_dir / "result.json").read_bytes() == (clean_dir / "result.json").read_bytes()
    summary = json.loads((crashed_dir / "calibration" / "calibration.json").read_text())
    assert summary == json.loads((clean_dir / "calibration" / "calibration.json").read_text())
    # The reruns removed the temporary files that the killed writers left.
    assert sorted(p.name for p in crashed_dir.iterdir() if p.name.startswith(".")) == [".lock"]


def test_second_process_on_run_dir_rejected(small_audit):
    run_dir = small_audit.root / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "a+") as handle:
        # The test process holds the lock, as a running audit would.
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, output, _ = run_stage("sample", small_audit.config, run_dir)
    assert status == 2, output
    lines = output.strip().splitlines()
    assert lines == [
        f"error: run directory {str(run_dir)!r} is in use by another llmsurgeon process; "
        "wait for it or choose another run_dir"
    ]
    assert not (run_dir / "samples.jsonl").exists()


def test_same_config_and_seed_give_identical_files(small_audit):
    outputs = []
    for name in ("first", "second"):
        run_dir = small_audit.root / name
        result = CliRunner().invoke(
            cli, ["audit", str(small_audit.config), "--run-dir", str(run_dir)]
        )
        assert result.exit_code == 0, result.output
        outputs.append(run_dir)
    first, second = outputs
    for name in ("result.json", "report.md", "samples.jsonl", "calibration/calibration.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # The manifests differ only in what belongs there: the run directory and the times.
    manifests = [json.loads((d / "manifest.json").read_text()) for d in outputs]
    for manifest in manifests:
        manifest["config"].pop("run_dir")
        for stage in manifest["stages"].values():
            stage.pop("finished_at")
    assert manifests[0] == manifests[1]


def test_every_run_file_is_fsynced_before_rename(small_audit, monkeypatch):
    synced: set[Path] = set()
    renames: dict[Path, Path] = {}
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(descriptor: int) -> None:
        synced.add(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def recording_replace(source, target) -> None:
        renames[Path(target).resolve()] = Path(source).resolve()
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    result = CliRunner().invoke(cli, ["audit", str(small_audit.config)])
    monkeypatch.undo()
    assert result.exit_code == 0, result.output

    run_dir = (small_audit.root / "run").resolve()
    unsafe = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"):
        # A file inside a renamed directory was written under the temporary name.
        written, parent = path, path
        while parent != run_dir and parent not in renames:
            parent = parent.parent
        if parent in renames:
            written = renames[parent] / path.relative_to(parent)
        if written not in synced:
            unsafe.append(str(path.relative_to(run_dir)))
    assert unsafe == []
    assert {renames[run_dir / n].parent for n in ("result.json", "manifest.json")} == {run_dir}
