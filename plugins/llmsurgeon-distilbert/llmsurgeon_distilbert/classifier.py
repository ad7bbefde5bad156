"""A domain classifier that fine-tunes a DistilBERT-family encoder on the reference texts.

Long texts are cut into chunks of at most ``max_length`` tokens. Training uses
every chunk with its text's label, and a text's prediction is the mean of its
chunks' probabilities. torch and transformers are imported by the methods that
need them, so registering the classifier loads neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, ValidationError

from llmsurgeon_core import Classifier, ComponentOptions, ConfigError
from llmsurgeon_core.classifier_checks import (
    check_labels,
    check_texts,
    read_saved_metadata,
    warn_on_changed_options,
)

from .training import EncodedTexts, encode_texts, predict_chunks, train_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DistilBertClassifier", "DistilBertOptions"]

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
METADATA_FILE = "classifier.json"
SAVE_FORMAT = 1
# Options that change where and how fast the model runs, not what it predicts.
_RUNTIME_OPTIONS = ("device", "predict_batch_size")


class DistilBertOptions(ComponentOptions):
    """Options of the ``distilbert`` classifier."""

    model: str = Field(
        "distilbert-base-uncased",
        description=(
            "Encoder to fine-tune: a hub id or a local directory with its config, weights and "
            "tokenizer (any model that AutoModelForSequenceClassification loads)."
        ),
    )
    max_length: int = Field(
        256, ge=8, description="Maximum tokens per chunk, special tokens included."
    )
    long_texts: Literal["chunk", "truncate"] = Field(
        "chunk",
        description="'chunk' cuts a longer text into chunks of max_length tokens and averages "
        "their probabilities; 'truncate' keeps only the first max_length tokens.",
    )
    max_chunks: int = Field(8, ge=1, description="Maximum chunks read from one text.")
    epochs: int = Field(3, ge=1, description="Maximum passes over the training chunks.")
    max_steps: int | None = Field(
        None, ge=1, description="Maximum optimizer steps in all; null lets epochs decide."
    )
    batch_size: int = Field(16, ge=1, description="Chunks per training step.")
    predict_batch_size: int = Field(
        64, ge=1, description="Chunks per forward pass when predicting."
    )
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay of AdamW.")
    warmup_ratio: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the steps over which the learning rate rises linearly from 0; "
        "it then falls linearly to 0.",
    )
    class_weight: Literal["balanced"] | None = Field(
        "balanced",
        description="'balanced' weights the loss of each domain inversely to its number of "
        "training texts; null weights every chunk equally.",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the training texts held out, per domain, to evaluate the loss "
        "for early stopping; 0 trains on all texts for the full number of steps.",
    )
    patience: int = Field(
        2,
        ge=1,
        description="Evaluations without a lower validation loss after which training stops; "
        "the weights of the best evaluation are kept.",
    )
    eval_steps: int | None = Field(
        None, ge=1, description="Optimizer steps between evaluations; null evaluates each epoch."
    )
    device: str | None = Field(
        None,
        description="torch device ('cpu', 'cuda', 'cuda:1'); null picks a GPU when one is "
        "available.",
    )
    seed: int = Field(0, description="Seed of the head's initialization, dropout and batch order.")


class DistilBertClassifier(Classifier):
    """A transformer encoder with a classification head, fine-tuned on the reference texts.

    Attributes set by :meth:`fit`:
        classes_: the labels present in the training data, sorted.
        n_classes_: the number of columns of :meth:`predict_proba`.
        model_: the fine-tuned model in eval mode, or None when the training
            data contains a single class (every text then gets that class).
        tokenizer_: its tokenizer, or None with the model.
        history_: one ``{"step", "validation_loss"}`` record per evaluation.
    """

    Options = DistilBertOptions

    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> DistilBertClassifier:
        """Fine-tune on ``texts`` with integer ``labels`` in ``[0, n_classes)``.

        Raises:
            ValueError: if the labels do not match the texts or fall outside the range.
            TypeError: if a text is not a string.
            ConfigError: if the model or its tokenizer cannot be loaded.
        """
        import torch

        texts = check_texts(texts)
        labels = check_labels(labels, len(texts), n_classes, "distilbert")
        self.n_classes_ = int(n_classes)
        self.classes_ = np.unique(labels)
        self.model_ = None
        self.tokenizer_ = None
        self.history_: list[dict[str, float]] = []
        if len(self.classes_) == 1:
            return self
        options: DistilBertOptions = self.options  # type: ignore[assignment]
        torch.manual_seed(options.seed)
        tokenizer = _load_tokenizer(options.model)
        model = _load_model(options.model, len(self.classes_))
        _check_max_length(options.max_length, model)
        model.to(_resolve_device(options.device))
        targets = np.searchsorted(self.classes_, labels)
        train, validation = _validation_split(targets, options.validation_fraction, options.seed)
        self.history_ = train_model(
            model,
            self._encode(tokenizer, [texts[i] for i in train]),
            targets[train],
            self._encode(tokenizer, [texts[i] for i in validation]) if len(validation) else None,
            targets[validation],
            options,
        )
        self.model_ = model.eval()
        self.tokenizer_ = tokenizer
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Return a float64 ``(n_texts, n_classes)`` array whose rows sum to 1.

        Classes absent from the training data get probability 0.
        """
        if not hasattr(self, "classes_"):
            raise RuntimeError("the distilbert classifier is not fitted; call fit() first")
        texts = check_texts(texts)
        probabilities = np.zeros((len(texts), self.n_classes_), dtype=np.float64)
        if not texts:
            return probabilities
        if self.model_ is None:
            probabilities[:, self.classes_[0]] = 1.0
            return probabilities
        encoded = self._encode(self.tokenizer_, texts)
        chunk_probabilities = predict_chunks(self.model_, encoded, self.options.predict_batch_size)
        fitted = _mean_by_owner(chunk_probabilities, encoded.owners, len(texts))
        probabilities[:, self.classes_] = fitted
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities

    def _encode(self, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> EncodedTexts:
        options: DistilBertOptions = self.options  # type: ignore[assignment]
        max_chunks = options.max_chunks if options.long_texts == "chunk" else 1
        return encode_texts(tokenizer, texts, options.max_length, max_chunks)

    def save(self, directory: Path) -> None:
        """Write ``classifier.json`` and, with two or more classes, ``model/`` (safetensors).

        ``model/`` is what ``save_pretrained`` writes for the model and its
        tokenizer, so transformers can load it on its own.
        """
        if not hasattr(self, "classes_"):
            raise RuntimeError("the distilbert classifier is not fitted; call fit() before save()")
        import torch
        import transformers

        directory = Path(directory)
        if self.model_ is not None:
            self.model_.save_pretrained(directory / MODEL_DIR)
            self.tokenizer_.save_pretrained(directory / MODEL_DIR)
        metadata = {
            "format": SAVE_FORMAT,
            "options": self.options.model_dump(mode="json"),
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "history": self.history_,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, options: ComponentOptions) -> DistilBertClassifier:
        """Read a classifier that :meth:`save` wrote into ``directory``.

        The returned classifier carries the options it was fitted with, except
        ``device`` and ``predict_batch_size``, which come from ``options``. A
        warning lists the other options that differ.

        Raises:
            FileNotFoundError: if a file is missing.
            ValueError: if ``classifier.json`` is invalid or of another format.
        """
        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        metadata = read_saved_metadata(metadata_path, (SAVE_FORMAT,), "llmsurgeon-distilbert")
        try:
            saved = cls.Options.model_validate(metadata["options"])
            classes = np.asarray(metadata["classes"], dtype=np.int64)
            n_classes = int(metadata["n_classes"])
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            raise ValueError(f"{metadata_path} is invalid: {error}") from None
        warn_on_changed_options(saved, options, "distilbert", logger, _RUNTIME_OPTIONS)
        runtime = {name: getattr(options, name) for name in _RUNTIME_OPTIONS}
        classifier = cls(saved.model_copy(update=runtime))
        classifier.classes_ = classes
        classifier.n_classes_ = n_classes
        classifier.history_ = list(metadata.get("history", []))
        classifier.model_ = None
        classifier.tokenizer_ = None
        if len(classes) > 1:
            model_dir = directory / MODEL_DIR
            if not (model_dir / "config.json").is_file():
                raise FileNotFoundError(f"{model_dir / 'config.json'} is missing; calibrate again")
            classifier.tokenizer_ = _load_tokenizer(str(model_dir))
            model = _load_model(str(model_dir), len(classes))
            classifier.model_ = model.to(_resolve_device(classifier.options.device)).eval()
        return classifier


def _load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"classifier.options.model: cannot load a tokenizer from {source!r} ({error}); "
            "pass a local model directory or a reachable hub id"
        ) from error
    if not tokenizer.is_fast:
        raise ConfigError(
            f"classifier.options.model: the tokenizer of {source!r} is not a fast tokenizer, "
            "which chunking needs; use a model whose directory has a tokenizer.json"
        )
    return tokenizer


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars while a model loads.

    Loading an encoder without a classification head reports the head's
    weights as missing on every fold, which is expected when fine-tuning.
    """
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    progress = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if progress:
            transformers_logging.enable_progress_bar()


def _load_model(source: str, n_labels: int) -> PreTrainedModel:
    from transformers import AutoModelForSequenceClassification

    labels = {index: f"LABEL_{index}" for index in range(n_labels)}
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=n_labels,
                id2label=labels,
                label2id={name: index for index, name in labels.items()},
                ignore_mismatched_sizes=True,
            )
        logger.info("loaded %s with a head of %d classes", source, n_labels)
        return model
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"classifier.options.model: cannot load {source!r} as a sequence classifier "
            f"({error}); pass a local model directory or a reachable hub id"
        ) from error


def _check_max_length(max_length: int, model: PreTrainedModel) -> None:
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise ConfigError(
            f"classifier.options.max_length: {max_length} exceeds the {positions} positions "
            f"of the model; set max_length to at most {positions}"
        )


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _validation_split(
    targets: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (training, validation) text indices, holding out ``fraction`` of each class.

    A class keeps at least one training text, so a small class may have no
    validation texts.
    """
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    validation: list[np.ndarray] = []
    for target in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == target))
        n_held = min(round(fraction * len(members)), len(members) - 1)
        validation.append(members[:n_held])
        train.append(members[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


def _mean_by_owner(chunk_values: np.ndarray, owners: np.ndarray, n_texts: int) -> np.ndarray:
    """Average the rows of ``chunk_values`` over the chunks of each text."""
    sums = np.zeros((n_texts, chunk_values.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, chunk_values)
    counts = np.bincount(owners, minlength=n_texts)
    return sums / counts[:, None]
