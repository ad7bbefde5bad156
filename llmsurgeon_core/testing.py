"""Conformance checks that plugin packages call from their own tests.

The core installs this module as a pytest plugin (entry point ``pytest11``
named ``llmsurgeon``), so pytest rewrites its asserts and every plugin's test
suite can import the checks::

    from llmsurgeon_core.testing import check_solver

    def test_conformance():
        check_solver(MySolver)

Each check raises :class:`ConformanceError`, an ``AssertionError``, naming the
component, the case and what was expected. pytest loads this module in every
test session, so it imports only the standard library at the top and imports
NumPy and the core's modules inside the checks.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .components import Classifier, ComponentOptions, Sampler, Solver
    from .executors import Executor, SavedClassifier
    from .taxonomy import Taxonomy

__all__ = [
    "ConformanceError",
    "check_classifier",
    "check_executor",
    "check_sampler",
    "check_solver",
    "check_taxonomy",
]

# Tolerance of a mixture's or a probability row's sum, and of a recipe's sum.
SUM_TOLERANCE = 1e-8


class ConformanceError(AssertionError):
    """A component that breaks the contract of its interface."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def _name(component: Any) -> str:
    cls = component if isinstance(component, type) else type(component)
    return f"{cls.__module__}.{cls.__qualname__}"


# Solvers


