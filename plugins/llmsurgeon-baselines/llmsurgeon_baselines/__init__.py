"""Baseline mixture solvers that llmsurgeon users compare against: CC, PCC, BBSE and RLLS."""

from __future__ import annotations

from .solvers import (
    ClassifyAndCountSolver,
    HardBBSESolver,
    ProbabilisticClassifyAndCountSolver,
    RLLSSolver,
)

__all__ = [
    "ClassifyAndCountSolver",
    "HardBBSESolver",
    "ProbabilisticClassifyAndCountSolver",
    "RLLSSolver",
]
