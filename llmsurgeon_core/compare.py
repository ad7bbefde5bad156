"""``llmsurgeon compare``: the results of several runs side by side.

The runs are typically audits of different models, or of checkpoints of one
model in training order, over one taxonomy. The comparison is a Markdown
table of estimates and intervals per domain and run, metrics where a run
has a known mixture, and a trajectory plot of each domain's share across
the runs in the order given.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, RunDirectoryError
from .html_report import domain_colours, png_data_uri, render_template
from .report import RESULT_SCHEMA_VERSION
from .storage import atomic_write_bytes

__all__ = [
    "Comparison",
    "RunResult",
    "load_comparison",
    "render_comparison_html",
    "render_comparison_markdown",
    "render_trajectory",
    "write_comparison",
]

METRIC_NAMES = ("overlap_accuracy", "mae", "r2", "kl")
KNOWN_COLOUR = "#1f2933"


@dataclass(frozen=True)
class RunResult:
    """One run's ``result.json``, with the label it has in the comparison."""

    label: str
    path: Path
    result: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """Runs of one taxonomy, in the order given."""

    taxonomy: str
    domains: list[str]
    runs: list[RunResult]

    def shared_truth(self) -> dict[str, float] | None:
        """Return the known mixture if every run has the same one, else ``None``."""
        truths = [run.result["truth"] for run in self.runs]
        if truths[0] is None or any(t != truths[0] for t in truths[1:]):
            return None
        return truths[0]

    def to_json(self) -> dict[str, Any]:
        keys = ("n_samples", "sampler", "classifier", "solver", "interval_level")
        keys += ("estimate", "interval", "naive", "truth", "metrics", "naive_metrics")
        return {
            "taxonomy": self.taxonomy,
            "domains": self.domains,
            "runs": [
                {"label": run.label, "path": str(run.path), **{k: run.result[k] for k in keys}}
                for run in self.runs
            ],
        }


def _result_path(path: Path) -> Path:
    return path if path.suffix == ".json" else path / "result.json"


