"""Tests of the ``vllm`` sampler that need no engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, SampleRequest, load_registry
from llmsurgeon_vllm import VLLMSampler


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


def test_missing_vllm_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import vllm` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "vllm", None)
    sampler = VLLMSampler(VLLMSampler.Options(model="m"))
    with pytest.raises(ConfigError, match="pip install vllm"):
        sampler.prepare(tmp_path)


def test_prompts_cycle_over_blocks_of_n() -> None:
    sampler = VLLMSampler(VLLMSampler.Options(model="m", n=2, prompts=["a", "b", "c"]))
    assert [sampler.prompt_input(i) for i in range(8)] == ["a", "a", "b", "b", "c", "c", "a", "a"]
