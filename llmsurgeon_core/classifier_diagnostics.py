"""Scores and figures of the classifier's separation and calibration of the domains.

They are computed from out-of-fold predictions. The numbers go into
``result.json`` under ``diagnostics.classifier`` and the figures beside
``report.md``: ``reliability.png`` (the reliability diagram of the top-class
probability) and ``confusion.png`` (the confusion heatmap).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = [
    "RELIABILITY_BINS",
    "confusion_counts",
    "evaluate_classifier",
    "expected_calibration_error",
    "per_domain_scores",
    "reliability_bins",
    "render_confusion_heatmap",
    "render_reliability_diagram",
]

# Number of equal-width bins of the top-class probability, a common choice for
# the top-label ECE.
RELIABILITY_BINS = 15


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = RELIABILITY_BINS
) -> list[dict[str, float]]:
    """Return, per equal-width bin of the top-class probability, its count, confidence and accuracy.

    Empty bins are included with ``count`` 0 and null confidence and accuracy.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    # The top bin is closed on the right, so a confidence of exactly 1 falls into it.
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = RELIABILITY_BINS
) -> float:
    """Return the top-label ECE: the count-weighted mean gap between confidence and accuracy."""
    if len(labels) == 0:
        return 0.0
    gaps = [
        b["count"] * abs(b["confidence"] - b["accuracy"])
        for b in reliability_bins(probs, labels, n_bins)
        if b["count"]
    ]
    return float(sum(gaps) / len(labels))


def confusion_counts(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the ``(K, K)`` counts of true domain (row) against top predicted domain (column)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels, probs.argmax(axis=1)), 1)
    return counts


def per_domain_scores(counts: np.ndarray, domains: list[str]) -> dict[str, dict[str, float]]:
    """Return precision, recall, F1 and support of each domain from confusion counts.

    A domain that is never predicted has precision 0, and one with no texts
    has recall 0, as scikit-learn's ``zero_division=0`` gives.
    """
    scores = {}
    for k, domain in enumerate(domains):
        true_positive = float(counts[k, k])
        predicted = float(counts[:, k].sum())
        support = int(counts[k].sum())
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        total = precision + recall
        scores[domain] = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / total if total else 0.0,
            "support": support,
        }
    return scores


def _summary(probs: np.ndarray, labels: np.ndarray, domains: list[str]) -> dict[str, Any]:
    counts = confusion_counts(probs, labels, len(domains))
    per_domain = per_domain_scores(counts, domains)
    return {
        "n_texts": len(labels),
        "accuracy": float(np.trace(counts) / max(len(labels), 1)),
        "macro_f1": float(np.mean([s["f1"] for s in per_domain.values()])),
        "ece": expected_calibration_error(probs, labels),
        "per_domain": per_domain,
        "confusion_matrix": counts.tolist(),
    }


def evaluate_classifier(
    domains: list[str],
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    calibration_method: str,
    mode: str,
    continuations: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return the ``diagnostics.classifier`` mapping of a calibration.

    Args:
        domains: domain ids in taxonomy order.
        probs: ``(N, K)`` out-of-fold probabilities of the reference chunks,
            after the calibration map.
        labels: ``(N,)`` true domain index of each chunk.
        calibration_method: the calibration map (``none``, ``ts``, ``bcts``).
        mode: how ``C`` was measured (``reference`` or ``generation``).
        continuations: in generation mode, the out-of-fold probabilities and
            prompt domains of the target's continuations, which ``C`` is built
            from. They get scores of their own under ``continuations``.
    """
    result = _summary(probs, labels, domains)
    result["reliability"] = reliability_bins(probs, labels)
    result["calibration_method"] = calibration_method
    result["mode"] = mode
    if continuations is not None:
        summary = _summary(*continuations, domains)
        summary["reliability"] = reliability_bins(*continuations)
        result["continuations"] = summary
    return result


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _pyplot().close(figure)
    return buffer.getvalue()


def render_reliability_diagram(classifier: dict[str, Any]) -> bytes:
    """Draw accuracy against confidence per bin, for reference text and any continuations."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 5), dpi=120, layout="constrained")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    series = [("reference text", classifier)]
    if "continuations" in classifier:
        series.append(("target's continuations", classifier["continuations"]))
    for label, summary in series:
        filled = [b for b in summary["reliability"] if b["count"]]
        axes.plot(
            [b["confidence"] for b in filled],
            [b["accuracy"] for b in filled],
            marker="o",
            label=f"{label} (ECE {summary['ece']:.3f})",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean top-class probability in bin")
    axes.set_ylabel("accuracy in bin")
    axes.set_title(f"reliability (calibration: {classifier['calibration_method']})")
    axes.legend(loc="upper left", frameon=False)
    return _png(figure)


def render_confusion_heatmap(classifier: dict[str, Any], domains: list[str]) -> bytes:
    """Draw the row-normalized confusion of true against predicted domain, with counts."""
    plt = _pyplot()
    counts = np.asarray(classifier["confusion_matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(domains) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size), dpi=120, layout="constrained")
    image = axes.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    if len(domains) <= 20:
        for (i, j), count in np.ndenumerate(counts):
            color = "white" if shares[i, j] > 0.5 else "black"
            axes.text(j, i, f"{int(count)}", ha="center", va="center", color=color, fontsize=8)
    ticks = np.arange(len(domains))
    axes.set_xticks(ticks, domains, rotation=45, ha="right")
    axes.set_yticks(ticks, domains)
    axes.set_xlabel("predicted domain")
    axes.set_ylabel("true domain")
    axes.set_title("out-of-fold confusion on reference text")
    figure.colorbar(image, ax=axes, label="share of the true domain's texts")
    return _png(figure)
