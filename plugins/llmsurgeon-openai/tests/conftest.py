"""Fixtures of the llmsurgeon-openai tests: a real ``transformers serve`` server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fault_proxy import FaultProxy
from tiny_model import save_word_model

SERVER_START_SECONDS = 180


@dataclass(frozen=True)
class Server:
    """A running OpenAI-compatible server and the model name it serves."""

    base_url: str
    port: int
    model: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    raise RuntimeError(f"transformers serve was not healthy after {SERVER_START_SECONDS} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve a tiny word-level GPT-2 with ``transformers serve`` on a free 127.0.0.1 port."""
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"transformers serve needs {module}: pip install 'transformers[serving]'")
    model_dir = save_word_model(tmp_path_factory.mktemp("word-model"))
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    command = [
        str(Path(sys.executable).with_name("transformers")),
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_healthy(process, port, log)
        yield Server(f"http://127.0.0.1:{port}/v1", port, str(model_dir))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture
def make_proxy(server: Server) -> Iterator[Callable[..., FaultProxy]]:
    """Return a factory of started fault proxies in front of the server; all stop after the test."""
    proxies: list[FaultProxy] = []

    def make(faults: list[str] = (), **settings: object) -> FaultProxy:
        proxy = FaultProxy(server.port, list(faults), **settings).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
