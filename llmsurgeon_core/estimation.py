"""From the classifier's view of the samples to a mixture with intervals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .calibration import Calibration, soft_confusion
from .components import Solver
from .errors import InvalidInputError

__all__ = ["Estimate", "bootstrap_intervals", "diagnose", "estimate_mixture", "naive_mixture"]

logger = logging.getLogger(__name__)

# Domain pairs whose mutual confusion C[i, j] + C[j, i] exceeds this are reported.
CONFUSED_PAIR_THRESHOLD = 0.1


@dataclass
class Estimate:
    """A mixture estimate and everything reported beside it."""

    mixture: np.ndarray
    naive: np.ndarray
    interval: np.ndarray | None
    diagnostics: dict[str, Any] = field(default_factory=dict)


def naive_mixture(sample_probs: np.ndarray) -> np.ndarray:
    """Return classify-and-count: the share of samples whose top class is each domain."""
    n_classes = sample_probs.shape[1]
    counts = np.bincount(sample_probs.argmax(axis=1), minlength=n_classes)
    return counts / counts.sum()


def _check_solution(mixture: np.ndarray, solver_name: str) -> np.ndarray:
    mixture = np.asarray(mixture, dtype=float)
    if not np.all(np.isfinite(mixture)) or np.any(mixture < -1e-9):
        raise RuntimeError(f"solver {solver_name!r} returned an invalid mixture {mixture}")
    mixture = np.clip(mixture, 0.0, None)
    return mixture / mixture.sum()


def bootstrap_intervals(
    solver: Solver,
    calibration: Calibration,
    sample_probs: np.ndarray,
    n_resamples: int,
    level: float,
    seed: int,
    on_resample: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return percentile intervals ``(K, 2)`` and the ``(B, K)`` bootstrap estimates.

    Each resample draws the target samples with replacement and, within each
    domain, the reference chunks' out-of-fold predictions, so the intervals
    cover both the sampling noise of ``p̄`` and the estimation noise of ``C``.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(calibration.domains)
    by_domain = [np.flatnonzero(calibration.labels == k) for k in range(n_classes)]
    estimates = np.empty((n_resamples, n_classes))
    for b in range(n_resamples):
        probs = sample_probs[rng.integers(0, len(sample_probs), len(sample_probs))]
        rows = np.concatenate([rng.choice(ix, len(ix)) for ix in by_domain if len(ix)])
        confusion = soft_confusion(calibration.oof_probs[rows], calibration.labels[rows], n_classes)
        result = solver.solve(confusion, probs, calibration.priors)
        estimates[b] = _check_solution(result.mixture, type(solver).__name__)
        if on_resample is not None:
            on_resample()
    alpha = (1.0 - level) / 2.0
    interval = np.quantile(estimates, [alpha, 1.0 - alpha], axis=0).T
    return interval, estimates


def diagnose(
    calibration: Calibration, sample_probs: np.ndarray, mixture: np.ndarray
) -> dict[str, Any]:
    """Return the numbers that say how far the estimate can be trusted."""
    confusion = calibration.confusion
    singular_values = np.linalg.svd(confusion, compute_uv=False)
    p_bar = sample_probs.mean(axis=0)
    domains = calibration.domains
    pairs = []
    for i in range(len(domains)):
        for j in range(i + 1, len(domains)):
            mutual = float(confusion[i, j] + confusion[j, i])
            if mutual > CONFUSED_PAIR_THRESHOLD:
                pairs.append({"domains": [domains[i], domains[j]], "confusion": mutual})
    pairs.sort(key=lambda pair: -pair["confusion"])
    smallest = float(singular_values[-1])
    return {
        "condition_number": float(singular_values[0] / smallest) if smallest > 0 else None,
        "smallest_singular_value": smallest,
        "residual_norm": float(np.linalg.norm(confusion.T @ mixture - p_bar)),
        "reference_accuracy": calibration.accuracy,
        "probabilistic_naive": dict(zip(domains, p_bar.tolist())),
        "confused_pairs": pairs,
    }


def estimate_mixture(
    solver: Solver,
    calibration: Calibration,
    sample_probs: np.ndarray,
    n_resamples: int,
    level: float,
    seed: int,
    on_resample: Callable[[], None] | None = None,
) -> Estimate:
    """Solve for the mixture, bootstrap its intervals and diagnose it."""
    n_samples, n_classes = sample_probs.shape
    if n_classes != len(calibration.domains):
        raise InvalidInputError(
            f"predictions have {n_classes} columns but the calibration has "
            f"{len(calibration.domains)} domains; calibrate again"
        )
    if n_samples == 0:
        raise InvalidInputError("there are no samples to estimate from; run `llmsurgeon sample`")
    if not np.all(np.isfinite(sample_probs)):
        raise InvalidInputError("the classifier returned non-finite probabilities for the samples")
    if n_samples < n_classes:
        logger.warning(
            "only %d samples for %d domains: the estimate is unreliable", n_samples, n_classes
        )
    result = solver.solve(calibration.confusion, sample_probs, calibration.priors)
    mixture = _check_solution(result.mixture, type(solver).__name__)
    interval = None
    if n_resamples > 0:
        interval, _ = bootstrap_intervals(
            solver, calibration, sample_probs, n_resamples, level, seed, on_resample
        )
    diagnostics = diagnose(calibration, sample_probs, mixture)
    diagnostics["solver"] = result.info
    return Estimate(mixture, naive_mixture(sample_probs), interval, diagnostics)
