"""Entry-point module that registers the ``em-bbse`` and ``kdey`` solvers.

SciPy is imported only when a solve starts, so loading this plugin keeps the
command line's start fast.
"""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_solvers(register: Callable[[str, type], None]) -> None:
    from .kde import KDEySolver
    from .solver import EMSolver

    register("em-bbse", EMSolver)
    register("kdey", KDEySolver)