def _solver_cases(seed: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Build ``(case name, solve arguments)`` for random and singular confusion matrices."""
    import numpy as np

    from .components import ReferencePredictions

    rng = np.random.default_rng(seed)
    cases = []
    for k in (1, 2, 4):
        for kind in ("random", "singular", "identity"):
            if kind == "singular" and k == 1:
                continue
            confusion = rng.dirichlet(np.full(k, 0.5), size=k)
            if kind == "singular":
                # Two equal rows make the matrix singular, so a naive inverse fails.
                confusion[1] = confusion[0]
            elif kind == "identity":
                confusion = np.eye(k)
            sample_probs = rng.dirichlet(np.full(k, 0.3), size=30)
            labels = np.concatenate([np.arange(k), rng.integers(0, k, size=20)])
            reference_probs = rng.dirichlet(np.full(k, 0.3), size=len(labels))
            priors = np.bincount(labels, minlength=k) / len(labels)
            reference = ReferencePredictions(reference_probs, labels)
            cases.append((f"{kind} confusion, K={k}", (confusion, sample_probs, priors, reference)))
    return cases


def _check_mixture(label: str, result: Any, k: int) -> None:
    import numpy as np

    from .components import SolveResult

    _expect(
        isinstance(result, SolveResult),
        f"{label}: solve returned {type(result).__name__}, expected a SolveResult",
    )
    mixture = np.asarray(result.mixture, dtype=np.float64)
    _expect(mixture.shape == (k,), f"{label}: mixture has shape {mixture.shape}, expected ({k},)")
    _expect(bool(np.isfinite(mixture).all()), f"{label}: mixture {mixture} is not finite")
    _expect(bool((mixture >= 0).all()), f"{label}: mixture {mixture} has a negative share")
    total = float(mixture.sum())
    _expect(
        abs(total - 1.0) <= SUM_TOLERANCE,
        f"{label}: mixture sums to {total!r}, expected 1 within {SUM_TOLERANCE:g}",
    )


def check_solver(
    solver_cls: type[Solver], options: ComponentOptions | None = None, *, seed: int = 0
) -> None:
    """Check that a solver class meets the :class:`~llmsurgeon_core.Solver` contract.

    Solves random, singular and identity confusion matrices with 1, 2 and 4
    domains, always passing reference predictions, and expects each mixture to
    be a finite ``(K,)`` vector on the probability simplex. Then it passes a
    non-square confusion matrix, ``sample_probs`` with too few columns and
    ``reference_priors`` of the wrong length, and expects ``ValueError`` for each.

    Args:
        solver_cls: the class a plugin registers.
        options: options to construct it with; default ``solver_cls.Options()``.
        seed: seed of the random inputs.

    Raises:
        ConformanceError: naming the case that failed.
    """
    from .components import Solver

    name = _name(solver_cls)
    _expect(
        isinstance(solver_cls, type) and issubclass(solver_cls, Solver),
        f"{name} is not a subclass of llmsurgeon_core.Solver",
    )
    if options is None:
        options = solver_cls.Options()
    for case, arguments in _solver_cases(seed):
        result = solver_cls(options).solve(*arguments)
        _check_mixture(f"{name}, {case}", result, arguments[0].shape[0])

    _, (confusion, sample_probs, priors, reference) = _solver_cases(seed)[-1]
    wrong_shapes = {
        "non-square confusion": (confusion[:, :-1], sample_probs, priors, reference),
        "sample_probs with too few columns": (confusion, sample_probs[:, :-1], priors, reference),
        "reference_priors of the wrong length": (confusion, sample_probs, priors[:-1], reference),
    }
    for case, arguments in wrong_shapes.items():
        try:
            solver_cls(options).solve(*arguments)
        except ValueError:
            continue
        raise ConformanceError(f"{name}: solve accepted {case}, expected ValueError")


# Classifiers


def _check_probabilities(label: str, probabilities: Any, n_texts: int, n_classes: int) -> None:
    import numpy as np

    probabilities = np.asarray(probabilities)
    expected = (n_texts, n_classes)
    _expect(
        probabilities.shape == expected,
        f"{label}: predict_proba returned shape {probabilities.shape}, expected {expected}",
    )
    _expect(
        bool(np.isfinite(probabilities).all()), f"{label}: predict_proba returned non-finite values"
    )
    _expect(bool((probabilities >= 0).all()), f"{label}: predict_proba returned negative values")
    worst = float(np.abs(probabilities.sum(axis=1) - 1.0).max(initial=0.0))
    _expect(
        worst <= SUM_TOLERANCE,
        f"{label}: a row of predict_proba sums to 1 ± {worst:g}, expected within {SUM_TOLERANCE:g}",
    )


def _fit(
    classifier_cls: type[Classifier],
    options: ComponentOptions,
    texts: Sequence[str],
    labels: np.ndarray,
    n_classes: int,
) -> Classifier:
    classifier = classifier_cls(options)
    fitted = classifier.fit(texts, labels, n_classes)
    _expect(
        fitted is classifier,
        f"{_name(classifier_cls)}: fit returned {type(fitted).__name__}, expected self",
    )
    return fitted


def check_classifier(
    classifier_cls: type[Classifier],
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    options: ComponentOptions | None = None,
) -> None:
    """Check that a classifier class meets the :class:`~llmsurgeon_core.Classifier` contract.

    Fits fresh instances three times: on all ``texts`` with ``n_classes``
    domains, with one extra domain that has no texts, and without the texts
    of domain 0. Each time ``predict_proba`` must return one finite,
    non-negative row per text with one column per domain, summing to 1, and
    an iterator of texts must give the same rows as a list. A classifier
    saved into an empty folder and loaded again must predict identical
    probabilities.

    Args:
        classifier_cls: the class a plugin registers.
        texts: real texts of at least two domains; a few hundred short
            chunks keep the check fast.
        labels: integer domain of each text, in ``[0, n_classes)``, where
            ``n_classes`` is ``max(labels) + 1``.
        options: options to construct it with; default ``classifier_cls.Options()``.

    Raises:
        ConformanceError: naming the case that failed.
    """
    import numpy as np

    from .components import Classifier

    name = _name(classifier_cls)
    _expect(
        isinstance(classifier_cls, type) and issubclass(classifier_cls, Classifier),
        f"{name} is not a subclass of llmsurgeon_core.Classifier",
    )
    texts = list(texts)
    labels = np.asarray(labels, dtype=np.int64)
    _expect(len(texts) == len(labels), f"got {len(texts)} texts but {len(labels)} labels")
    n_classes = int(labels.max()) + 1
    _expect(len(np.unique(labels)) >= 2, "check_classifier needs texts of at least two domains")
    if options is None:
        options = classifier_cls.Options()

    classifier = _fit(classifier_cls, options, texts, labels, n_classes)
    probabilities = classifier.predict_proba(texts)
    _check_probabilities(f"{name}, all domains", probabilities, len(texts), n_classes)
    _expect(
        np.array_equal(np.asarray(classifier.predict_proba(iter(texts))), probabilities),
        f"{name}: predict_proba of an iterator differs from predict_proba of a list",
    )

    padded = _fit(classifier_cls, options, texts, labels, n_classes + 1)
    _check_probabilities(
        f"{name}, last of {n_classes + 1} domains without texts",
        padded.predict_proba(texts),
        len(texts),
        n_classes + 1,
    )
    keep = labels != 0
    if len(np.unique(labels[keep])) >= 2:
        kept_texts = [t for t, k in zip(texts, keep) if k]
        gapped = _fit(classifier_cls, options, kept_texts, labels[keep], n_classes)
        _check_probabilities(
            f"{name}, domain 0 without texts",
            gapped.predict_proba(texts),
            len(texts),
            n_classes,
        )

    with tempfile.TemporaryDirectory(prefix="llmsurgeon-check-") as directory:
        saved = Path(directory) / "classifier"
        saved.mkdir()
        classifier.save(saved)
        loaded = classifier_cls.load(saved, options)
        _expect(
            isinstance(loaded, classifier_cls),
            f"{name}: load returned {type(loaded).__name__}, expected {classifier_cls.__name__}",
        )
        _expect(
            np.array_equal(np.asarray(loaded.predict_proba(texts)), probabilities),
            f"{name}: the loaded classifier predicts different probabilities than the saved one",
        )


# Samplers

_RECORD_TYPES = {
    "id": int,
    "prompt": str,
    "text": str,
    "n_tokens": int,
    "finish_reason": str,
    "metadata": dict,
}


def _check_records(label: str, records: list[dict[str, Any]], n_samples: int) -> None:
    _expect(
        len(records) == n_samples,
        f"{label}: draw_samples returned {len(records)} records, expected n_samples={n_samples}",
    )
    for position, record in enumerate(records):
        _expect(
            record.get("id") == position,
            f"{label}: record {position} has id {record.get('id')!r}, expected {position}",
        )
        for key, expected_type in _RECORD_TYPES.items():
            _expect(
                isinstance(record.get(key), expected_type),
                f"{label}: record {position} field {key!r} is {record.get(key)!r}, expected "
                f"{expected_type.__name__}",
            )


def check_sampler(sampler: Sampler, tmp_path: Path, *, seed: int = 0) -> None:
    """Check that a sampler meets the :class:`~llmsurgeon_core.Sampler` contract.

    Prepares ``sampler`` with a cache folder under ``tmp_path`` and draws its
    samples with :func:`llmsurgeon_core.sampling.draw_samples`. It expects
    ``n_samples`` records with ids ``0, 1, …`` and every field of
    :class:`~llmsurgeon_core.GeneratedText`. Regenerating the first and the
    last batch must give the same texts. A copy of ``samples.jsonl`` cut in
    the middle of a batch, with a torn last line, must resume to the same records.

    Args:
        sampler: a configured sampler; with ``batch_size`` below ``n_samples``
            the resume starts in the middle of a batch.
        tmp_path: an empty folder for the cache and the sample files.
        seed: run seed passed in every request.

    Raises:
        ConformanceError: naming the case that failed.
    """
    from .components import Sampler, SampleRequest
    from .sampling import draw_samples, read_samples

    name = _name(sampler)
    _expect(isinstance(sampler, Sampler), f"{name} is not a llmsurgeon_core.Sampler instance")
    tmp_path = Path(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    sampler.prepare(cache)
    n_samples = sampler.n_samples
    _expect(n_samples >= 1, f"{name}: n_samples is {n_samples}, expected at least 1")

    path = tmp_path / "samples.jsonl"
    records = draw_samples(sampler, path, seed)
    _check_records(f"{name}, first draw", records, n_samples)
    stored = read_samples(path)
    _check_records(f"{name}, {path.name}", stored, n_samples)

    batch_size = max(1, sampler.batch_size)
    last_start = (n_samples - 1) - (n_samples - 1) % batch_size
    for start in sorted({0, last_start}):
        indices = list(range(start, min(start + batch_size, n_samples)))
        again = sampler.generate(SampleRequest(indices=indices, seed=seed))
        _expect(
            [g.text for g in again] == [stored[i]["text"] for i in indices],
            f"{name}: regenerating the batch at index {start} gave different texts",
        )

    resumed_path = tmp_path / "resumed.jsonl"
    shutil.copyfile(path, resumed_path)
    lines = resumed_path.read_bytes().splitlines(keepends=True)
    keep = n_samples // 2
    if batch_size > 1 and keep % batch_size == 0 and keep + 1 < n_samples:
        keep += 1
    torn = lines[keep][: len(lines[keep]) // 2] if keep < len(lines) else b""
    resumed_path.write_bytes(b"".join(lines[:keep]) + torn)
    draw_samples(sampler, resumed_path, seed)
    resumed = read_samples(resumed_path)
    _expect(
        json.dumps(resumed, sort_keys=True) == json.dumps(stored, sort_keys=True),
        f"{name}: resuming after cutting samples.jsonl to {keep} records gave different records",
    )


# Executors


def _check_executor_sampling(
    executor: Executor, sampler: Sampler, tmp_path: Path, seed: int
) -> None:
    from dataclasses import asdict

    from .components import SampleRequest
    from .sampling import draw_samples, read_samples

    name = _name(executor)
    protocol = executor.prepare(sampler, tmp_path / "cache")
    _expect(
        isinstance(protocol, dict) and set(protocol) == set(sampler.protocol()),
        f"{name}: prepare returned {protocol!r}, expected a protocol with the keys of "
        "the sampler's own",
    )
    expected_path = tmp_path / "local.jsonl"
    expected = draw_samples(sampler, expected_path, seed)
    path = tmp_path / "executor.jsonl"
    records = draw_samples(sampler, path, seed, executor=executor)
    _expect(
        json.dumps(records, sort_keys=True) == json.dumps(expected, sort_keys=True),
        f"{name}: draw_samples through the executor gave other records than the sampler alone",
    )

    lines = path.read_bytes().splitlines(keepends=True)
    keep = len(lines) // 2 + (1 if sampler.batch_size > 1 else 0)
    keep = min(keep, len(lines) - 1)
    path.write_bytes(b"".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])
    draw_samples(sampler, path, seed, executor=executor)
    _expect(
        json.dumps(read_samples(path), sort_keys=True) == json.dumps(expected, sort_keys=True),
        f"{name}: resuming a file cut to {keep} records gave different records",
    )

    size = max(1, sampler.batch_size)
    requests = [
        SampleRequest(indices=list(range(start, min(start + size, sampler.n_samples))), seed=seed)
        for start in range(0, sampler.n_samples, size)
    ][::-1]
    batches = list(executor.generate(sampler, requests))
    _expect(
        len(batches) == len(requests),
        f"{name}: generate yielded {len(batches)} batches for {len(requests)} requests",
    )
    for request, batch in zip(requests, batches):
        _expect(
            [asdict(g) for g in batch] == [asdict(g) for g in sampler.generate(request)],
            f"{name}: the batch at index {request.indices[0]} differs from the sampler's, or "
            "came back out of request order",
        )
    _expect(
        list(executor.generate(sampler, [])) == [],
        f"{name}: generate yielded batches for no requests",
    )


def check_executor(
    executor: Executor,
    sampler: Sampler,
    classifier: SavedClassifier,
    texts: Sequence[str],
    tmp_path: Path,
    *,
    seed: int = 0,
) -> None:
    """Check that an executor returns what the sampler and classifier return on their own.

    ``prepare`` must return a protocol with the sampler's keys. Draws the
    sampler's samples with and without the executor and expects the same
    records, also after resuming a file cut in the middle of a batch with a
    torn last line. Batches requested in reverse order must come back in that
    order. ``predict_proba`` must match the loaded classifier's probabilities,
    row for row, also for the texts in reverse order.

    Args:
        executor: the executor, already configured; the check does not close it.
        sampler: a prepared sampler whose ``n_samples`` spans several batches.
        classifier: a classifier saved in a calibration directory.
        texts: at least two texts to classify.
        tmp_path: an empty folder for the sample files.
        seed: run seed passed in every request.

    Raises:
        ConformanceError: naming the case that failed.
    """
    import numpy as np

    from .executors import Executor

    name = _name(executor)
    _expect(isinstance(executor, Executor), f"{name} is not a llmsurgeon_core Executor instance")
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    _check_executor_sampling(executor, sampler, tmp_path, seed)

    expected = np.asarray(classifier.load().predict_proba(list(texts)))
    for label, order in (("in order", slice(None)), ("reversed", slice(None, None, -1))):
        probs = executor.predict_proba(classifier, list(texts)[order])
        _check_probabilities(f"{name}, texts {label}", probs, len(texts), expected.shape[1])
        _expect(
            bool(np.allclose(probs, expected[order], rtol=0, atol=1e-12)),
            f"{name}: predict_proba of the texts {label} differs from the classifier's rows",
        )


# Taxonomies


def check_taxonomy(taxonomy: Taxonomy | str | Path) -> Taxonomy:
    """Check that a taxonomy validates and that each recipe is a mixture summing to 1.

    Args:
        taxonomy: a :class:`~llmsurgeon_core.Taxonomy`, the path of a
            taxonomy YAML file, or the name of a registered taxonomy.

    Returns:
        The validated taxonomy.

    Raises:
        ConformanceError: naming the taxonomy and the recipe that failed.
        TaxonomyValidationError: if the taxonomy is invalid, listing every
            invalid field.
    """
    from .taxonomy import Taxonomy, resolve_taxonomy, validate_taxonomy_data

    if isinstance(taxonomy, Taxonomy):
        # Validating the dumped fields again runs every check on the current values,
        # including ones a caller assigned after construction.
        taxonomy = validate_taxonomy_data(taxonomy.model_dump(), taxonomy.name, taxonomy.base_dir)
    else:
        taxonomy = resolve_taxonomy(taxonomy)
    leaves = taxonomy.domain_ids
    _expect(len(leaves) >= 2, f"taxonomy {taxonomy.name!r} has {len(leaves)} leaf domains")
    for recipe in taxonomy.recipes:
        vector = taxonomy.recipe_vector(recipe)
        label = f"taxonomy {taxonomy.name!r}, recipe {recipe!r}"
        _expect(
            len(vector) == len(leaves),
            f"{label}: {len(vector)} shares for {len(leaves)} leaf domains",
        )
        _expect(
            all(math.isfinite(v) and v >= 0 for v in vector),
            f"{label}: a share is negative or not finite",
        )
        total = math.fsum(vector)
        _expect(
            abs(total - 1.0) <= SUM_TOLERANCE,
            f"{label}: shares sum to {total!r}, expected 1 within {SUM_TOLERANCE:g}",
        )
    return taxonomy
