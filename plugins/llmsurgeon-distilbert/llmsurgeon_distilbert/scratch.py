"""Writes a randomly initialized DistilBERT model directory, to train from scratch.

Where no pretrained encoder can be downloaded, the ``distilbert`` classifier
can fine-tune such a model from random weights. It is far weaker than a
pretrained one, but it needs nothing beyond the reference texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["write_untrained_model"]

_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_untrained_model(
    directory: Path,
    *,
    tokenizer: str | Path | None = None,
    texts: Iterable[str] | None = None,
    vocab_size: int = 8000,
    n_layers: int = 2,
    dim: int = 64,
    n_heads: int = 2,
    hidden_dim: int = 128,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Write a DistilBERT config, random weights (safetensors) and a tokenizer into ``directory``.

    The tokenizer is either copied from ``tokenizer`` (a local directory or a
    hub id of a fast tokenizer) or, with ``texts``, a lowercasing WordPiece
    tokenizer of at most ``vocab_size`` tokens trained on them.

    Returns:
        ``directory``, which ``DistilBertClassifier`` options accept as ``model``.

    Raises:
        ValueError: unless exactly one of ``tokenizer`` and ``texts`` is given.
    """
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    if (tokenizer is None) == (texts is None):
        raise ValueError("pass exactly one of tokenizer and texts")
    if texts is not None:
        built = _train_wordpiece(texts, vocab_size, max_position_embeddings)
    else:
        built = AutoTokenizer.from_pretrained(str(tokenizer))
    config = DistilBertConfig(
        vocab_size=len(built),
        n_layers=n_layers,
        dim=dim,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=built.pad_token_id,
    )
    torch.manual_seed(seed)
    directory = Path(directory)
    DistilBertModel(config).save_pretrained(directory)
    built.save_pretrained(directory)
    return directory


def _train_wordpiece(
    texts: Iterable[str], vocab_size: int, max_length: int
) -> PreTrainedTokenizerFast:
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=1, special_tokens=_SPECIAL_TOKENS
    )
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )
