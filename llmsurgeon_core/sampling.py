"""Append-only, resumable sample files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .components import Sampler, SampleRequest
from .errors import RunDirectoryError
from .executors import Executor, LocalExecutor
from .storage import storage_error

__all__ = ["append_samples", "decoding_diagnostics", "draw_samples", "read_samples"]

logger = logging.getLogger(__name__)


def read_samples(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Read ``samples.jsonl``.

    A crash can leave a torn last line (one without its newline). With
    ``repair`` it is cut off, because it was never a complete sample; without,
    it is ignored. Any other malformed line is an error, and nothing is changed.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    complete_end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:complete_end].splitlines(), start=1):
        records.append(_parse_sample_line(path, number, line, len(records)))
    if complete_end < len(data):
        logger.warning(
            "%s ends in a torn line (a crash while writing), which is %s",
            path,
            "cut off" if repair else "ignored",
        )
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(complete_end)
                os.fsync(handle.fileno())
    return records


def _parse_sample_line(path: Path, number: int, line: bytes, expected_id: int) -> dict[str, Any]:
    """Return the sample on line ``number``, or raise an error that names its fault."""
    where = f"{str(path)!r} line {number}"
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RunDirectoryError(
            f"{where} is not valid UTF-8 JSON; fix or remove that line"
        ) from None
    if not isinstance(record, dict):
        raise RunDirectoryError(
            f"{where} is a JSON {type(record).__name__}, not a sample object; "
            "fix or remove that line"
        )
    if record.get("id") != expected_id:
        raise RunDirectoryError(
            f"{where} should contain sample id {expected_id}; "
            "the file was edited or written by two runs at once"
        )
    if not isinstance(record.get("text"), str):
        raise RunDirectoryError(f"{where} has no string 'text' field; fix or remove that line")
    return record


def append_samples(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records as JSON lines with one write, then flush them to disk.

    A write that fails (a full disk, say) is cut off again, so the file keeps
    exactly the samples it had before.

    Raises:
        RunDirectoryError: if the disk is full or the file is not writable.
    """
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    try:
        with open(path, "ab") as handle:
            size = handle.tell()
            try:
                handle.write(payload.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                _truncate(handle, size)
                raise
    except OSError as error:
        raise storage_error(Path(path), error) from None


def _truncate(handle: Any, size: int) -> None:
    """Cut a file back to ``size`` bytes, dropping what a failed write left behind."""
    try:
        handle.seek(size)
        handle.truncate(size)
        os.fsync(handle.fileno())
    except OSError as error:
        # The torn tail is cut off by the next read_samples(repair=True).
        logger.warning("failed to cut %s back to %d bytes: %s", handle.name, size, error)


def draw_samples(
    sampler: Sampler,
    path: Path,
    seed: int,
    on_batch: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Draw samples until ``path`` contains ``sampler.n_samples`` of them.

    Batches start at multiples of ``sampler.batch_size``. After a crash the
    batch in progress is generated again from the same seed, and only the
    samples missing from the file are appended, so no sample is lost or
    duplicated.

    Args:
        on_batch: called with the number of new samples and their token count.
        executor: generates the batches (default: the local executor). It
            yields them in index order wherever they ran, so the file is
            appended in index order.
    """
    records = read_samples(path, repair=True)
    target = sampler.n_samples
    batch_size = max(1, sampler.batch_size)
    start = len(records) - len(records) % batch_size
    requests = [
        SampleRequest(indices=list(range(first, min(first + batch_size, target))), seed=seed)
        for first in range(start, target, batch_size)
    ]
    executor = executor or LocalExecutor(LocalExecutor.Options())
    # With strict, an executor that yields fewer batches than requests raises ValueError.
    for request, generated in zip(requests, executor.generate(sampler, requests), strict=True):
        indices = request.indices
        if len(generated) != len(indices):
            raise RuntimeError(
                f"sampler returned {len(generated)} samples for a batch of {len(indices)}"
            )
        fresh = [
            {"id": index, **asdict(sample)}
            for index, sample in zip(indices, generated)
            if index >= len(records)
        ]
        append_samples(path, fresh)
        records.extend(fresh)
        if on_batch is not None:
            on_batch(len(fresh), sum(r["n_tokens"] for r in fresh))
    return records[:target] if len(records) > target else records


def decoding_diagnostics(settings: dict[str, Any]) -> dict[str, Any]:
    """Describe whether the decoding ``settings`` truncate the model's distribution.

    A temperature below 1, top-k, top-p below 1 or min-p sharpen the
    distribution towards its most likely tokens, which shifts the sampled
    mixture towards the model's most likely domains.

    Returns:
        ``{"settings", "truncated", "reasons"}``, where ``reasons`` lists each
        setting that truncates.
    """
    reasons = []
    temperature = settings.get("temperature")
    if temperature is not None and temperature < 1:
        reasons.append(f"temperature {temperature:g} is below 1")
    top_k = settings.get("top_k")
    if top_k is not None and top_k > 0:
        reasons.append(f"top_k {top_k} keeps only the {top_k} most likely tokens")
    top_p = settings.get("top_p")
    if top_p is not None and top_p < 1:
        reasons.append(f"top_p {top_p:g} is below 1")
    min_p = settings.get("min_p")
    if min_p is not None and min_p > 0:
        reasons.append(f"min_p {min_p:g} is above 0")
    return {"settings": settings, "truncated": bool(reasons), "reasons": reasons}
