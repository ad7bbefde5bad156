"""Calibration in generation mode: C from a tiny target's continuations of reference prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmsurgeon_core import ConfigError
from llmsurgeon_core.config import AuditConfig
from llmsurgeon_core.pipeline import Run
from llmsurgeon_hf.sampler import HFSampler
from llmsurgeon_hf.train import domain_token

PROMPTS = ["We the people of", "Permission is hereby granted", "import json\n\ndef"]


@pytest.fixture(scope="module")
def sampler(tiny_target: Path, tmp_path_factory) -> HFSampler:
    options = HFSampler.Options(model=str(tiny_target), max_new_tokens=12, batch_size=2)
    sampler = HFSampler(options)
    sampler.prepare(tmp_path_factory.mktemp("cache"))
    return sampler


def test_continuations_leave_out_prompt(sampler):
    continued = sampler.continue_prompts(PROMPTS, seed=0)

    assert [c.prompt for c in continued] == PROMPTS
    for continuation in continued:
        assert not continuation.text.startswith(continuation.prompt)
        assert 0 < continuation.n_tokens <= 12


def test_continuations_repeat_for_seed(sampler):
    first = [c.text for c in sampler.continue_prompts(PROMPTS, seed=3)]
    again = [c.text for c in sampler.continue_prompts(PROMPTS, seed=3)]
    other = [c.text for c in sampler.continue_prompts(PROMPTS, seed=4)]

    assert first == again
    assert first != other


def test_domain_token_leads_prompt(sampler):
    speech = sampler.tokenizer.convert_tokens_to_ids(domain_token("speech"))

    leads = sampler._domain_leads(["speech", "not-a-domain"], 2)
    input_ids, _ = sampler._encode_prompts(["We the people of the United States"], 3, leads[:1])

    assert leads == [[speech], []]
    row = input_ids[0].tolist()
    assert row[:2] == [sampler.tokenizer.bos_token_id, speech]
    assert len(row) == 4


def generation_config(taxonomy_file: Path, sampler: dict, run_dir: Path) -> AuditConfig:
    return AuditConfig.model_validate(
        {
            "taxonomy": str(taxonomy_file),
            "reference": {"max_per_domain": 30, "chunk_words": 24, "folds": 3},
            "sampler": sampler,
            "classifier": {"name": "tfidf", "options": {"char_ngrams": None}},
            "calibrate": {
                "mode": "generation",
                "method": "ts",
                "prompts_per_domain": 12,
                "prefix_words": 4,
            },
            "bootstrap": {"n_resamples": 10},
            "run_dir": str(run_dir),
        }
    )


@pytest.mark.slow
def test_generation_mode_runs_and_records_itself(taxonomy_file, tiny_target, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSURGEON_CACHE_DIR", str(tmp_path / "cache"))
    sampler = {
        "name": "hf",
        "options": {"model": str(tiny_target), "n_samples": 40, "max_new_tokens": 20},
    }
    run = Run(generation_config(taxonomy_file, sampler, tmp_path / "run"))

    result = run.audit()

    summary = json.loads((tmp_path / "run" / "calibration" / "calibration.json").read_text())
    assert summary["mode"] == "generation"
    assert summary["fingerprint"]["sampler"]["options"]["model"] == str(tiny_target)
    assert 0 < summary["continuations"] <= 36
    assert sum(summary["counts"]) == summary["continuations"]
    assert sum(summary["reference_counts"].values()) == 90
    classifier = result["diagnostics"]["classifier"]
    assert classifier["mode"] == "generation"
    assert classifier["calibration_method"] == "ts"
    assert classifier["n_texts"] == 90
    assert classifier["continuations"]["n_texts"] == summary["continuations"]
    assert "continuations of reference prefixes" in (tmp_path / "run" / "report.md").read_text()
    np.testing.assert_allclose(sum(result["estimate"].values()), 1.0)


def test_sampler_without_prompts_is_rejected(taxonomy_file, tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('"a text"\n')
    sampler = {"name": "file", "options": {"path": str(samples)}}
    run = Run(generation_config(taxonomy_file, sampler, tmp_path / "run"))

    with pytest.raises(ConfigError, match="sampler FileSampler cannot continue prompts"):
        run.calibrate()
