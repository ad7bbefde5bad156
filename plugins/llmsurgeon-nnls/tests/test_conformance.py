"""The ``nnls`` solver passes the core's conformance checks."""

from __future__ import annotations

from llmsurgeon_core.testing import check_solver
from llmsurgeon_nnls import NNLSSolver


def test_nnls_conforms():
    check_solver(NNLSSolver)
