"""The ``cvxpy`` solver passes the core's conformance checks."""

from __future__ import annotations

from llmsurgeon_core.testing import check_solver
from llmsurgeon_cvxpy import CvxpySolver


def test_cvxpy_conforms():
    check_solver(CvxpySolver)
