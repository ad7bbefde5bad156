"""Fixtures of the llmsurgeon-vllm engine tests: a tiny local Llama, a calibration, a server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

from check_vllm import save_tiny_llama
from engine_support import (
    Server,
    engine_env,
    free_port,
    llmsurgeon_command,
    on_cpu,
    wait_until_healthy,
    write_config,
)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a randomly initialized 2-layer Llama with a 256-word vocabulary."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Calibrate the demo taxonomy once; the audits of this session reuse the directory."""
    directory = tmp_path_factory.mktemp("calibrate")
    sampler = {"name": "vllm", "options": {"model": "unused"}}
    config = write_config(directory / "audit.yaml", sampler, directory / "run")
    result = llmsurgeon_command("calibrate", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return directory / "run" / "calibration"


@pytest.fixture(scope="session")
def vllm_server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve the tiny Llama with vLLM's OpenAI-compatible server on a free 127.0.0.1 port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_llama),
        "--served-model-name",
        "tiny-llama",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "128",
    ]
    if on_cpu():
        command += ["--dtype", "float32", "--enforce-eager"]
    else:
        command += ["--gpu-memory-utilization", "0.3"]
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=engine_env()
        )
    try:
        wait_until_healthy(process, port, log)
        yield Server(f"http://127.0.0.1:{port}/v1", "tiny-llama")
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
