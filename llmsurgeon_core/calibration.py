"""Calibration: a fitted classifier and its out-of-fold soft confusion matrix."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .components import Classifier
from .corpus import ReferenceCorpus
from .errors import CalibrationError
from .storage import atomic_directory

__all__ = ["Calibration", "cross_fit", "fit_calibration", "soft_confusion"]

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = 1


def soft_confusion(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the ``(K, K)`` matrix whose row ``i`` is the mean of ``probs[labels == i]``.

    A domain with no rows gets a uniform row, so the matrix stays row-stochastic.
    """
    confusion = np.full((n_classes, n_classes), 1.0 / n_classes)
    for index in range(n_classes):
        rows = probs[labels == index]
        if len(rows):
            confusion[index] = rows.mean(axis=0)
    return confusion


def cross_fit(
    make_classifier: Callable[[], Classifier],
    corpus: ReferenceCorpus,
    folds: int,
    seed: int,
    on_fold: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Return out-of-fold probabilities: each text is scored by a model that never saw it."""
    from sklearn.model_selection import StratifiedKFold

    n_classes = len(corpus.domains)
    labels = corpus.labels
    probs = np.zeros((len(labels), n_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        classifier = make_classifier()
        classifier.fit([corpus.texts[i] for i in train], labels[train], n_classes)
        probs[held_out] = classifier.predict_proba([corpus.texts[i] for i in held_out])
        if on_fold is not None:
            on_fold(fold)
    return probs


@dataclass
class Calibration:
    """The classifier and confusion matrix fitted on a reference corpus, reusable across audits.

    Attributes:
        domains: domain ids in taxonomy order.
        confusion: ``(K, K)`` soft confusion matrix from out-of-fold predictions.
        oof_probs: ``(N, K)`` out-of-fold probabilities of the reference chunks.
        labels: ``(N,)`` true domain index of each reference chunk.
        classifier: the classifier fitted on the whole reference corpus.
        metadata: classifier name and options, taxonomy, corpus digest, settings.
    """

    domains: list[str]
    confusion: np.ndarray
    oof_probs: np.ndarray
    labels: np.ndarray
    classifier: Classifier
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.domains))

    @property
    def priors(self) -> np.ndarray:
        """Domain shares of the reference corpus the classifier was fitted on."""
        return self.counts / self.counts.sum()

    @property
    def accuracy(self) -> float:
        """Out-of-fold accuracy of the classifier on the reference corpus."""
        return float(np.mean(self.oof_probs.argmax(axis=1) == self.labels))

    def save(self, directory: Path) -> None:
        """Write the calibration as one directory, replacing ``directory`` atomically."""
        with atomic_directory(directory) as staging:
            self.classifier.save(_make_dir(staging / "classifier"))
            np.savez(staging / "predictions.npz", oof_probs=self.oof_probs, labels=self.labels)
            summary = {
                "format": CALIBRATION_FORMAT,
                "domains": self.domains,
                "counts": self.counts.tolist(),
                "accuracy": self.accuracy,
                "confusion": self.confusion.tolist(),
                **self.metadata,
            }
            (staging / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")

    @classmethod
    def load(
        cls, directory: Path, load_classifier: Callable[[str, dict[str, Any], Path], Classifier]
    ) -> Calibration:
        """Read a calibration directory.

        Args:
            load_classifier: called with the classifier name, its saved options
                and its directory.
        """
        directory = Path(directory)
        try:
            summary = json.loads((directory / "calibration.json").read_text())
            arrays = np.load(directory / "predictions.npz")
        except (ValueError, OSError) as error:
            if not isinstance(error, FileNotFoundError):
                raise CalibrationError(
                    f"calibration {str(directory)!r} is damaged ({error}); calibrate again"
                ) from None
            raise CalibrationError(
                f"{str(directory)!r} is not a calibration directory ({error.filename} is "
                "missing); run `llmsurgeon calibrate` to create one"
            ) from None
        if summary.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(
                f"calibration {str(directory)!r} has format {summary.get('format')!r}, "
                f"this version reads {CALIBRATION_FORMAT}; calibrate again"
            )
        metadata = {
            k: v
            for k, v in summary.items()
            if k not in {"format", "domains", "counts", "accuracy", "confusion"}
        }
        saved = summary["classifier"]
        classifier = load_classifier(saved["name"], saved["options"], directory / "classifier")
        return cls(
            domains=summary["domains"],
            confusion=np.asarray(summary["confusion"], dtype=float),
            oof_probs=arrays["oof_probs"],
            labels=arrays["labels"],
            classifier=classifier,
            metadata=metadata,
        )


def _make_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def fit_calibration(
    make_classifier: Callable[[], Classifier],
    corpus: ReferenceCorpus,
    folds: int,
    seed: int,
    metadata: dict[str, Any],
    on_step: Callable[[int], None] | None = None,
) -> Calibration:
    """Cross-fit the classifier for ``C``, then fit it on the whole corpus.

    ``on_step`` is called after each of the ``folds + 1`` fits.
    """
    oof_probs = cross_fit(make_classifier, corpus, folds, seed, on_step)
    if not np.all(np.isfinite(oof_probs)):
        raise CalibrationError("the classifier returned non-finite probabilities")
    confusion = soft_confusion(oof_probs, corpus.labels, len(corpus.domains))
    classifier = make_classifier().fit(corpus.texts, corpus.labels, len(corpus.domains))
    if on_step is not None:
        on_step(folds)
    calibration = Calibration(
        domains=list(corpus.domains),
        confusion=confusion,
        oof_probs=oof_probs,
        labels=corpus.labels.copy(),
        classifier=classifier,
        metadata=metadata,
    )
    logger.info(
        "out-of-fold accuracy %.3f on %d reference chunks", calibration.accuracy, len(corpus.labels)
    )
    return calibration
