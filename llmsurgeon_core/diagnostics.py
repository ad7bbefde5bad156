"""Diagnostics that measure how far a mixture estimate can be trusted.

Every function here reads the calibration and the sample probabilities only,
so the same diagnostics apply whichever solver produced the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibration import Calibration

__all__ = [
    "CONFUSED_PAIR_THRESHOLD",
    "confused_pairs",
    "cramer_rao_std",
    "diagnose",
    "fisher_information",
    "information_std",
    "label_shift_check",
    "suggest_merge_groups",
    "wide_interval_notes",
]

# Domain pairs whose mutual confusion C[i, j] + C[j, i] exceeds this are reported,
# and merge groups are the connected components of the graph of such pairs.
CONFUSED_PAIR_THRESHOLD = 0.1

# An interval is too wide to be useful when it is wider than this many shares
# and wider than the estimate itself, that is, wider than ±50% of the share.
WIDE_INTERVAL_MIN_WIDTH = 0.05

# Label-shift check: domains with fewer predicted samples are not tested, and a
# domain is flagged when its Bonferroni-corrected p-value is below the level.
LABEL_SHIFT_MIN_SAMPLES = 20
LABEL_SHIFT_LEVEL = 0.01


def confused_pairs(domains: Sequence[str], confusion: np.ndarray) -> list[dict[str, Any]]:
    """Return the domain pairs whose mutual confusion exceeds the threshold, worst first."""
    pairs = []
    for i in range(len(domains)):
        for j in range(i + 1, len(domains)):
            mutual = float(confusion[i, j] + confusion[j, i])
            if mutual > CONFUSED_PAIR_THRESHOLD:
                pairs.append({"domains": [domains[i], domains[j]], "confusion": mutual})
    pairs.sort(key=lambda pair: -pair["confusion"])
    return pairs


def suggest_merge_groups(domains: Sequence[str], confusion: np.ndarray) -> list[list[str]]:
    """Return groups of domains that ``C`` cannot separate well, in taxonomy order.

    Two domains are linked when their mutual confusion ``C[i, j] + C[j, i]``
    exceeds :data:`CONFUSED_PAIR_THRESHOLD`; a group is a connected component
    of that graph with two or more members. Merging a group removes the
    near-equal rows that make ``C`` ill-conditioned.
    """
    k = len(domains)
    parent = list(range(k))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    mutual = confusion + confusion.T
    for i in range(k):
        for j in range(i + 1, k):
            if mutual[i, j] > CONFUSED_PAIR_THRESHOLD:
                parent[find(j)] = find(i)
    components: dict[int, list[str]] = {}
    for i, domain in enumerate(domains):
        components.setdefault(find(i), []).append(domain)
    return [group for group in components.values() if len(group) > 1]


def fisher_information(
    posteriors: np.ndarray, priors: np.ndarray, mixture: np.ndarray
) -> np.ndarray:
    """Return the ``(K, K)`` per-sample Fisher information of the mixture.

    With posteriors ``q(x)`` calibrated under the reference priors ``rho``, a
    target text's likelihood is ``sum_k pi_k q_k(x) / rho_k`` up to a factor
    that does not depend on ``pi``. The score is ``(q(x) / rho) / (q(x) / rho
    @ pi)``, and the information is the mean outer product of the scores over
    the rows of ``posteriors``, which should be drawn from the target.
    Domains with a zero prior get zero score, so they are not identified.
    """
    priors = np.asarray(priors, dtype=float)
    weights = np.divide(1.0, priors, out=np.zeros_like(priors), where=priors > 0)
    ratio = posteriors * weights
    likelihood = ratio @ mixture
    scores = ratio / np.maximum(likelihood, 1e-300)[:, None]
    return scores.T @ scores / len(posteriors)


def cramer_rao_std(
    posteriors: np.ndarray, priors: np.ndarray, mixture: np.ndarray, n_samples: int | None = None
) -> np.ndarray:
    """Return the Cramér–Rao lower bound on each share's standard deviation.

    The bound is for unbiased estimators from ``n_samples`` target texts
    (default: the number of rows of ``posteriors``) that see the texts only
    through these posteriors, with the calibration taken as exact. The
    constraint ``sum(pi) == 1`` is handled by inverting the information on the
    subspace of directions that sum to zero.

    NOTE: the bound assumes an interior point. For a share at or near zero it
    understates what a solver constrained to the simplex can reach, and the
    constraint can even let a solver beat it.
    """
    n = len(posteriors) if n_samples is None else n_samples
    fisher = fisher_information(posteriors, priors, mixture)
    return information_std(fisher, n)


def information_std(fisher: np.ndarray, n_samples: int) -> np.ndarray:
    """Return each share's Cramér–Rao standard deviation from a ``(K, K)`` per-sample information.

    The information is inverted on the subspace of directions that sum to
    zero, because the shares are constrained to sum to 1.
    """
    k = len(fisher)
    if k == 1:
        return np.zeros(1)
    # Orthonormal basis of {v : sum(v) == 0}: the last K - 1 columns of a
    # Householder-type QR of the ones vector.
    basis = np.linalg.qr(np.hstack([np.ones((k, 1)), np.eye(k)[:, : k - 1]]))[0][:, 1:]
    reduced = basis.T @ fisher @ basis
    covariance = basis @ np.linalg.pinv(reduced, hermitian=True) @ basis.T / n_samples
    return np.sqrt(np.clip(np.diag(covariance), 0.0, None))


def wide_interval_notes(
    domains: Sequence[str], mixture: np.ndarray, interval: np.ndarray, n_samples: int
) -> list[dict[str, Any]]:
    """Return a note for each domain whose interval is too wide to be useful.

    An interval is too wide when it is wider than both
    :data:`WIDE_INTERVAL_MIN_WIDTH` and the estimate. Each note carries the
    number of samples that would bring the width down to that limit if the
    width shrinks as ``1 / sqrt(n)``.

    NOTE: the width shrinks as ``1 / sqrt(n)`` only while the noise of the
    samples dominates. The calibration's noise does not shrink with more
    samples, so the suggested count is then a lower estimate. The interval
    of a share near 0, which the bootstrap's pseudo-samples set, narrows as
    ``1 / n``, so for it the count is an overestimate.
    """
    notes = []
    for domain, share, (low, high) in zip(domains, mixture, interval):
        width = float(high - low)
        limit = max(WIDE_INTERVAL_MIN_WIDTH, float(share))
        if width > limit:
            needed = math.ceil(n_samples * (width / limit) ** 2)
            notes.append(
                {
                    "domain": domain,
                    "width": width,
                    "useful_width": limit,
                    "samples_needed": needed,
                }
            )
    return notes


def _weighted_ks_statistic(sample: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> float:
    """Return ``sup |F_sample - F_reference|`` with a weighted reference ECDF."""
    points = np.concatenate([sample, reference])
    sample_cdf = np.searchsorted(np.sort(sample), points, side="right") / len(sample)
    order = np.argsort(reference)
    cumulative = np.concatenate([[0.0], np.cumsum(weights[order])]) / weights.sum()
    reference_cdf = cumulative[np.searchsorted(reference[order], points, side="right")]
    return float(np.max(np.abs(sample_cdf - reference_cdf)))


def label_shift_check(
    calibration: Calibration, sample_probs: np.ndarray, mixture: np.ndarray
) -> dict[str, Any]:
    """Test, per domain, whether generations look like that domain's reference texts.

    Label shift means each domain's texts have the same distribution in the
    reference corpus and in the generations. For domain ``k``, the test
    compares the classifier's probability of ``k`` on the samples predicted as
    ``k`` with the same quantity on the reference chunks predicted as ``k``,
    weighted by ``mixture[y] / prior[y]`` for each chunk's true domain ``y``,
    so that under label shift both have the same distribution. The statistic
    is a two-sample Kolmogorov–Smirnov distance, its p-value the asymptotic
    one with the reference's effective sample size, Bonferroni-corrected over
    the domains tested.

    NOTE: the samples are scored by the classifier fitted on the whole
    reference corpus, the reference chunks by the cross-fitted ones. The full
    model is slightly more confident, so with many samples a small shift can
    come from that difference alone.
    """
    from scipy.special import kolmogorov

    domains = calibration.domains
    priors = calibration.priors
    weights_by_domain = np.divide(
        mixture, priors, out=np.zeros_like(mixture, dtype=float), where=priors > 0
    )
    sample_top = sample_probs.argmax(axis=1)
    reference_top = calibration.oof_probs.argmax(axis=1)
    tests = []
    for k, domain in enumerate(domains):
        sample = sample_probs[sample_top == k, k]
        rows = reference_top == k
        reference = calibration.oof_probs[rows, k]
        weights = weights_by_domain[calibration.labels[rows]]
        if len(sample) < LABEL_SHIFT_MIN_SAMPLES or weights.sum() <= 0:
            continue
        statistic = _weighted_ks_statistic(sample, reference, weights)
        effective = weights.sum() ** 2 / np.sum(weights**2)
        scale = len(sample) * effective / (len(sample) + effective)
        tests.append(
            {
                "domain": domain,
                "statistic": statistic,
                "p_value": float(kolmogorov(math.sqrt(scale) * statistic)),
                "n_samples": len(sample),
            }
        )
    for test in tests:
        test["p_value_corrected"] = min(1.0, test["p_value"] * len(tests))
    shifted = [t["domain"] for t in tests if t["p_value_corrected"] < LABEL_SHIFT_LEVEL]
    return {"level": LABEL_SHIFT_LEVEL, "tests": tests, "shifted_domains": shifted}


def diagnose(
    calibration: Calibration, sample_probs: np.ndarray, mixture: np.ndarray
) -> dict[str, Any]:
    """Return the conditioning of ``C``, the residual and the confused domains."""
    confusion = calibration.confusion
    singular_values = np.linalg.svd(confusion, compute_uv=False)
    p_bar = sample_probs.mean(axis=0)
    domains = calibration.domains
    smallest = float(singular_values[-1])
    return {
        "condition_number": float(singular_values[0] / smallest) if smallest > 0 else None,
        "smallest_singular_value": smallest,
        "residual_norm": float(np.linalg.norm(confusion.T @ mixture - p_bar)),
        "reference_accuracy": calibration.accuracy,
        "probabilistic_naive": dict(zip(domains, p_bar.tolist())),
        "confused_pairs": confused_pairs(domains, confusion),
        "merge_groups": suggest_merge_groups(domains, confusion),
    }
