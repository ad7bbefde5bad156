"""The scatter plot of a scan: estimated against known shares, for every target and domain."""

from __future__ import annotations

import io
import math
from pathlib import Path

from llmsurgeon_core.storage import atomic_write_bytes

from .scan import ScanResult

__all__ = ["plot_scan"]

# Panels per row of the figure.
COLUMNS = 4
PANEL_INCHES = 3.2


def _panels(result: ScanResult, classifier: str) -> list[tuple[str, list[float], list[float]]]:
    """Return (title, known shares, estimated shares) per solver, then the naive baseline."""
    audits = [a for a in result.audits if a["classifier"] == classifier]
    panels = []
    for solver in result.solvers:
        chosen = [a for a in audits if a["solver"] == solver]
        truth = [a["truth"][d] for a in chosen for d in result.domains]
        estimate = [a["estimate"][d] for a in chosen for d in result.domains]
        panels.append((f"{solver} ({classifier})", truth, estimate))
    first_solver = [a for a in audits if a["solver"] == result.solvers[0]]
    truth = [a["truth"][d] for a in first_solver for d in result.domains]
    naive = [a["naive"][d] for a in first_solver for d in result.domains]
    panels.append((f"naive ({classifier})", truth, naive))
    return panels


def plot_scan(result: ScanResult, path: str | Path, classifier: str | None = None) -> Path:
    """Draw one panel per solver and one for the naive baseline, each with the diagonal.

    Every point is one domain of one target: its training share on the x axis
    and the estimate on the y axis. ``classifier`` defaults to the first one.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = _panels(result, classifier or result.classifiers[0])
    columns = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    limit = max([0.05, *(max(t + e) for _, t, e in panels if t)]) * 1.05
    for axis, (title, truth, estimate) in zip(axes.flat, panels):
        axis.plot([0, limit], [0, limit], color="grey", linewidth=1, linestyle="--")
        axis.scatter(truth, estimate, s=12, alpha=0.7)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(0, limit)
        axis.set_ylim(0, limit)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("training share")
    for axis in axes[:, 0]:
        axis.set_ylabel("estimated share")
    figure.suptitle(
        f"{result.taxonomy}: {len(result.targets)} targets x {len(result.domains)} domains"
    )
    figure.tight_layout()
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path
