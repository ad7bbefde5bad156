"""A calibration: fitted classifier, calibration map and out-of-fold soft confusion matrix.

A calibration directory holds ``calibration.json`` (domains, per-domain
counts, ``C``, the calibration map's parameters, digests of the taxonomy and
reference corpus, settings and library versions), ``predictions.npz`` (the
out-of-fold predictions behind ``C``) and ``classifier/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from .calibrators import BCTSCalibrator, calibrator_from_dict, make_calibrator
from .classifier_diagnostics import expected_calibration_error
from .components import Classifier, ReferencePredictions, Sampler
from .corpus import ReferenceCorpus
from .errors import CalibrationError, ConfigError
from .storage import atomic_directory
from .taxonomy import Taxonomy

__all__ = [
    "Calibration",
    "Continuations",
    "check_no_pickles",
    "cross_fit",
    "fingerprint_changes",
    "fit_calibration",
    "fold_splits",
    "generate_continuations",
    "library_versions",
    "prompt_prefix",
    "select_prompt_chunks",
    "soft_confusion",
    "taxonomy_fingerprint",
]

logger = logging.getLogger(__name__)

# Format 2 added the calibration map, per-domain counts and the reference
# predictions of generation mode; format 1 directories read as method "none".
CALIBRATION_FORMAT = 2
READABLE_FORMATS = (1, 2)

# File name endings and the opening bytes of pickles (protocol 2 to 5), the
# formats that run code when they are loaded. PyTorch's .pt, .pth, .bin and
# .ckpt files are zip archives of pickles.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt")
PICKLE_OPENINGS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


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


@dataclass
class Continuations:
    """Texts the target generated from prefixes of reference chunks, the prefixes removed.

    Attributes:
        texts: the continuations.
        chunks: ``(M,)`` index into the reference corpus of the chunk whose
            prefix prompted each continuation.
    """

    texts: list[str]
    chunks: np.ndarray


def select_prompt_chunks(corpus: ReferenceCorpus, per_domain: int, seed: int) -> np.ndarray:
    """Return the indices of up to ``per_domain`` chunks of each domain, drawn at random."""
    rng = np.random.default_rng(seed)
    chosen = []
    for index in range(len(corpus.domains)):
        rows = np.flatnonzero(corpus.labels == index)
        chosen.append(np.sort(rng.permutation(rows)[:per_domain]))
    return np.concatenate(chosen)


def prompt_prefix(text: str, words: int) -> str:
    """Return the start of ``text`` up to the end of its ``words``-th word, layout kept."""
    parts = text.split(maxsplit=words)
    if len(parts) <= words:
        return text
    return text[: len(text) - len(parts[-1])].rstrip()


def cross_fit(
    make_classifier: Callable[[], Classifier],
    corpus: ReferenceCorpus,
    folds: int,
    seed: int,
    on_fold: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Return out-of-fold probabilities: each text is scored by a model that never saw it."""
    probs, _ = _cross_fit(make_classifier, corpus, folds, seed, on_fold, None)
    return probs


def fold_splits(
    corpus: ReferenceCorpus, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return the ``(train, held_out)`` index arrays of a stratified cross-fit.

    Where the corpus numbers its documents and every domain has at least
    ``folds`` of them, all chunks of a document fall in one fold, so a chunk is
    never scored by a model that saw its neighbours. That is the situation of a
    target's samples, which come from no reference document. Otherwise chunks
    are split one by one.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = corpus.labels
    placeholder = np.zeros(len(labels))
    if corpus.groups is not None and _documents_per_domain(corpus.labels, corpus.groups) >= folds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(placeholder, labels, corpus.groups))
    if corpus.groups is not None:
        logger.info(
            "a domain has fewer than %d reference documents; cross-fitting chunk by chunk", folds
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(placeholder, labels))


def _documents_per_domain(labels: np.ndarray, groups: np.ndarray) -> int:
    """Return the smallest number of documents of any domain present in ``labels``."""
    return min(len(np.unique(groups[labels == k])) for k in np.unique(labels))


