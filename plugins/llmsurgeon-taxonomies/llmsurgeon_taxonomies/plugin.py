"""Registers every ``*.yaml`` file of the packaged taxonomy folder by its stem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmsurgeon_core import hookimpl


def taxonomy_dir() -> Path:
    """Return the folder of the packaged taxonomy files.

    A wheel carries them in ``data/``; an editable install of the source tree
    reads the repository's ``taxonomies/`` folder directly.
    """
    packaged = Path(__file__).parent / "data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "taxonomies"


@hookimpl
def register_taxonomies(register: Callable[[str, object], None]) -> None:
    for path in sorted(taxonomy_dir().glob("*.yaml")):
        register(path.stem, path)
