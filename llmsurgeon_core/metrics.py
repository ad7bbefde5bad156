"""Agreement between an estimated mixture and a known one."""

from __future__ import annotations

import numpy as np

__all__ = ["compare_mixtures", "kl_divergence", "mean_absolute_error", "overlap_accuracy", "r2"]


def overlap_accuracy(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Return ``sum_k min(estimate_k, truth_k)``, which equals 1 − total variation."""
    return float(np.minimum(estimate, truth).sum())


def mean_absolute_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(estimate - truth)))


def r2(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Return the coefficient of determination of ``estimate`` across domains."""
    total = float(np.sum((truth - truth.mean()) ** 2))
    residual = float(np.sum((truth - estimate) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def kl_divergence(truth: np.ndarray, estimate: np.ndarray, floor: float = 1e-6) -> float:
    """Return KL(truth ‖ estimate) in nats, with ``estimate`` floored to stay finite."""
    floored = np.maximum(estimate, floor)
    floored = floored / floored.sum()
    support = truth > 0
    return float(np.sum(truth[support] * np.log(truth[support] / floored[support])))


def compare_mixtures(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Return overlap accuracy, MAE, R² and KL divergence, in that order."""
    estimate = np.asarray(estimate, dtype=float)
    truth = np.asarray(truth, dtype=float)
    return {
        "overlap_accuracy": overlap_accuracy(estimate, truth),
        "mae": mean_absolute_error(estimate, truth),
        "r2": r2(estimate, truth),
        "kl": kl_divergence(truth, estimate),
    }
