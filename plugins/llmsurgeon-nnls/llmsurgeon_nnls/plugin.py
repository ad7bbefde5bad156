"""Entry-point module that registers the ``nnls`` solver."""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl

from .solver import NNLSSolver


@hookimpl
def register_solvers(register: Callable[[str, type], None]) -> None:
    register("nnls", NNLSSolver)
