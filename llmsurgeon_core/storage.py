"""Crash-safe file writes: a reader sees the old file or the new one, never half.

Every write goes to a temporary file in the same folder, is flushed and
fsynced, and is renamed over the target, and the folder is fsynced after the
rename. Text and JSON are masked of known secrets (see
:mod:`llmsurgeon_core.secrets`) before they are written. A write that fails
because the disk is full or read-only raises :class:`RunDirectoryError` and
leaves the target as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import RunDirectoryError
from .secrets import redact

__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "default_mode",
    "remove_stale_temporaries",
    "storage_error",
]

# Names of the temporary files and folders this module creates beside a
# target: ``.NAME.`` and eight random characters (tempfile's suffix), or
# ``.NAME.old-PID`` for a directory being replaced.
_TEMPORARY_NAME = re.compile(r"^\.[^.].*\.([a-z0-9_]{8}|old-\d+)$")

# Errors of the disk or of permissions. The user fixes them by freeing space or
# choosing another directory, so they are invalid input rather than failures.
_STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def storage_error(path: Path, error: OSError) -> RunDirectoryError | OSError:
    """Return the error to raise for ``error`` while writing ``path``.

    A full, read-only or forbidden disk becomes a :class:`RunDirectoryError`
    that names the path and the fix; other errors are returned unchanged.
    """
    if error.errno not in _STORAGE_ERRNOS:
        return error
    reason = error.strerror or os.strerror(error.errno)
    return RunDirectoryError(
        f"cannot write {str(path)!r}: {reason}; free disk space or make the folder writable, "
        "or choose another run_dir"
    )


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def default_mode(directory: bool = False) -> int:
    """Return the mode a plain ``open`` or ``mkdir`` would give under the umask.

    ``tempfile`` creates files as 0600 and folders as 0700, which would keep
    reports and caches from other users.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file and a rename.

    Raises:
        RunDirectoryError: if the disk is full or the folder is not writable.
    """
    path = Path(path)
    try:
        _write_and_rename(path, data)
    except OSError as error:
        raise storage_error(path, error) from None


def _write_and_rename(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(temporary, default_mode())
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8, with known secrets masked, like :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, redact(text).encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, like :func:`atomic_write_text`."""
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _fsync_tree(directory: Path) -> None:
    """Flush every file and folder under ``directory`` to disk, deepest first."""
    for folder, _, files in os.walk(directory, topdown=False):
        for name in files:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _fsync_directory(Path(folder))


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    Every file written into it is fsynced before the rename, so a crash
    leaves either the old directory or the complete new one. An existing
    ``path`` is removed only after the new directory is complete, and a failed
    block leaves ``path`` as it was.

    Raises:
        RunDirectoryError: if the disk is full or the folder is not writable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        os.chmod(temporary, default_mode(directory=True))
    except OSError as error:
        raise storage_error(path, error) from None
    try:
        yield temporary
        _fsync_tree(temporary)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise storage_error(path, error) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if path.exists():
        retired = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, retired)
        os.replace(temporary, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(temporary, path)
    _fsync_directory(path.parent)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files and folders that a killed writer left in ``directory``.

    Call it only while holding the directory's lock, because another
    process's temporaries in progress look the same.

    Returns:
        The paths removed.
    """
    removed = []
    for path in sorted(Path(directory).iterdir()):
        if not _TEMPORARY_NAME.match(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
