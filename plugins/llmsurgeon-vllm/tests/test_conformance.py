"""The ``vllm`` sampler passes the core's conformance checks on a real engine.

The engine starts worker processes, so the check runs in its own interpreter
(``scripts/check_vllm.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from engine_support import engine_env, on_cpu, requires_vllm

CHECK_SCRIPT = Path(__file__).parents[1] / "scripts" / "check_vllm.py"


@pytest.mark.slow
@requires_vllm
def test_vllm_sampler_conforms(tiny_llama: Path) -> None:
    arguments = ["--model", str(tiny_llama)]
    if on_cpu():
        arguments.append("--cpu")
    result = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "check: passed" in result.stderr
