"""Our solvers against QuaPy's on identical posteriors.

QuaPy is a test and benchmark dependency only. Its PACC minimizes
``||C.T @ pi - p_bar||`` on the simplex with SLSQP, which is the problem
``nnls`` and ``cvxpy`` solve exactly. So the two agree up to SLSQP's own
tolerance: the solver benchmark measured differences of 1e-5 to 6e-5, and
the test allows 1e-4. Its EMQ is the EM of Saerens et al. started from the
training priors, the problem ``em-bbse`` solves with ``start="reference"``.
With no calibration on either side and both run to a
tolerance of 1e-12 they agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmsurgeon_core import ReferencePredictions, load_registry
from llmsurgeon_core.calibration import cross_fit, soft_confusion
from llmsurgeon_core.calibrators import BCTSCalibrator
from llmsurgeon_core.corpus import build_reference_corpus
from llmsurgeon_core.taxonomy import resolve_taxonomy

qp = pytest.importorskip("quapy", reason="QuaPy is installed by requirements-dev.txt")
aggregative = pytest.importorskip("quapy.method.aggregative")


def _solver(name: str, **options):
    cls = load_registry().get("solver", name).obj
    return cls(cls.Options(**options))


def _scored(k: int):
    """Return a fitted stand-in classifier whose inputs already are posteriors."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Scored(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            return self

        def predict_proba(self, x):
            return x

    classifier = Scored()
    classifier.classes_ = np.arange(k)
    return classifier


def _quapy_pacc(reference: ReferencePredictions, samples: np.ndarray) -> np.ndarray:
    k = reference.probs.shape[1]
    pacc = aggregative.PACC(_scored(k), fit_classifier=False, val_split=None)
    pacc.aggregation_fit(reference.probs, reference.labels)
    return np.asarray(pacc.aggregate(samples))


def _quapy_em(priors: np.ndarray, samples: np.ndarray) -> np.ndarray:
    default_cap = aggregative.EMQ.MAX_ITER
    aggregative.EMQ.MAX_ITER = 100_000
    try:
        return np.asarray(aggregative.EMQ.EM(priors, samples, 1e-12)[0])
    finally:
        aggregative.EMQ.MAX_ITER = default_cap


def _solve(name: str, reference: ReferencePredictions, samples: np.ndarray, **options):
    k = samples.shape[1]
    confusion = soft_confusion(reference.probs, reference.labels, k)
    priors = np.bincount(reference.labels, minlength=k) / len(reference.labels)
    return _solver(name, **options).solve(confusion, samples, priors, reference).mixture


def _draw(probs, labels, mixture, n, rng) -> np.ndarray:
    by_domain = [np.flatnonzero(labels == i) for i in range(len(mixture))]
    drawn = rng.choice(len(mixture), n, p=mixture)
    return probs[[rng.choice(by_domain[d]) for d in drawn]]


def _dirichlet_posteriors(k: int, n_per_domain: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of a classifier that is right about 60% of the time, with soft errors."""
    confusion = 0.6 * np.eye(k) + 0.4 * rng.dirichlet(np.ones(k), size=k)
    labels = np.repeat(np.arange(k), n_per_domain)
    return np.array([rng.dirichlet(20 * confusion[y]) for y in labels]), labels


@pytest.fixture(scope="module")
def demo_posteriors() -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold tfidf posteriors of the demo taxonomy's real reference text."""
    corpus = build_reference_corpus(resolve_taxonomy("demo"), 120, 48, 0, 5, 8)
    cls = load_registry().get("classifier", "tfidf").obj
    return cross_fit(lambda: cls(cls.Options()), corpus, 5, 0), corpus.labels


def _pools(demo_posteriors):
    rng = np.random.default_rng(7)
    yield "demo", *demo_posteriors
    yield "dirichlet", *_dirichlet_posteriors(8, 150, rng)


@pytest.mark.parametrize("name", ["nnls", "cvxpy"])
def test_least_squares_solvers_match_quapy_pacc(name, demo_posteriors):
    rng = np.random.default_rng(0)
    for pool, probs, labels in _pools(demo_posteriors):
        k = probs.shape[1]
        reference = ReferencePredictions(probs, labels)
        for _ in range(5):
            mixture = rng.dirichlet(np.ones(k))
            samples = _draw(probs, labels, mixture, 400, rng)
            ours = _solve(name, reference, samples)
            theirs = _quapy_pacc(reference, samples)
            assert np.abs(ours - theirs).max() < 1e-4, (pool, ours, theirs)


def test_em_matches_quapy_emq_without_calibration(demo_posteriors):
    rng = np.random.default_rng(1)
    for pool, probs, labels in _pools(demo_posteriors):
        k = probs.shape[1]
        reference = ReferencePredictions(probs, labels)
        priors = np.bincount(labels, minlength=k) / len(labels)
        for _ in range(5):
            samples = _draw(probs, labels, rng.dirichlet(np.ones(k)), 400, rng)
            ours = _solve(
                "em-bbse",
                reference,
                samples,
                calibration="none",
                start="reference",
                tolerance=1e-12,
                max_iter=100_000,
            )
            theirs = _quapy_em(priors, samples)
            assert np.abs(ours - theirs).max() < 1e-6, (pool, ours, theirs)


def test_em_matches_emq_after_shared_calibration(demo_posteriors):
    """Calibrate once with our BCTS, then give both EMs the calibrated posteriors."""
    probs, labels = demo_posteriors
    k = probs.shape[1]
    calibrator = BCTSCalibrator().fit(probs, labels)
    calibrated = calibrator.transform(probs)
    reference = ReferencePredictions(calibrated, labels)
    priors = np.bincount(labels, minlength=k) / len(labels)
    rng = np.random.default_rng(2)
    samples = _draw(calibrated, labels, rng.dirichlet(np.ones(k)), 400, rng)
    ours = _solve(
        "em-bbse",
        reference,
        samples,
        calibration="none",
        start="reference",
        tolerance=1e-12,
        max_iter=100_000,
    )
    assert np.abs(ours - _quapy_em(priors, samples)).max() < 1e-6
