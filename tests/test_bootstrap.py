"""Bootstrap intervals: pseudo-samples keep the interval of a domain with no samples open."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from llmsurgeon_core import ReferencePredictions, load_registry
from llmsurgeon_core.config import BootstrapConfig
from llmsurgeon_core.estimation import bootstrap_intervals

N_SAMPLES = 1000


@pytest.fixture(scope="module")
def nnls():
    cls = load_registry().get("solver", "nnls").obj
    return cls(cls.Options())


@pytest.fixture(scope="module")
def exact_classifier() -> tuple[ReferencePredictions, np.ndarray]:
    """One-hot predictions, so ``C`` is the identity and the estimate counts samples.

    The target has 600 samples of domain 0, 400 of domain 1 and none of domain 2.
    """
    labels = np.repeat(np.arange(3), 100)
    reference = ReferencePredictions(np.eye(3)[labels], labels)
    samples = np.eye(3)[np.repeat([0, 1], [600, 400])]
    return reference, samples


def intervals(solver, data, pseudo_samples: float) -> np.ndarray:
    reference, samples = data
    interval, _ = bootstrap_intervals(
        solver, reference, samples, 400, 0.9, 0, pseudo_samples=pseudo_samples
    )
    return interval


def test_absent_domain_interval_without_pseudo_samples(nnls, exact_classifier):
    assert intervals(nnls, exact_classifier, 0.0)[2].tolist() == [0.0, 0.0]


def test_absent_domain_interval_with_pseudo_samples(nnls, exact_classifier):
    low, high = intervals(nnls, exact_classifier, 0.5)[2]
    assert low == 0.0
    # Jeffreys' 95% upper bound for 0 successes in 1,000 trials is 1.9 / 1,000.
    assert 1.0 / N_SAMPLES <= high <= 3.0 / N_SAMPLES


def test_pseudo_samples_add_to_counts(nnls, exact_classifier):
    reference, samples = exact_classifier
    _, estimates = bootstrap_intervals(nnls, reference, samples, 400, 0.9, 0, pseudo_samples=0.5)
    counts = estimates[:, 2] * N_SAMPLES
    # With C = I, a resample's share of the absent domain is its pseudo-sample count over n.
    assert np.allclose(counts, np.round(counts))
    assert abs(counts.mean() - 0.5) < 0.15
    assert np.all(estimates.sum(axis=1) >= 1.0 - 1e-12)


def test_pseudo_samples_barely_move_large_shares(nnls, exact_classifier):
    plain = intervals(nnls, exact_classifier, 0.0)[:2]
    padded = intervals(nnls, exact_classifier, 0.5)[:2]
    # A 90% interval of a share near 0.5 from 1,000 samples is about 0.05 wide.
    assert np.abs(padded - plain).max() < 0.005
    widths = np.diff(padded, axis=1) / np.diff(plain, axis=1)
    assert np.all((0.8 < widths) & (widths < 1.25))


def test_interval_contains_the_given_estimate(nnls, exact_classifier):
    reference, samples = exact_classifier
    # A point estimate below every resample of domain 2, as a floored solver can give.
    estimate = np.array([0.6, 0.4, 0.0])
    unwidened, _ = bootstrap_intervals(nnls, reference, samples, 50, 0.2, 0, pseudo_samples=5.0)
    interval, _ = bootstrap_intervals(
        nnls, reference, samples, 50, 0.2, 0, pseudo_samples=5.0, estimate=estimate
    )
    assert unwidened[2, 0] > estimate[2]
    assert np.all(interval[:, 0] <= estimate)
    assert np.all(estimate <= interval[:, 1])


@pytest.mark.parametrize("value", [-1, 11, float("inf"), float("nan")])
def test_config_rejects_invalid_pseudo_samples(value):
    with pytest.raises(ValidationError, match="pseudo_samples"):
        BootstrapConfig(pseudo_samples=value)


@pytest.mark.parametrize("value", [-0.5, float("inf")])
def test_bootstrap_rejects_invalid_pseudo_samples(nnls, exact_classifier, value):
    reference, samples = exact_classifier
    with pytest.raises(ValueError, match="pseudo_samples must be a finite number"):
        bootstrap_intervals(nnls, reference, samples, 2, 0.9, 0, pseudo_samples=value)
