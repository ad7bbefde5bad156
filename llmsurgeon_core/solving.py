"""Helpers that solver plugins share: input checks, the simplex projection, hard confusion."""

from __future__ import annotations

from typing import Any

import numpy as np

from .components import ReferencePredictions

__all__ = ["check_solver_inputs", "hard_confusion", "project_to_simplex"]


def check_solver_inputs(
    confusion: Any,
    sample_probs: Any,
    reference_priors: Any,
    reference: ReferencePredictions | None = None,
    *,
    require_reference: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, ReferencePredictions | None]:
    """Convert the inputs of ``Solver.solve`` to float64 arrays and check them.

    Returns:
        ``confusion``, ``sample_probs``, ``reference_priors`` and ``reference``,
        with every array as float64 (labels as int64).

    Raises:
        ValueError: naming the array and its shape, if ``confusion`` is not a
            non-empty ``(K, K)`` matrix, ``sample_probs`` is not ``(n, K)`` with
            ``n >= 1``, ``reference_priors`` is not ``(K,)``, the reference
            predictions are not ``(N, K)`` with ``N`` labels in ``[0, K)``, a
            value is not finite, or ``reference`` is missing while
            ``require_reference`` is set.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    sample_probs = np.asarray(sample_probs, dtype=np.float64)
    reference_priors = np.asarray(reference_priors, dtype=np.float64)

    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.size == 0:
        raise ValueError(
            f"confusion must be a non-empty square (K, K) matrix, got shape {confusion.shape}"
        )
    k = confusion.shape[0]
    if sample_probs.ndim != 2 or sample_probs.shape[1] != k or sample_probs.shape[0] == 0:
        raise ValueError(
            f"sample_probs must have shape (n, {k}) with n >= 1 to match confusion of shape "
            f"{confusion.shape}, got shape {sample_probs.shape}"
        )
    if reference_priors.shape != (k,):
        raise ValueError(
            f"reference_priors must have shape ({k},) to match confusion of shape "
            f"{confusion.shape}, got shape {reference_priors.shape}"
        )
    arrays = [
        ("confusion", confusion),
        ("sample_probs", sample_probs),
        ("reference_priors", reference_priors),
    ]
    if reference is not None:
        reference = _check_reference(reference, k)
        arrays.append(("reference.probs", reference.probs))
    elif require_reference:
        raise ValueError(
            "this solver needs the out-of-fold reference predictions; pass "
            "reference=ReferencePredictions(probs, labels)"
        )
    for name, array in arrays:
        if not np.isfinite(array).all():
            count = int(np.size(array) - np.isfinite(array).sum())
            raise ValueError(
                f"{name} of shape {array.shape} contains {count} non-finite values (NaN or inf)"
            )
    return confusion, sample_probs, reference_priors, reference


def _check_reference(reference: ReferencePredictions, k: int) -> ReferencePredictions:
    probs = np.asarray(reference.probs, dtype=np.float64)
    labels = np.asarray(reference.labels)
    if probs.ndim != 2 or probs.shape[1] != k or probs.shape[0] == 0:
        raise ValueError(
            f"reference.probs must have shape (N, {k}) with N >= 1, got shape {probs.shape}"
        )
    if labels.shape != (probs.shape[0],):
        raise ValueError(
            f"reference.labels must have shape ({probs.shape[0]},) to match reference.probs, "
            f"got shape {labels.shape}"
        )
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k
    ):
        raise ValueError(f"reference.labels must be integers in [0, {k}), got {labels.dtype}")
    return ReferencePredictions(probs, labels.astype(np.int64))


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Return the Euclidean projection of ``v`` onto the probability simplex.

    Uses the sort-based algorithm: subtract the one threshold that makes the
    positive parts sum to 1, then clip at zero.
    """
    v = np.asarray(v, dtype=np.float64)
    descending = np.sort(v)[::-1]
    cumulative = np.cumsum(descending) - 1.0
    ranks = np.arange(1, v.size + 1)
    last = np.flatnonzero(descending - cumulative / ranks > 0)[-1]
    threshold = cumulative[last] / (last + 1)
    projected = np.clip(v - threshold, 0.0, None)
    return projected / projected.sum()


def hard_confusion(reference: ReferencePredictions, n_classes: int) -> np.ndarray:
    """Return ``(K, K)`` with row ``i`` the shares of domain-``i`` chunks predicted as each domain.

    Ties in the top probability go to the lowest index, as ``argmax`` breaks
    them. A domain with no chunks gets a uniform row.
    """
    predicted = np.asarray(reference.probs).argmax(axis=1)
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (np.asarray(reference.labels), predicted), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / n_classes)
    return np.divide(counts, totals, out=uniform, where=totals > 0)
