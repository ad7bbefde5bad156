"""``llmsurgeon sample`` killed with SIGKILL at random points, then run again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmsurgeon_core.config import load_config
from llmsurgeon_core.pipeline import Run
from llmsurgeon_core.sampling import read_samples

N_SAMPLES = 40


def write_config(directory: Path, model: Path) -> Path:
    config = {
        "taxonomy": "demo",
        "sampler": {
            "name": "hf",
            "options": {
                "model": str(model),
                "n_samples": N_SAMPLES,
                "batch_size": 4,
                "max_new_tokens": 24,
                "seed": 5,
            },
        },
        "run_dir": str(directory / "run"),
    }
    path = directory / "audit.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def sample_until_killed(config: Path, kill_after_lines: int | None) -> str:
    """Run ``llmsurgeon sample``, sending SIGKILL once the file has ``kill_after_lines`` lines."""
    samples = config.parent / "run" / "samples.jsonl"
    command = [str(Path(sys.executable).with_name("llmsurgeon")), "sample", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if kill_after_lines is not None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            lines = samples.read_bytes().count(b"\n") if samples.exists() else 0
            if lines >= kill_after_lines:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    output, _ = process.communicate(timeout=180)
    return output.decode("utf-8", errors="replace")


@pytest.mark.slow
def test_sample_command_resumes_after_kill(tiny_target: Path, tmp_path: Path) -> None:
    reference_dir = tmp_path / "uninterrupted"
    reference_dir.mkdir()
    expected = Run(load_config(write_config(reference_dir, tiny_target))).sample()

    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    config = write_config(killed_dir, tiny_target)
    rng = random.Random(int(time.time()))
    kill_points = sorted(rng.sample(range(1, N_SAMPLES), 2))
    outputs = [sample_until_killed(config, point) for point in kill_points]
    outputs.append(sample_until_killed(config, None))

    assert all("samples in" not in output for output in outputs[:-1]), kill_points
    assert f"{N_SAMPLES} samples in" in outputs[-1]
    records = read_samples(killed_dir / "run" / "samples.jsonl")
    assert [r["id"] for r in records] == list(range(N_SAMPLES)), kill_points
    assert [r["text"] for r in records] == [r["text"] for r in expected], kill_points
    assert records == expected, kill_points
