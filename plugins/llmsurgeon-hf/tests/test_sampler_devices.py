"""The ``hf`` sampler's dtype and device options reach the loaded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmsurgeon_core import SampleRequest
from llmsurgeon_hf.sampler import HFSampler


def make_sampler(model: Path, cache_dir: Path, **options: object) -> HFSampler:
    sampler = HFSampler(HFSampler.Options.model_validate({"model": str(model), **options}))
    sampler.prepare(cache_dir)
    return sampler


@pytest.mark.parametrize(("dtype", "expected"), [("bfloat16", "bfloat16"), ("auto", "float32")])
def test_dtype_sets_weight_dtype(tiny_target: Path, tmp_path: Path, dtype: str, expected: str):
    import torch

    sampler = make_sampler(tiny_target, tmp_path, dtype=dtype, max_new_tokens=6)
    assert sampler.model.dtype == getattr(torch, expected)
    generated = sampler.generate(SampleRequest(indices=[0, 1, 2], seed=0))
    assert len(generated) == 3
    assert all(1 <= sample.n_tokens <= 6 for sample in generated)


def test_device_auto_resolves(tiny_target: Path, tmp_path: Path) -> None:
    import torch

    sampler = make_sampler(tiny_target, tmp_path, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert sampler.protocol()["device_resolved"] == expected
    assert sampler.model.device.type == expected
