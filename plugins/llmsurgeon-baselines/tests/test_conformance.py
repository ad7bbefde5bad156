"""Every baseline solver passes the core's conformance checks."""

from __future__ import annotations

import pytest

from llmsurgeon_baselines import (
    ClassifyAndCountSolver,
    HardBBSESolver,
    ProbabilisticClassifyAndCountSolver,
    RLLSSolver,
)
from llmsurgeon_core.testing import check_solver


@pytest.mark.parametrize(
    "solver_cls",
    [ClassifyAndCountSolver, ProbabilisticClassifyAndCountSolver, HardBBSESolver, RLLSSolver],
)
def test_baseline_conforms(solver_cls):
    check_solver(solver_cls)
