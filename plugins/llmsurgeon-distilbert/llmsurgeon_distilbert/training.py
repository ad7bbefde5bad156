"""Chunking, the fine-tuning loop with early stopping, and batched prediction."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["EncodedTexts", "encode_texts", "predict_chunks", "train_model"]

logger = logging.getLogger(__name__)

# Gradients are clipped to this L2 norm, the usual setting for fine-tuning BERT models.
_MAX_GRAD_NORM = 1.0


@dataclass
class EncodedTexts:
    """Token ids of the chunks of some texts.

    Attributes:
        input_ids: one list of token ids per chunk, special tokens included.
        owners: ``(n_chunks,)`` index of the text each chunk comes from; every
            text has at least one chunk.
        pad_id: the tokenizer's padding id.
    """

    input_ids: list[list[int]]
    owners: np.ndarray
    pad_id: int


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, max_chunks: int
) -> EncodedTexts:
    """Cut each text into at most ``max_chunks`` chunks of at most ``max_length`` tokens.

    A text that the tokenizer turns into no tokens at all (a blank text, with
    a tokenizer that adds no special tokens) gets one chunk of the unknown
    token, so every text has a prediction.
    """
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_overflowing_tokens=max_chunks > 1,
        return_attention_mask=False,
    )
    owners = np.asarray(encoded.get("overflow_to_sample_mapping", range(len(texts))))
    fallback = _fallback_id(tokenizer)
    input_ids: list[list[int]] = []
    kept: list[int] = []
    per_text = np.zeros(len(texts), dtype=np.int64)
    for ids, owner in zip(encoded["input_ids"], owners):
        if per_text[owner] < max_chunks:
            input_ids.append(list(ids) or [fallback])
            kept.append(int(owner))
            per_text[owner] += 1
    for owner in np.flatnonzero(per_text == 0):
        input_ids.append([fallback])
        kept.append(int(owner))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fallback
    return EncodedTexts(input_ids, np.asarray(kept, dtype=np.int64), int(pad_id))


def _fallback_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for token_id in (tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def _batches(
    encoded: EncodedTexts, order: np.ndarray, size: int, device: Any
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Yield (chunk indices, padded model inputs) for consecutive slices of ``order``."""
    import torch

    for start in range(0, len(order), size):
        indices = order[start : start + size]
        width = max(len(encoded.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), encoded.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, index in enumerate(indices):
            chunk = encoded.input_ids[index]
            ids[row, : len(chunk)] = torch.tensor(chunk, dtype=torch.long)
            mask[row, : len(chunk)] = 1
        yield indices, {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def predict_chunks(model: PreTrainedModel, encoded: EncodedTexts, batch_size: int) -> np.ndarray:
    """Return the float64 ``(n_chunks, n_labels)`` softmax probabilities of every chunk."""
    import torch

    model.eval()
    probabilities = np.zeros((len(encoded.input_ids), model.config.num_labels))
    order = np.arange(len(encoded.input_ids))
    with torch.inference_mode():
        for indices, inputs in _batches(encoded, order, batch_size, model.device):
            logits = model(**inputs).logits.double()
            probabilities[indices] = torch.softmax(logits, dim=-1).cpu().numpy()
    return probabilities


def _class_weights(targets: np.ndarray, n_labels: int, balanced: bool) -> np.ndarray | None:
    if not balanced:
        return None
    counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
    return len(targets) / (n_labels * np.maximum(counts, 1.0))


def _validation_loss(
    model: PreTrainedModel, encoded: EncodedTexts, targets: np.ndarray, batch_size: int
) -> float:
    """Return the mean log loss of the texts, each predicted by the mean of its chunks."""
    chunk_probabilities = predict_chunks(model, encoded, batch_size)
    sums = np.zeros((len(targets), chunk_probabilities.shape[1]))
    np.add.at(sums, encoded.owners, chunk_probabilities)
    probabilities = sums / np.bincount(encoded.owners, minlength=len(targets))[:, None]
    chosen = probabilities[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.clip(chosen, 1e-12, None))))


def train_model(
    model: PreTrainedModel,
    train: EncodedTexts,
    train_targets: np.ndarray,
    validation: EncodedTexts | None,
    validation_targets: np.ndarray,
    options: Any,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` in place with AdamW and a linear warmup and decay schedule.

    Every chunk of a training text is an example with the text's label. With
    validation texts, the loss of their chunk-mean predictions is evaluated
    every ``options.eval_steps`` steps (or once per epoch). Training stops
    after ``options.patience`` evaluations without a new minimum, and the
    weights of the minimum are restored.

    Returns:
        One ``{"step", "validation_loss"}`` record per evaluation.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    device = model.device
    n_labels = model.config.num_labels
    chunk_targets = torch.as_tensor(train_targets[train.owners], dtype=torch.long)
    weights = _class_weights(train_targets, n_labels, options.class_weight == "balanced")
    loss_function = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32).to(device)
    )
    steps_per_epoch = math.ceil(len(train.input_ids) / options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    if options.max_steps is not None:
        total_steps = min(total_steps, options.max_steps)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(options.warmup_ratio * total_steps), total_steps
    )
    eval_every = options.eval_steps or steps_per_epoch
    generator = np.random.default_rng(options.seed)
    stopper = _EarlyStopping(options.patience)
    step = 0
    while step < total_steps and not stopper.stopped:
        model.train()
        order = generator.permutation(len(train.input_ids))
        for indices, inputs in _batches(train, order, options.batch_size, device):
            logits = model(**inputs).logits
            loss = loss_function(logits, chunk_targets[indices].to(device))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), _MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            step += 1
            if validation is not None and (step % eval_every == 0 or step == total_steps):
                value = _validation_loss(
                    model, validation, validation_targets, options.predict_batch_size
                )
                logger.info("step %d of %d: validation loss %.4f", step, total_steps, value)
                stopper.update(model, step, value)
                model.train()
            if step >= total_steps or stopper.stopped:
                break
    stopper.restore(model)
    return stopper.history


class _EarlyStopping:
    """Tracks the validation loss and keeps a copy of the weights at its minimum."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.history: list[dict[str, float]] = []
        self.best_loss = math.inf
        self.best_state: dict[str, Any] | None = None
        self.stale = 0
        self.stopped = False

    def update(self, model: PreTrainedModel, step: int, loss: float) -> None:
        self.history.append({"step": step, "validation_loss": loss})
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_state = copy.deepcopy(model.state_dict())
            self.stale = 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            logger.info("validation loss did not fall for %d evaluations; stopping", self.stale)
            self.stopped = True

    def restore(self, model: PreTrainedModel) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
