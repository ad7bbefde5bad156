"""Hook implementation of llmsurgeon-file, named in the ``llmsurgeon`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_samplers(register: Callable[[str, type], None]) -> None:
    from .sampler import FileSampler

    register("file", FileSampler)
