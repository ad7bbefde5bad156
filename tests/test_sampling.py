"""Resumable sample files: torn lines, crashes mid-batch, corrupted files."""

from __future__ import annotations

import json

import pytest

from llmsurgeon_core import GeneratedText, RunDirectoryError, Sampler
from llmsurgeon_core.components import ComponentOptions
from llmsurgeon_core.sampling import draw_samples, read_samples


class CountingSampler(Sampler):
    """Returns texts derived from the seed and index; fails once at ``fail_at``."""

    def __init__(self, n: int, batch: int, fail_at: int | None = None) -> None:
        super().__init__(ComponentOptions())
        self._n, self._batch, self.fail_at = n, batch, fail_at
        self.requests: list[list[int]] = []

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def batch_size(self) -> int:
        return self._batch

    def generate(self, request):
        self.requests.append(list(request.indices))
        if self.fail_at is not None and self.fail_at in request.indices:
            self.fail_at = None
            raise KeyboardInterrupt
        return [
            GeneratedText(f"p{i}", f"text {request.seed}-{i}", 2, "length") for i in request.indices
        ]


def test_draws_all_samples_in_order(tmp_path):
    path = tmp_path / "samples.jsonl"
    records = draw_samples(CountingSampler(10, 4), path, seed=7)
    assert [r["id"] for r in records] == list(range(10))
    assert records[3]["text"] == "text 7-3"
    assert read_samples(path) == records


def test_interrupted_run_resumes_without_loss(tmp_path):
    path = tmp_path / "samples.jsonl"
    sampler = CountingSampler(10, 4, fail_at=9)
    with pytest.raises(KeyboardInterrupt):
        draw_samples(sampler, path, seed=1)
    assert len(read_samples(path)) == 8
    resumed = CountingSampler(10, 4)
    records = draw_samples(resumed, path, seed=1)
    assert resumed.requests == [[8, 9]]
    assert records == draw_samples(CountingSampler(10, 4), tmp_path / "fresh.jsonl", seed=1)


def test_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "samples.jsonl"
    draw_samples(CountingSampler(6, 4), path, seed=0)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:5]) + lines[5][:10])
    sampler = CountingSampler(6, 4)
    records = draw_samples(sampler, path, seed=0)
    assert sampler.requests == [[4, 5]]
    assert [r["id"] for r in records] == list(range(6))
    assert len(path.read_bytes().splitlines()) == 6


def test_regenerated_batch_appends_only_missing(tmp_path):
    path = tmp_path / "samples.jsonl"
    draw_samples(CountingSampler(6, 4), path, seed=0)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]))
    records = draw_samples(CountingSampler(6, 4), path, seed=0)
    assert [r["id"] for r in records] == list(range(6))


def test_corrupt_middle_line_is_an_error_and_kept(tmp_path):
    path = tmp_path / "samples.jsonl"
    draw_samples(CountingSampler(4, 4), path, seed=0)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = "{not json\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(RunDirectoryError, match="line 2"):
        draw_samples(CountingSampler(4, 4), path, seed=0)
    assert path.read_bytes() == before


def test_duplicate_id_is_an_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    record = {"id": 0, "prompt": "", "text": "a", "n_tokens": 1, "finish_reason": "eos"}
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(RunDirectoryError, match="sample id 1"):
        read_samples(path)


def test_decoding_unbiased_not_flagged():
    from llmsurgeon_core.sampling import decoding_diagnostics

    diagnostics = decoding_diagnostics({"temperature": 1.0, "top_k": 0, "top_p": 1.0})
    assert diagnostics["truncated"] is False
    assert diagnostics["reasons"] == []


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"temperature": 0.8}, "temperature 0.8 is below 1"),
        ({"top_k": 50}, "top_k 50"),
        ({"top_p": 0.95}, "top_p 0.95 is below 1"),
        ({"min_p": 0.05}, "min_p 0.05 is above 0"),
    ],
)
def test_decoding_truncation_flagged(settings, reason):
    from llmsurgeon_core.sampling import decoding_diagnostics

    diagnostics = decoding_diagnostics(settings)
    assert diagnostics["truncated"] is True
    assert diagnostics["reasons"][0].startswith(reason)
    assert diagnostics["settings"] == settings
