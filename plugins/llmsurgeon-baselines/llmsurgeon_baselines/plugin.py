"""Entry-point module that registers the baseline solvers ``cc``, ``pcc``, ``bbse`` and ``rlls``."""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_solvers(register: Callable[[str, type], None]) -> None:
    from .solvers import (
        ClassifyAndCountSolver,
        HardBBSESolver,
        ProbabilisticClassifyAndCountSolver,
        RLLSSolver,
    )

    register("cc", ClassifyAndCountSolver)
    register("pcc", ProbabilisticClassifyAndCountSolver)
    register("bbse", HardBBSESolver)
    register("rlls", RLLSSolver)
