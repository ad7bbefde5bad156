"""Tables of a scan: means over targets, generation fidelity, and one row per audit."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from .scan import ScanResult

__all__ = ["NAIVE", "render_markdown", "summarize"]

# Row label of the naive classify-and-count baseline in the summary.
NAIVE = "naive"
# Domains shown in the mixture column of the generation table, largest first.
SHOWN_DOMAINS = 3


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _metric_means(metrics: list[dict[str, float] | None]) -> dict[str, float | None]:
    return {
        key: _mean(m[key] if m else None for m in metrics)
        for key in ("overlap_accuracy", "mae", "r2")
    }


def summarize(result: ScanResult) -> list[dict[str, Any]]:
    """Return one row per classifier and solver, and one naive row per classifier.

    Each row contains the means over targets of overlap accuracy, MAE, R² and
    interval coverage against the training mixture, and of overlap accuracy
    and interval coverage against the mixture the targets generated.
    ``beats_naive`` compares the mean overlap accuracy with the naive
    baseline of the same classifier.
    """
    rows: list[dict[str, Any]] = []
    for classifier in result.classifiers:
        audits = [a for a in result.audits if a["classifier"] == classifier]
        by_model = {a["model"]: a for a in audits}
        naive = _metric_means([a["naive_metrics"] for a in by_model.values()])
        rows.append({"classifier": classifier, "method": NAIVE, **naive, "coverage": None})
        for solver in dict.fromkeys(a["solver"] for a in audits):
            chosen = [a for a in audits if a["solver"] == solver]
            means = _metric_means([a["metrics"] for a in chosen])
            generated = [a.get("generation", {}).get("estimate_vs_generated") for a in chosen]
            overlap_generated = _mean(g["overlap_accuracy"] if g else None for g in generated)
            coverage_generated = _mean(a.get("generation", {}).get("coverage") for a in chosen)
            rows.append(
                {
                    "classifier": classifier,
                    "method": solver,
                    **means,
                    "coverage": _mean(a["coverage"] for a in chosen),
                    "overlap_vs_generated": overlap_generated,
                    "coverage_vs_generated": coverage_generated,
                    "beats_naive": _beats(means["overlap_accuracy"], naive["overlap_accuracy"]),
                }
            )
    return rows


def _beats(estimate: float | None, naive: float | None) -> bool | None:
    if estimate is None or naive is None:
        return None
    return estimate > naive


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _shares(mixture: dict[str, float]) -> str:
    largest = sorted(mixture.items(), key=lambda item: -item[1])[:SHOWN_DOMAINS]
    return ", ".join(f"{d} {100 * s:.0f}" for d, s in largest if s > 0)


def _summary_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| classifier | method | overlap | MAE | R² | coverage | overlap vs generated "
        "| coverage vs generated | beats naive |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        beats = row.get("beats_naive")
        if beats is None:
            shown = "–"
        else:
            shown = "yes" if beats else "**no**"
        lines.append(
            f"| {row['classifier']} | {row['method']} | {_number(row['overlap_accuracy'])} | "
            f"{_number(row['mae'], 4)} | {_number(row['r2'])} | {_number(row['coverage'], 2)} | "
            f"{_number(row.get('overlap_vs_generated'))} | "
            f"{_number(row.get('coverage_vs_generated'), 2)} | {shown} |"
        )
    return lines


def _generation_table(result: ScanResult) -> list[str]:
    lines = [
        "| model | training mixture (largest, %) | loss | generated vs training: overlap | "
        "MAE | tagged samples |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    first_audit = {}
    for audit in result.audits:
        first_audit.setdefault(audit["model"], audit)
    for target in result.targets:
        generation = first_audit.get(target["model"], {}).get("generation")
        gap = generation["gap"] if generation else None
        lines.append(
            f"| {target['model']} | {_shares(target['mixture'])} | {target['final_loss']:.2f} | "
            f"{_number(gap['overlap_accuracy'] if gap else None)} | "
            f"{_number(gap['mae'] if gap else None, 4)} | "
            f"{generation['tagged_samples'] if generation else '–'} |"
        )
    return lines


def _audit_table(result: ScanResult) -> list[str]:
    lines = [
        "| model | classifier | solver | overlap | MAE | R² | coverage | "
        "overlap vs generated | naive overlap | naive MAE | naive R² |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for audit in result.audits:
        metrics, naive = audit["metrics"], audit["naive_metrics"]
        generated = audit.get("generation", {}).get("estimate_vs_generated")
        lines.append(
            f"| {audit['model']} | {audit['classifier']} | {audit['solver']} | "
            f"{_number(metrics['overlap_accuracy'])} | {_number(metrics['mae'], 4)} | "
            f"{_number(metrics['r2'])} | {_number(audit['coverage'], 2)} | "
            f"{_number(generated['overlap_accuracy'] if generated else None)} | "
            f"{_number(naive['overlap_accuracy'])} | {_number(naive['mae'], 4)} | "
            f"{_number(naive['r2'])} |"
        )
    return lines


def render_markdown(result: ScanResult, heading_level: int = 2) -> str:
    """Return the scan's tables as a Markdown section headed by the taxonomy's name."""
    hashes = "#" * heading_level
    rows = summarize(result)
    losing = [r for r in rows if r.get("beats_naive") is False]
    parts = [
        f"{hashes} Scan of `{result.taxonomy}`: {len(result.domains)} domains, "
        f"{len(result.targets)} targets",
        "",
        f"{hashes}# Means over targets",
        "",
        "Overlap accuracy, MAE and R² against the training mixture. Coverage is the share "
        "of domains whose training share lies inside the interval. The columns marked "
        "'vs generated' compare with the mixture the targets generated (their domain tokens).",
        "",
        *_summary_table(rows),
        "",
    ]
    if losing:
        names = ", ".join(f"{r['classifier']}/{r['method']}" for r in losing)
        parts += [f"Below the naive baseline on mean overlap accuracy: {names}.", ""]
    parts += [
        f"{hashes}# Generation fidelity",
        "",
        "How far each target's own generations (counted by their domain tokens) are from "
        "its training mixture.",
        "",
        *_generation_table(result),
        "",
        f"{hashes}# Every audit",
        "",
        *_audit_table(result),
        "",
    ]
    return "\n".join(parts)