def _cross_fit(
    make_classifier: Callable[[], Classifier],
    corpus: ReferenceCorpus,
    folds: int,
    seed: int,
    on_fold: Callable[[int], None] | None,
    continuations: Continuations | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cross-fit, scoring each continuation with the fold model that held out its chunk."""
    n_classes = len(corpus.domains)
    labels = corpus.labels
    probs = np.zeros((len(labels), n_classes))
    continuation_probs = None
    if continuations is not None:
        continuation_probs = np.zeros((len(continuations.texts), n_classes))
    for fold, (train, held_out) in enumerate(fold_splits(corpus, folds, seed)):
        classifier = make_classifier()
        classifier.fit([corpus.texts[i] for i in train], labels[train], n_classes)
        probs[held_out] = classifier.predict_proba([corpus.texts[i] for i in held_out])
        if continuations is not None:
            rows = np.flatnonzero(np.isin(continuations.chunks, held_out))
            if len(rows):
                texts = [continuations.texts[i] for i in rows]
                continuation_probs[rows] = classifier.predict_proba(texts)
        if on_fold is not None:
            on_fold(fold)
    return probs, continuation_probs


@dataclass
class Calibration:
    """The classifier and confusion matrix fitted on a reference corpus, reusable across audits.

    Attributes:
        domains: domain ids in taxonomy order.
        confusion: ``(K, K)`` soft confusion matrix from out-of-fold predictions.
        oof_probs: ``(N, K)`` out-of-fold probabilities behind ``C``: of the
            reference chunks, or in generation mode of the target's continuations.
        labels: ``(N,)`` true domain index of each of those texts.
        classifier: the classifier fitted on the whole reference corpus.
        metadata: classifier name and options, taxonomy, corpus digest, settings.
        calibrator: the calibration map applied to the classifier's
            probabilities, or None for none.
        reference_probs: in generation mode, ``(R, K)`` out-of-fold
            probabilities of the reference chunks; None in reference mode.
        reference_labels: ``(R,)`` true domain index of each reference chunk
            in generation mode; None in reference mode.
        groups: ``(N,)`` number of the reference document behind each of the
            ``oof_probs`` texts (its chunk, or the chunk that prompted it), or
            None where the corpus did not number its documents.
        reference_groups: ``(R,)`` document number of each reference chunk in
            generation mode; None otherwise.

    ``oof_probs`` and ``reference_probs`` are stored after the calibration map.
    """

    domains: list[str]
    confusion: np.ndarray
    oof_probs: np.ndarray
    labels: np.ndarray
    classifier: Classifier
    metadata: dict[str, Any] = field(default_factory=dict)
    calibrator: BCTSCalibrator | None = None
    reference_probs: np.ndarray | None = None
    reference_labels: np.ndarray | None = None
    groups: np.ndarray | None = None
    reference_groups: np.ndarray | None = None

    @property
    def predictions(self) -> ReferencePredictions:
        """The predictions behind ``C``, with their document numbers where known."""
        return ReferencePredictions(self.oof_probs, self.labels, self.groups)

    @property
    def counts(self) -> np.ndarray:
        """Number of out-of-fold predictions behind each row of ``C``."""
        return np.bincount(self.labels, minlength=len(self.domains))

    @property
    def method(self) -> str:
        """Name of the calibration map: ``none``, ``ts`` or ``bcts``."""
        return "none" if self.calibrator is None else self.calibrator.method

    @property
    def reference_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold probabilities and labels of the reference chunks, in either mode."""
        if self.reference_probs is None or self.reference_labels is None:
            return self.oof_probs, self.labels
        return self.reference_probs, self.reference_labels

    def apply_map(self, probs: np.ndarray) -> np.ndarray:
        """Return ``probs`` after the calibration map (unchanged without one)."""
        return probs if self.calibrator is None else self.calibrator.transform(probs)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Return the classifier's probabilities of ``texts`` after the calibration map."""
        return self.apply_map(self.classifier.predict_proba(texts))

    @property
    def priors(self) -> np.ndarray:
        """Domain shares of the texts behind ``C``.

        In reference mode these are the shares of the corpus the classifier was
        fitted on. In generation mode they are the continuations' shares, the
        priors under which a calibration map fitted on them calibrates.
        """
        return self.counts / self.counts.sum()

    @property
    def accuracy(self) -> float:
        """Out-of-fold accuracy of the classifier on the reference corpus, in either mode."""
        probs, labels = self.reference_view
        return float(np.mean(probs.argmax(axis=1) == labels))

    def save(self, directory: Path) -> None:
        """Write the calibration as one directory, replacing ``directory`` atomically."""
        with atomic_directory(directory) as staging:
            self.classifier.save(_make_dir(staging / "classifier"))
            arrays = {"oof_probs": self.oof_probs, "labels": self.labels}
            if self.reference_probs is not None:
                arrays["reference_probs"] = self.reference_probs
                arrays["reference_labels"] = self.reference_labels
            if self.groups is not None:
                arrays["groups"] = self.groups
            if self.reference_groups is not None:
                arrays["reference_groups"] = self.reference_groups
            np.savez(staging / "predictions.npz", **arrays)
            reference_labels = self.reference_view[1]
            reference_counts = np.bincount(reference_labels, minlength=len(self.domains))
            summary = {
                "format": CALIBRATION_FORMAT,
                "domains": self.domains,
                "counts": self.counts.tolist(),
                "reference_counts": dict(zip(self.domains, reference_counts.tolist())),
                "accuracy": self.accuracy,
                "confusion": self.confusion.tolist(),
                "calibration_map": (
                    {"method": "none"} if self.calibrator is None else self.calibrator.to_dict()
                ),
                **self.metadata,
            }
            (staging / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")

    @classmethod
    def load(
        cls,
        directory: Path,
        load_classifier: Callable[[str, dict[str, Any], Path], Classifier],
        trust_pickle: bool = False,
    ) -> Calibration:
        """Read a calibration directory.

        Args:
            load_classifier: called with the classifier name, its saved options
                and its directory.
            trust_pickle: load classifier files that are pickles; without it
                such a directory raises ``CalibrationError``.
        """
        directory = Path(directory)
        summary, arrays = _read_files(directory)
        if summary.get("format") not in READABLE_FORMATS:
            raise CalibrationError(
                f"calibration {str(directory)!r} has format {summary.get('format')!r}, "
                f"this version reads {', '.join(map(str, READABLE_FORMATS))}; calibrate again"
            )
        if not trust_pickle:
            check_no_pickles(directory / "classifier")
        calibrator = None
        saved_map = summary.get("calibration_map", {"method": "none"})
        if saved_map.get("method", "none") != "none":
            try:
                calibrator = calibrator_from_dict(saved_map)
            except ValueError as error:
                raise CalibrationError(
                    f"calibration {str(directory)!r} is damaged: {error}; calibrate again"
                ) from None
        metadata = {k: v for k, v in summary.items() if k not in _SUMMARY_FIELDS}
        saved = summary["classifier"]
        classifier = load_classifier(saved["name"], saved["options"], directory / "classifier")
        return cls(
            domains=summary["domains"],
            confusion=np.asarray(summary["confusion"], dtype=float),
            oof_probs=arrays["oof_probs"],
            labels=arrays["labels"],
            classifier=classifier,
            metadata=metadata,
            calibrator=calibrator,
            reference_probs=arrays.get("reference_probs"),
            reference_labels=arrays.get("reference_labels"),
            groups=arrays.get("groups"),
            reference_groups=arrays.get("reference_groups"),
        )


# Fields of calibration.json that Calibration computes; the rest is metadata.
_SUMMARY_FIELDS = {
    "format",
    "domains",
    "counts",
    "reference_counts",
    "accuracy",
    "confusion",
    "calibration_map",
}


def _read_files(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``calibration.json`` and ``predictions.npz``, naming what is missing or damaged."""
    try:
        summary = json.loads((directory / "calibration.json").read_text())
        with np.load(directory / "predictions.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (ValueError, OSError) as error:
        if not isinstance(error, FileNotFoundError):
            raise CalibrationError(
                f"calibration {str(directory)!r} is damaged ({error}); calibrate again"
            ) from None
        raise CalibrationError(
            f"{str(directory)!r} is not a calibration directory ({error.filename} is "
            "missing); run `llmsurgeon calibrate` to create one"
        ) from None
    return summary, arrays


def check_no_pickles(directory: Path) -> None:
    """Raise ``CalibrationError`` if a file under ``directory`` is or contains a pickle.

    A file counts as one if its name ends in a pickle suffix (joblib and
    PyTorch files among them) or it opens with a pickle protocol 2 to 5
    header. Pickles of protocol 0 and 1 have no header and pass unnoticed,
    but the shipped classifiers write none.
    """
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            opening = handle.read(2)
        if path.suffix.lower() in PICKLE_SUFFIXES or opening in PICKLE_OPENINGS:
            raise CalibrationError(
                f"calibration file {str(path)!r} is a pickle, and loading it can run any code; "
                "calibrate again, or set calibrate.trust_pickle: true if you trust the file"
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
    method: str = "none",
    continuations: Continuations | None = None,
) -> Calibration:
    """Cross-fit the classifier for ``C``, then fit it on the whole corpus.

    With ``continuations`` (generation mode), ``C`` and the predictions passed
    to the solver are those of the continuations, each labelled with the domain
    of the chunk that prompted it; otherwise those of the reference chunks.
    A calibration map ``method`` other than ``none`` is fitted on those
    predictions and applied to them before ``C`` is built.
    ``on_step`` is called after each of the ``folds + 1`` fits.
    """
    reference_probs, continuation_probs = _cross_fit(
        make_classifier, corpus, folds, seed, on_step, continuations
    )
    if not np.all(np.isfinite(reference_probs)):
        bad_rows = int(np.sum(~np.all(np.isfinite(reference_probs), axis=1)))
        raise ConfigError(
            f"the classifier returned non-finite probabilities for {bad_rows} of "
            f"{len(reference_probs)} reference chunks; check its options or choose another "
            "classifier"
        )
    groups = corpus.groups
    if continuations is None:
        oof_probs, labels = reference_probs, corpus.labels.copy()
    else:
        oof_probs, labels = continuation_probs, corpus.labels[continuations.chunks]
        groups = None if groups is None else groups[continuations.chunks]
    calibrator = make_calibrator(method)
    if calibrator is not None:
        # NOTE: the map is fitted on the same out-of-fold predictions it is applied
        # to. With at most K + 1 parameters it should add little optimism to C, but
        # no held-out check measures that.
        calibrator.fit(oof_probs, labels)
        metadata = {
            **metadata,
            "ece_before_map": expected_calibration_error(oof_probs, labels),
        }
        oof_probs = calibrator.transform(oof_probs)
        reference_probs = calibrator.transform(reference_probs)
        metadata["ece_after_map"] = expected_calibration_error(oof_probs, labels)
    classifier = make_classifier().fit(corpus.texts, corpus.labels, len(corpus.domains))
    if on_step is not None:
        on_step(folds)
    calibration = Calibration(
        domains=list(corpus.domains),
        confusion=soft_confusion(oof_probs, labels, len(corpus.domains)),
        oof_probs=oof_probs,
        labels=labels,
        classifier=classifier,
        metadata=metadata,
        calibrator=calibrator,
        reference_probs=None if continuations is None else reference_probs,
        reference_labels=None if continuations is None else corpus.labels.copy(),
        groups=None if groups is None else groups.copy(),
        reference_groups=None if continuations is None else corpus.groups,
    )
    logger.info(
        "out-of-fold accuracy %.3f on %d reference chunks", calibration.accuracy, len(corpus.labels)
    )
    return calibration


def generate_continuations(
    sampler: Sampler, corpus: ReferenceCorpus, per_domain: int, prefix_words: int, seed: int
) -> Continuations:
    """Prompt the prepared ``sampler`` with prefixes of reference chunks and keep the rest.

    Continuations that are empty after stripping whitespace are dropped,
    because they carry no text to classify.
    """
    chunks = select_prompt_chunks(corpus, per_domain, seed)
    prompts = [prompt_prefix(corpus.texts[i], prefix_words) for i in chunks]
    domains = [corpus.domains[corpus.labels[i]] for i in chunks]
    generated = sampler.continue_prompts(prompts, seed, domains)
    if len(generated) != len(prompts):
        raise CalibrationError(
            f"sampler {type(sampler).__name__} returned {len(generated)} continuations for "
            f"{len(prompts)} prompts; its continue_prompts() must return one per prompt"
        )
    keep = [i for i, text in enumerate(generated) if text.text.strip()]
    kept_chunks = chunks[keep]
    for index, domain in enumerate(corpus.domains):
        if not np.any(corpus.labels[kept_chunks] == index):
            logger.warning(
                "no continuation of domain %s is left to measure its row of C; it stays uniform",
                domain,
            )
    logger.info("kept %d of %d continuations of reference prefixes", len(keep), len(prompts))
    return Continuations([generated[i].text for i in keep], kept_chunks)


# Parts of a calibration's fingerprint that describe the taxonomy. A
# calibration reused by another config must match them; descriptions,
# recipes and merge maps do not change a calibration and are left out.
TAXONOMY_PARTS = ("domains", "sources", "preprocess")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def taxonomy_fingerprint(taxonomy: Taxonomy) -> dict[str, Any]:
    """Return what of ``taxonomy`` the reference corpus depends on.

    That is the leaf domain ids in order, a digest of each leaf's sources and
    caps, and a digest of the preprocessing.
    """
    sources = {}
    for domain in taxonomy.leaves:
        dumped = domain.model_dump(mode="json", include={"sources", "max_chunks", "max_words"})
        sources[domain.id] = _digest(dumped)
    return {
        "domains": list(taxonomy.domain_ids),
        "sources": sources,
        "preprocess": _digest(taxonomy.preprocess.model_dump(mode="json")),
    }


def fingerprint_changes(
    stored: dict[str, Any], current: dict[str, Any], parts: tuple[str, ...] | None = None
) -> list[str]:
    """Name what differs between two fingerprints, as config keys or taxonomy parts."""
    changes = []
    for part in parts or tuple(dict.fromkeys([*stored, *current])):
        old, new = stored.get(part), current.get(part)
        if old == new:
            continue
        if part == "domains":
            changes.append(_domain_changes(old or [], new or []))
        elif part == "sources" and isinstance(old, dict) and isinstance(new, dict):
            changed = [d for d in new if d in old and old[d] != new[d]]
            changes.extend(f"sources of domain {d!r}" for d in changed)
        elif isinstance(old, dict) and isinstance(new, dict):
            changes.extend(f"{part}.{key}" for key in _changed_keys(old, new, prefix=""))
        else:
            changes.append(part)
    return changes


def _domain_changes(old: list[str], new: list[str]) -> str:
    added = [d for d in new if d not in old]
    removed = [d for d in old if d not in new]
    details = []
    if added:
        details.append(f"added {', '.join(added)}")
    if removed:
        details.append(f"removed {', '.join(removed)}")
    if not details:
        details.append("reordered")
    return f"domains ({'; '.join(details)})"


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str) -> list[str]:
    keys = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            keys.extend(_changed_keys(before, after, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def library_versions() -> dict[str, str | None]:
    """Return the versions of the numerical libraries a calibration's numbers depend on."""
    versions: dict[str, str | None] = {}
    for name in ("numpy", "scipy", "scikit-learn"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions
