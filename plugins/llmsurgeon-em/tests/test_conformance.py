"""The ``em-bbse`` solver passes the core's conformance checks."""

from __future__ import annotations

from llmsurgeon_core.testing import check_solver
from llmsurgeon_em import EMSolver


def test_em_conforms():
    check_solver(EMSolver)
