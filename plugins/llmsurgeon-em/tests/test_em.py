from __future__ import annotations

import logging

import numpy as np
import pydantic
import pytest

from llmsurgeon_core import ReferencePredictions, Solver, load_registry
from llmsurgeon_em import BCTSCalibrator, EMSolver, em_priors
from llmsurgeon_em.calibration import softmax

K = 4


def make_solver(**options) -> EMSolver:
    return EMSolver(EMSolver.Options(**options))


def calibrated_posteriors(labels: np.ndarray, rng: np.random.Generator, k: int = K) -> np.ndarray:
    """Return exact Bayes posteriors under uniform priors for Gaussian class features.

    Features are ``x ~ N(2 e_y, I)``, so the posterior under equal priors is
    ``softmax(2 x)`` and it is calibrated by construction.
    """
    features = rng.normal(size=(len(labels), k)) + 2.0 * np.eye(k)[labels]
    return softmax(2.0 * features - 2.0)


def test_registers_as_em_bbse():
    registration = load_registry().get("solver", "em-bbse")

    assert registration.obj is EMSolver
    assert issubclass(EMSolver, Solver)
    assert EMSolver.requires_reference


@pytest.mark.parametrize("calibration", ["none", "bcts"])
def test_recovers_mixture_from_calibrated_posteriors(calibration):
    rng = np.random.default_rng(0)
    mixture = np.array([0.55, 0.25, 0.15, 0.05])
    labels = rng.choice(K, size=20_000, p=mixture)
    reference_labels = np.repeat(np.arange(K), 1500)
    reference = ReferencePredictions(calibrated_posteriors(reference_labels, rng), reference_labels)
    confusion = np.array([reference.probs[reference_labels == i].mean(0) for i in range(K)])

    result = make_solver(calibration=calibration).solve(
        confusion, calibrated_posteriors(labels, rng), np.full(K, 1 / K), reference
    )

    np.testing.assert_allclose(result.mixture, mixture, atol=0.015)
    assert result.info["converged"] is True
    assert result.info["start"] == "bbse"
    if calibration == "bcts":
        assert result.info["temperature"] == pytest.approx(1.0, abs=0.1)


def test_bcts_undoes_temperature_and_bias():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, K, size=8000)
    posteriors = calibrated_posteriors(labels, rng)
    bias = np.array([0.5, -0.5, 0.0, 0.2])
    distorted = softmax(3.0 * np.log(posteriors) + bias)

    calibrator = BCTSCalibrator().fit(distorted, labels)

    assert 1.0 / calibrator.inverse_temperature_ == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(calibrator.transform(distorted), posteriors, atol=0.05)
    assert calibrator.converged_


def test_em_reports_non_convergence(caplog):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, K, size=500)
    reference = ReferencePredictions(calibrated_posteriors(labels, rng), labels)

    with caplog.at_level(logging.INFO):
        result = make_solver(max_iter=2, tolerance=1e-15).solve(
            np.eye(K), calibrated_posteriors(labels, rng), np.full(K, 1 / K), reference
        )

    assert result.info["converged"] is False
    assert result.info["iterations"] == 2
    assert "did not converge in 2 iterations" in caplog.text


def test_zero_prior_domain_gets_zero_share():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K - 1, size=300)
    reference = ReferencePredictions(calibrated_posteriors(labels, rng), labels)
    priors = np.bincount(labels, minlength=K) / len(labels)

    result = make_solver().solve(np.eye(K), calibrated_posteriors(labels, rng), priors, reference)

    assert result.mixture[K - 1] == 0.0
    assert result.info["excluded_domains"] == [K - 1]


def test_em_priors_fixed_point():
    posteriors = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    priors = np.array([0.5, 0.5])

    mixture, _, converged, _ = em_priors(posteriors, priors, np.array([0.5, 0.5]), 1e-14, 10_000)

    reweighted = posteriors * mixture / priors
    reweighted /= reweighted.sum(axis=1, keepdims=True)
    assert converged
    np.testing.assert_allclose(reweighted.mean(axis=0), mixture, atol=1e-12)


def test_options_reject_unknown_key():
    with pytest.raises(pydantic.ValidationError):
        EMSolver.Options(tolerence=1e-6)