def _read_result(path: Path) -> dict[str, Any]:
    """Read a run's ``result.json`` from its run directory, or the file itself."""
    result_path = _result_path(Path(path))
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirectoryError(
            f"{str(path)!r} has no result.json; give a run directory where "
            "`llmsurgeon estimate` has finished"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirectoryError(
            f"{str(result_path)!r} cannot be read ({error}); run `llmsurgeon estimate` again"
        ) from None
    version = result.get("schema_version") if isinstance(result, dict) else None
    if version != RESULT_SCHEMA_VERSION:
        raise RunDirectoryError(
            f"{str(result_path)!r} has result schema version {version!r}, but this version "
            f"reads {RESULT_SCHEMA_VERSION}; run `llmsurgeon estimate` again"
        )
    return result


def _labels(paths: Sequence[Path]) -> list[str]:
    """Name each run by its directory, or by its whole path where two directories share a name."""
    names = [_result_path(Path(p)).parent.resolve().name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _check_comparable(runs: list[RunResult]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.result["taxonomy"] != first.result["taxonomy"]:
            raise InvalidInputError(
                f"runs {first.label!r} (taxonomy {first.result['taxonomy']!r}) and "
                f"{run.label!r} (taxonomy {run.result['taxonomy']!r}) audit different "
                "taxonomies; compare only runs of one taxonomy"
            )
        if run.result["domains"] != first.result["domains"]:
            raise InvalidInputError(
                f"runs {first.label!r} and {run.label!r} of taxonomy "
                f"{first.result['taxonomy']!r} have different domains "
                f"({', '.join(first.result['domains'])} against "
                f"{', '.join(run.result['domains'])}); compare only runs of one taxonomy version"
            )


def load_comparison(paths: Sequence[Path]) -> Comparison:
    """Read the runs at ``paths`` (run directories or ``result.json`` files) in order.

    Raises:
        InvalidInputError: if fewer than two runs are given, or the runs
            audit different taxonomies or domains.
        RunDirectoryError: if a run has no readable ``result.json``.
    """
    if len(paths) < 2:
        raise InvalidInputError(
            f"compare needs at least two runs, got {len(paths)}; give two or more run directories"
        )
    runs = [
        RunResult(label, Path(path), _read_result(Path(path)))
        for label, path in zip(_labels(paths), paths)
    ]
    _check_comparable(runs)
    first = runs[0].result
    return Comparison(first["taxonomy"], list(first["domains"]), runs)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def estimate_cell(result: dict[str, Any], domain: str) -> str:
    """Format a run's estimate of one domain as ``share (low–high)`` in percent."""
    cell = _percent(result["estimate"][domain])
    bounds = (result["interval"] or {}).get(domain)
    if bounds:
        cell += f" ({_percent(bounds[0])}–{_percent(bounds[1])})"
    return cell


def _metric(result: dict[str, Any], key: str, name: str) -> str:
    metrics = result.get(key)
    return "" if not metrics else f"{metrics[name]:.4f}"


def render_comparison_markdown(comparison: Comparison) -> str:
    """Render the comparison as Markdown: estimates, runs and metrics."""
    labels = [run.label for run in comparison.runs]
    truth = comparison.shared_truth()
    levels = {round(100 * run.result["interval_level"]) for run in comparison.runs}
    level = f"{levels.pop()}% intervals" if len(levels) == 1 else "intervals at each run's level"
    lines = [
        f"# Mixture comparison: {comparison.taxonomy}",
        "",
        f"Estimate % per domain and run ({level} in brackets), in the order given.",
        "",
        "| domain | " + " | ".join(labels) + (" | known |" if truth else " |"),
        "| --- |" + " ---: |" * (len(labels) + (1 if truth else 0)),
    ]
    for domain in comparison.domains:
        cells = [estimate_cell(run.result, domain) for run in comparison.runs]
        if truth:
            cells.append(_percent(truth[domain]))
        lines.append(f"| {domain} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | samples | sampler | classifier | solver | overlap accuracy | naive overlap "
        "| MAE | R² | KL |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in comparison.runs:
        result = run.result
        metrics = [_metric(result, "metrics", "overlap_accuracy")]
        metrics.append(_metric(result, "naive_metrics", "overlap_accuracy"))
        metrics += [_metric(result, "metrics", name) for name in METRIC_NAMES[1:]]
        lines.append(
            f"| {run.label} | {result['n_samples']} | {result['sampler']} | "
            f"{result['classifier']} | {result['solver']} | " + " | ".join(metrics) + " |"
        )
    if not truth and any(run.result["truth"] for run in comparison.runs):
        lines += _known_mixture_lines(comparison)
    return "\n".join(lines) + "\n"


def _known_mixture_lines(comparison: Comparison) -> list[str]:
    """Tabulate the known mixtures of runs whose known mixtures differ."""
    lines = [
        "",
        "Known mixture % per run:",
        "",
        "| domain | " + " | ".join(run.label for run in comparison.runs) + " |",
        "| --- |" + " ---: |" * len(comparison.runs),
    ]
    for domain in comparison.domains:
        cells = [_percent((run.result["truth"] or {}).get(domain)) for run in comparison.runs]
        lines.append(f"| {domain} | " + " | ".join(cells) + " |")
    return lines


def render_trajectory(comparison: Comparison) -> bytes:
    """Plot each domain's share across the runs as a PNG, one panel per domain.

    The estimate is a line with its interval as a band. The naive baseline is
    dotted, and known mixtures are black diamonds.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    domains = comparison.domains
    colours = domain_colours(domains)
    columns = min(len(domains), 4)
    rows = -(-len(domains) // columns)
    x = np.arange(len(comparison.runs))
    labels = [run.label for run in comparison.runs]
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.2 * columns, 2.6 * rows + 0.6),
        dpi=110,
        squeeze=False,
        layout="constrained",
    )
    for index, axis in enumerate(axes.flat):
        if index >= len(domains):
            axis.set_visible(False)
            continue
        _plot_domain(axis, comparison, domains[index], x, colours[domains[index]])
        axis.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    figure.suptitle(f"{comparison.taxonomy}: estimated share per run")
    figure.legend(handles=_legend_handles(), loc="outside lower center", ncols=4, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], color="#4e5d6c", marker="o", label="estimate"),
        Patch(color="#4e5d6c", alpha=0.2, label="interval"),
        Line2D([], [], color="#5f6b7a", linestyle=":", label="naive"),
        Line2D([], [], color=KNOWN_COLOUR, marker="D", linestyle="", label="known mixture"),
    ]


def _plot_domain(
    axis: Any, comparison: Comparison, domain: str, x: np.ndarray, colour: str
) -> None:
    results = [run.result for run in comparison.runs]
    estimate = np.array([r["estimate"][domain] for r in results])
    axis.plot(x, 100 * estimate, marker="o", color=colour, label="estimate")
    bounds = [(r["interval"] or {}).get(domain) for r in results]
    if all(bounds):
        low, high = np.array(bounds).T
        axis.fill_between(x, 100 * low, 100 * high, color=colour, alpha=0.2, linewidth=0)
    naive = np.array([r["naive"][domain] for r in results])
    axis.plot(x, 100 * naive, linestyle=":", color="#5f6b7a", label="naive")
    known = [(i, r["truth"][domain]) for i, r in enumerate(results) if r["truth"]]
    if known:
        positions, shares = zip(*known)
        axis.scatter(positions, 100 * np.array(shares), marker="D", color=KNOWN_COLOUR, zorder=3)
    axis.set_title(domain, fontsize=10)
    axis.set_ylabel("share %", fontsize=8)
    axis.set_ylim(bottom=0)
    axis.grid(axis="y", color="#e3e7ec")
    axis.tick_params(labelsize=8)


def render_comparison_html(comparison: Comparison, trajectory_png: bytes) -> str:
    """Render ``compare.html``, self-contained, with the trajectory plot embedded."""
    truth = comparison.shared_truth()
    return render_template(
        "compare.html.j2",
        comparison=comparison,
        colours=domain_colours(comparison.domains),
        truth=truth,
        cells={
            (run.label, domain): estimate_cell(run.result, domain)
            for run in comparison.runs
            for domain in comparison.domains
        },
        metric_names=METRIC_NAMES,
        trajectory=png_data_uri(trajectory_png),
    )


def write_comparison(comparison: Comparison, output: Path) -> list[Path]:
    """Write ``compare.md``, ``compare.html`` and ``trajectory.png`` into ``output``."""
    output = Path(output)
    trajectory = render_trajectory(comparison)
    files = {
        "compare.md": render_comparison_markdown(comparison).encode("utf-8"),
        "compare.html": render_comparison_html(comparison, trajectory).encode("utf-8"),
        "trajectory.png": trajectory,
    }
    for name, data in files.items():
        atomic_write_bytes(output / name, data)
    return [output / name for name in files]
