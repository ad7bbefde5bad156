"""Cache directory of llmsurgeon's models and reference corpora."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["CACHE_DIR_VARIABLE", "cache_dir"]

CACHE_DIR_VARIABLE = "LLMSURGEON_CACHE_DIR"


def cache_dir() -> Path:
    """Return the cache directory: ``$LLMSURGEON_CACHE_DIR`` or the user cache."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("llmsurgeon"))
