"""The ``em-bbse`` and ``kdey`` solvers pass the core's conformance checks."""

from __future__ import annotations

from llmsurgeon_core.testing import check_solver
from llmsurgeon_em import EMSolver, KDEySolver


def test_em_conforms():
    check_solver(EMSolver)


def test_kdey_conforms():
    check_solver(KDEySolver)
