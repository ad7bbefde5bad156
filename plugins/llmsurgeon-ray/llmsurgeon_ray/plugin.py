"""Hook implementation of llmsurgeon-ray, named in the ``llmsurgeon`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_executors(register: Callable[[str, type], None]) -> None:
    from .executor import RayExecutor

    register("ray", RayExecutor)
