"""Hook implementations of llmsurgeon-hf, named in the ``llmsurgeon`` entry-point group.

The hooks import their components when called, and none of those modules
imports torch or transformers at import time, so the command line starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmsurgeon_core import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_samplers(register: Callable[[str, type], None]) -> None:
    from .sampler import HFSampler

    register("hf", HFSampler)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import train_target_command

    cli.add_command(train_target_command)
