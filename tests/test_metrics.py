"""Mixture metrics and the estimation helpers of the core."""

from __future__ import annotations

import numpy as np
import pytest

from llmsurgeon_core.calibration import soft_confusion
from llmsurgeon_core.estimation import naive_mixture
from llmsurgeon_core.metrics import compare_mixtures, overlap_accuracy


def test_overlap_is_one_minus_total_variation():
    estimate = np.array([0.5, 0.3, 0.2])
    truth = np.array([0.4, 0.4, 0.2])
    assert overlap_accuracy(estimate, truth) == pytest.approx(0.9)
    assert overlap_accuracy(truth, truth) == pytest.approx(1.0)


def test_compare_mixtures_perfect_estimate():
    truth = np.array([0.7, 0.2, 0.1])
    metrics = compare_mixtures(truth, truth)
    assert metrics["mae"] == 0.0
    assert metrics["r2"] == pytest.approx(1.0)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-12)


def test_kl_stays_finite_when_estimate_has_zero():
    metrics = compare_mixtures(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert np.isfinite(metrics["kl"])


def test_soft_confusion_rows_are_class_means():
    probs = np.array([[0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0]])
    labels = np.array([0, 0, 1])
    confusion = soft_confusion(probs, labels, 3)
    np.testing.assert_allclose(confusion[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(confusion[1], [0.2, 0.8, 0.0])
    np.testing.assert_allclose(confusion[2], [1 / 3] * 3)


def test_naive_mixture_counts_top_classes():
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2]])
    np.testing.assert_allclose(naive_mixture(probs), [0.5, 0.5])
