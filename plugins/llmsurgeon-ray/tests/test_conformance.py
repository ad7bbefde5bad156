"""The ``ray`` executor, and the core's ``local`` one as the baseline, pass the executor
conformance check on real text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("conformance_main.py")


def test_local_executor_conforms(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "local", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "local: conformance passed" in result.stdout


@pytest.mark.slow
def test_ray_executor_conforms(tmp_path, run_in_namespace):
    result = run_in_namespace([sys.executable, str(SCRIPT), "ray", str(tmp_path)])
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert "ray: conformance passed" in result.stdout
