from __future__ import annotations

import numpy as np
import pytest

from llmsurgeon_baselines import (
    ClassifyAndCountSolver,
    HardBBSESolver,
    ProbabilisticClassifyAndCountSolver,
    RLLSSolver,
)
from llmsurgeon_core import ReferencePredictions, load_registry
from llmsurgeon_core.solving import hard_confusion

K = 3


def reference_with_errors() -> ReferencePredictions:
    """Return reference predictions whose hard confusion has 0.8 on the diagonal."""
    labels = np.repeat(np.arange(K), 10)
    predicted = labels.copy()
    for k in range(K):
        predicted[10 * k] = (k + 1) % K
        predicted[10 * k + 1] = (k + 2) % K
    return ReferencePredictions(np.eye(K)[predicted] * 0.9 + 0.1 / K, labels)


def samples_with_shares(shares: list[float]) -> np.ndarray:
    counts = np.round(np.asarray(shares) * 1000).astype(int)
    return np.eye(K)[np.repeat(np.arange(K), counts)] * 0.7 + 0.3 / K


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("cc", ClassifyAndCountSolver),
        ("pcc", ProbabilisticClassifyAndCountSolver),
        ("bbse", HardBBSESolver),
        ("rlls", RLLSSolver),
    ],
)
def test_registers_each_baseline(name, cls):
    assert load_registry().get("solver", name).obj is cls


def test_cc_and_pcc_count_samples():
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])

    cc = ClassifyAndCountSolver(ClassifyAndCountSolver.Options()).solve(
        np.eye(K), probs, np.ones(K)
    )
    pcc = ProbabilisticClassifyAndCountSolver(ProbabilisticClassifyAndCountSolver.Options()).solve(
        np.eye(K), probs, np.ones(K)
    )

    np.testing.assert_allclose(cc.mixture, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(pcc.mixture, probs.mean(axis=0))


def test_hard_confusion_rows():
    matrix = hard_confusion(reference_with_errors(), K)

    np.testing.assert_allclose(np.diag(matrix), 0.8)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_bbse_inverts_hard_confusion():
    reference = reference_with_errors()
    mixture = np.array([0.6, 0.3, 0.1])
    shares = hard_confusion(reference, K).T @ mixture

    result = HardBBSESolver(HardBBSESolver.Options()).solve(
        np.eye(K), samples_with_shares(shares), np.ones(K) / K, reference
    )

    np.testing.assert_allclose(result.mixture, mixture, atol=2e-3)
    assert result.info["projected"] is False


def test_bbse_projects_infeasible_solution():
    result = HardBBSESolver(HardBBSESolver.Options()).solve(
        np.eye(K), samples_with_shares([1.0, 0.0, 0.0]), np.ones(K) / K, reference_with_errors()
    )

    assert result.info["projected"] is True
    assert result.mixture[0] == pytest.approx(1.0)


def test_rlls_without_regularization_matches_bbse():
    reference = reference_with_errors()
    mixture = np.array([0.5, 0.3, 0.2])
    samples = samples_with_shares(hard_confusion(reference, K).T @ mixture)

    result = RLLSSolver(RLLSSolver.Options(regularization=0.0)).solve(
        np.eye(K), samples, np.ones(K) / K, reference
    )

    np.testing.assert_allclose(result.mixture, mixture, atol=2e-3)


def test_rlls_strong_regularization_returns_priors():
    reference = reference_with_errors()
    samples = samples_with_shares([0.8, 0.1, 0.1])

    result = RLLSSolver(RLLSSolver.Options(regularization=1e6)).solve(
        np.eye(K), samples, np.ones(K) / K, reference
    )

    np.testing.assert_allclose(result.mixture, np.full(K, 1 / K), atol=1e-4)
