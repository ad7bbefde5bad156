"""Fixtures of the llmsurgeon-ray tests: a loopback-only network namespace to run Ray in.

Ray's processes listen on every network interface, even when Ray is configured to
use 127.0.0.1. The tests therefore start Ray only in a child process inside a
new network namespace (``unshare -n``) whose one interface is the loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

NAMESPACE_TIMEOUT = 300


def _namespace_problem() -> str | None:
    """Return why no loopback-only network namespace can be made here, or None."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is not installed"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"`unshare -n` failed ({probe.stderr.strip()}); it needs root or user namespaces"
    return None


def _processes_mentioning(text: str) -> list[str]:
    """Return the command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command[:200]}")
    return found


@pytest.fixture
def run_in_namespace() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Return a function that runs a command in a loopback-only network namespace.

    The command gets its own Ray temporary folder (``RAY_TMPDIR``), usage
    statistics off and one thread per math library. After the test, the
    fixture fails if any process still names that folder, which catches a Ray
    instance that was not shut down.
    """
    problem = _namespace_problem()
    if problem is not None:
        pytest.skip(f"cannot run Ray in a loopback-only network namespace: {problem}")
    # Ray puts Unix sockets under this folder, so its path must stay short.
    ray_tmp = tempfile.mkdtemp(prefix="lsray-")

    def run(
        command: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            **os.environ,
            **(env or {}),
            "RAY_TMPDIR": ray_tmp,
            "RAY_USAGE_STATS_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        wrapped = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
        return subprocess.run(
            wrapped,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=NAMESPACE_TIMEOUT,
            check=False,
        )

    yield run
    left = _processes_mentioning(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, f"Ray processes still running after the test: {left}"
