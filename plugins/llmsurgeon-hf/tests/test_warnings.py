"""Training a target and sampling it leave transformers with nothing to warn about.

transformers logs most warnings once per process, so the check runs in a
fresh interpreter and reads what it wrote to stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llmsurgeon_hf.train import TargetTraining

TRAIN_AND_SAMPLE = """
import sys
from pathlib import Path

from llmsurgeon_core import SampleRequest
from llmsurgeon_hf import HFSampler
from llmsurgeon_hf.train import TargetTraining, train_target

training = TargetTraining.model_validate_json(sys.argv[1])
workdir = Path(sys.argv[2])
target = train_target(training, workdir / "target")
for prompt in ("bos", "neutral"):
    options = HFSampler.Options(
        model=str(target), n_samples=6, batch_size=3, max_new_tokens=8, prompt=prompt
    )
    sampler = HFSampler(options)
    sampler.prepare(workdir)
    sampler.generate(SampleRequest(indices=[0, 1, 2, 3, 4, 5], seed=0))
print("sampled", file=sys.stderr)
"""


def test_train_and_sample_without_warnings(
    make_training: Callable[..., TargetTraining], tmp_path: Path
) -> None:
    training = make_training(tokens=8_000)
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "warning", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_SAMPLE, training.model_dump_json(), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampled" in result.stderr
    assert "loss_type" not in result.stderr
    assert "attention mask" not in result.stderr
    assert "attention_mask" not in result.stderr
    assert "[transformers]" not in result.stderr, result.stderr[-3000:]
