"""Entry-point module that registers the ``nnls`` solver.

The solver module imports SciPy only when it solves, so loading this plugin
keeps the command line's start fast.
"""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_solvers(register: Callable[[str, type], None]) -> None:
    from .solver import NNLSSolver

    register("nnls", NNLSSolver)
