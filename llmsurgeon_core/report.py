"""``result.json``, the Markdown report and the bar chart of a run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .classifier_diagnostics import render_confusion_heatmap, render_reliability_diagram
from .estimation import Estimate
from .html_report import ReportDetails, render_html
from .metrics import compare_mixtures
from .storage import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["RESULT_SCHEMA_VERSION", "build_result", "render_markdown", "write_report"]

RESULT_SCHEMA_VERSION = 1


def _by_domain(domains: list[str], values: np.ndarray) -> dict[str, Any]:
    return {domain: float(value) for domain, value in zip(domains, values)}


def build_result(
    *,
    taxonomy: str,
    domains: list[str],
    estimate: Estimate,
    interval_level: float,
    solver: str,
    classifier: str,
    sampler: str,
    n_samples: int,
    truth: np.ndarray | None,
) -> dict[str, Any]:
    """Return the ``result.json`` mapping, every mapping in taxonomy order."""
    interval = None
    if estimate.interval is not None:
        interval = {d: [float(lo), float(hi)] for d, (lo, hi) in zip(domains, estimate.interval)}
    metrics = naive_metrics = None
    if truth is not None:
        metrics = compare_mixtures(estimate.mixture, truth)
        naive_metrics = compare_mixtures(estimate.naive, truth)
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "taxonomy": taxonomy,
        "domains": list(domains),
        "estimate": _by_domain(domains, estimate.mixture),
        "interval": interval,
        "interval_level": interval_level,
        "naive": _by_domain(domains, estimate.naive),
        "solver": solver,
        "classifier": classifier,
        "sampler": sampler,
        "n_samples": n_samples,
        "diagnostics": estimate.diagnostics,
        "truth": None if truth is None else _by_domain(domains, truth),
        "metrics": metrics,
        "naive_metrics": naive_metrics,
    }


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    """Render a run's result as a Markdown report."""
    domains = result["domains"]
    truth = result["truth"] or {}
    interval = result["interval"] or {}
    level = round(100 * result["interval_level"])
    lines = [
        f"# Mixture audit: {result['taxonomy']}",
        "",
        f"{result['n_samples']} samples from sampler `{result['sampler']}`, classifier "
        f"`{result['classifier']}`, solver `{result['solver']}`.",
        "",
        f"| domain | estimate % | {level}% interval | naive % | known % |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for domain in domains:
        bounds = interval.get(domain)
        shown = f"{_percent(bounds[0])}–{_percent(bounds[1])}" if bounds else ""
        lines.append(
            f"| {domain} | {_percent(result['estimate'][domain])} | {shown} | "
            f"{_percent(result['naive'][domain])} | {_percent(truth.get(domain))} |"
        )
    lines += ["", "![estimate, intervals and naive baseline by domain](mixture.png)"]
    if result["metrics"]:
        lines += ["", "| metric | estimate | naive |", "| --- | ---: | ---: |"]
        for key, value in result["metrics"].items():
            lines.append(f"| {key} | {value:.4f} | {result['naive_metrics'][key]:.4f} |")
    diagnostics = result["diagnostics"]
    lines += ["", "## Diagnostics", ""]
    if diagnostics.get("too_few_samples"):
        lines.append(f"- WARNING: {diagnostics['too_few_samples']}")
    solver_info = diagnostics.get("solver") or {}
    if solver_info.get("converged") is False:
        lines.append(
            f"- WARNING: the solver stopped after {solver_info.get('iterations')} iterations "
            "without converging; raise solver.options.max_iter"
        )
    generation = diagnostics.get("generation")
    if generation:
        lines.append(
            f"- the target's own domain tags give the generated mixture; overlap of the "
            f"estimate with it: {generation['overlap_accuracy']:.4f}"
        )
    lines += _diagnostic_lines(diagnostics)
    lines += _classifier_lines(diagnostics.get("classifier"))
    lines += _merged_lines(diagnostics.get("merged"), level)
    return "\n".join(lines) + "\n"


def _diagnostic_lines(diagnostics: dict[str, Any]) -> list[str]:
    lines = []
    condition = diagnostics.get("condition_number")
    smallest = diagnostics.get("smallest_singular_value")
    if condition:
        lines.append(
            f"- condition number of C: {condition:.2f}; smallest singular value: {smallest:.3g}"
        )
    else:
        lines.append("- C is singular: some domains cannot be told apart")
    lines.append(f"- residual ‖Cᵀπ − p̄‖: {diagnostics['residual_norm']:.4g}")
    lines.append(
        f"- out-of-fold accuracy on reference text: {diagnostics['reference_accuracy']:.3f}"
    )
    for pair in diagnostics.get("confused_pairs", []):
        first, second = pair["domains"]
        lines.append(f"- {first} and {second} are confused ({pair['confusion']:.2f})")
    for group in diagnostics.get("merge_groups", []):
        lines.append(
            f"- suggested merge: {', '.join(group)} (set `merge: suggested` to solve at that level)"
        )
    for note in diagnostics.get("wide_intervals", []):
        lines.append(
            f"- {note['domain']}: the interval is {_percent(note['width'])} points wide, too "
            f"wide to be useful; about {note['samples_needed']} samples would narrow it to "
            f"{_percent(note['useful_width'])} points if the samples' noise dominates"
        )
    tests = {t["domain"]: t for t in diagnostics.get("label_shift", {}).get("tests", [])}
    shifted = diagnostics.get("label_shift", {}).get("shifted_domains", [])
    if shifted:
        statistics = ", ".join(
            f"{d} {tests[d]['statistic']:.2f}" if d in tests else d for d in shifted
        )
        lines.append(
            "- label shift: the classifier's confidence on the samples assigned to a domain "
            f"differs from that on its reference texts for {statistics} (Kolmogorov–Smirnov "
            "distance), so those samples are not distributed like the reference text and "
            "their shares can be biased by more than the intervals show"
        )
    bound = diagnostics.get("cramer_rao_std")
    spread = diagnostics.get("bootstrap_std")
    if bound:
        lines += [
            "",
            "| domain | Cramér–Rao std % | bootstrap std % |",
            "| --- | ---: | ---: |",
        ]
        for domain, value in bound.items():
            shown = _percent(spread[domain]) if spread else ""
            lines.append(f"| {domain} | {_percent(value)} | {shown} |")
        lines.append("")
        below = [d for d in bound if spread and spread[d] < bound[d]]
        if below:
            lines.append(
                f"The bootstrap spread of {', '.join(below)} is below the Cramér–Rao value, "
                "which holds only if the classifier is calibrated on the samples. The "
                "classifier is then likely less sure of the samples than of reference text, "
                "and the estimate carries a bias that the intervals do not include."
            )
    return lines


def _classifier_lines(classifier: dict[str, Any] | None) -> list[str]:
    """Render the classifier's out-of-fold scores, calibration and figures."""
    if not classifier:
        return []
    source = (
        "the target's continuations of reference prefixes"
        if classifier["mode"] == "generation"
        else "out-of-fold predictions of reference text"
    )
    lines = [
        "",
        "## Classifier",
        "",
        f"C comes from {source}; calibration map: {classifier['calibration_method']}. On "
        f"{classifier['n_texts']} out-of-fold reference texts the accuracy is "
        f"{classifier['accuracy']:.3f}, the macro F1 {classifier['macro_f1']:.3f} and the "
        f"expected calibration error {classifier['ece']:.3f}.",
    ]
    continuations = classifier.get("continuations")
    if continuations:
        lines.append(
            f"On {continuations['n_texts']} continuations the accuracy is "
            f"{continuations['accuracy']:.3f} and the expected calibration error "
            f"{continuations['ece']:.3f}."
        )
    lines += [
        "",
        "| domain | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for domain, scores in classifier["per_domain"].items():
        lines.append(
            f"| {domain} | {scores['precision']:.3f} | {scores['recall']:.3f} | "
            f"{scores['f1']:.3f} | {scores['support']} |"
        )
    lines += [
        "",
        "![reliability diagram](reliability.png) ![confusion heatmap](confusion.png)",
    ]
    return lines


def _merged_lines(merged: dict[str, Any] | None, level: int) -> list[str]:
    if not merged:
        return []
    lines = [
        "",
        "## Merged domains",
        "",
        f"| domain | estimate % | {level}% interval |",
        "| --- | ---: | ---: |",
    ]
    interval = merged["interval"] or {}
    for domain in merged["domains"]:
        bounds = interval.get(domain)
        shown = f"{_percent(bounds[0])}–{_percent(bounds[1])}" if bounds else ""
        lines.append(f"| {domain} | {_percent(merged['estimate'][domain])} | {shown} |")
    return lines


def render_chart(result: dict[str, Any]) -> bytes:
    """Draw estimate, intervals, naive baseline and known mixture as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    domains = result["domains"]
    x = np.arange(len(domains))
    series = [("estimate", result["estimate"]), ("naive", result["naive"])]
    if result["truth"]:
        series.append(("known", result["truth"]))
    generation = result["diagnostics"].get("generation")
    if generation:
        series.append(("generated (domain tags)", generation["mixture"]))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(
        figsize=(max(6, 0.9 * len(domains) + 2), 4), dpi=120, layout="constrained"
    )
    for offset, (label, values) in enumerate(series):
        heights = np.array([values[d] for d in domains])
        positions = x + (offset - (len(series) - 1) / 2) * width
        error = None
        if label == "estimate" and result["interval"]:
            bounds = np.array([result["interval"][d] for d in domains])
            error = np.vstack([heights - bounds[:, 0], bounds[:, 1] - heights]).clip(0)
        axes.bar(positions, heights, width, label=label, yerr=error, capsize=3)
    axes.set_xticks(x, domains, rotation=30, ha="right")
    axes.set_ylabel("share of training data")
    axes.set_title(f"{result['taxonomy']}: estimated mixture")
    figure.legend(loc="outside right upper", frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_report(
    run_dir: Path, result: dict[str, Any], details: ReportDetails | None = None
) -> None:
    """Write ``result.json``, ``report.md``, ``mixture.png`` and ``report.html`` into ``run_dir``.

    ``details`` carries what ``report.html`` shows beyond the result: the
    confusion matrix and the sample explorer.
    """
    atomic_write_json(run_dir / "result.json", result)
    atomic_write_text(run_dir / "report.md", render_markdown(result))
    atomic_write_bytes(run_dir / "mixture.png", render_chart(result))
    classifier = result["diagnostics"].get("classifier")
    if classifier:
        atomic_write_bytes(run_dir / "reliability.png", render_reliability_diagram(classifier))
        confusion = render_confusion_heatmap(classifier, result["domains"])
        atomic_write_bytes(run_dir / "confusion.png", confusion)
    atomic_write_text(run_dir / "report.html", render_html(result, run_dir, details))
