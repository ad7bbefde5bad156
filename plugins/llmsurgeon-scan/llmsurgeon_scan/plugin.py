"""Hook implementations of llmsurgeon-scan, named in the ``llmsurgeon`` entry-point group.

The hook imports the command when called, and the command imports torch,
transformers and matplotlib only when it runs, so the command line starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmsurgeon_core import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import scan_command

    cli.add_command(scan_command)
