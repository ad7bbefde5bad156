"""Hook implementation of llmsurgeon-openai, named in the ``llmsurgeon`` entry-point group.

The sampler module imports ``openai`` only when sampling starts.
"""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_samplers(register: Callable[[str, type], None]) -> None:
    from .sampler import OpenAISampler

    register("openai", OpenAISampler)
