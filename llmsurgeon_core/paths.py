"""Cache directory of llmsurgeon's models and reference corpora."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import ConfigError

__all__ = ["CACHE_DIR_VARIABLE", "cache_dir"]

CACHE_DIR_VARIABLE = "LLMSURGEON_CACHE_DIR"


def cache_dir() -> Path:
    """Return the cache directory: ``$LLMSURGEON_CACHE_DIR`` or the user cache.

    Raises:
        ConfigError: if the path exists and is not a directory.
    """
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        path = Path(configured).expanduser()
        source = f"{CACHE_DIR_VARIABLE}={configured}"
    else:
        path = Path(platformdirs.user_cache_dir("llmsurgeon"))
        source = "the user cache directory"
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"cache directory {str(path)!r} ({source}) is not a directory; "
            f"set {CACHE_DIR_VARIABLE} to a directory"
        )
    return path
