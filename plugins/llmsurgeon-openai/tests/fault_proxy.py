"""An HTTP proxy on 127.0.0.1 that injects faults in front of a real server.

Each POST takes the next fault from a list, in order of arrival: ``"429"``
(with ``Retry-After``), ``"500"``, ``"401"``, ``"empty"`` (a completion with
no choices), ``"drop"`` (the connection is closed with no response),
``"slow"`` (forwarded after ``slow_seconds``) or ``"ok"``. Once the list is
used up every request is forwarded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ProxyRequest:
    """One request the proxy received."""

    arrived: float
    fault: str
    body_digest: str
    authorization: str | None


@dataclass
class FaultProxy:
    """A fault-injecting proxy; ``start`` binds a free port on 127.0.0.1."""

    upstream_port: int
    faults: list[str] = field(default_factory=list)
    retry_after: str = "1"
    slow_seconds: float = 4.0
    delay_seconds: float = 0.0
    requests: list[ProxyRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy._lock:
                    fault = proxy.faults.pop(0) if proxy.faults else "ok"
                    proxy.requests.append(
                        ProxyRequest(
                            time.monotonic(),
                            fault,
                            hashlib.sha256(body).hexdigest(),
                            self.headers.get("authorization"),
                        )
                    )
                proxy._apply(self, fault, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _apply(self, handler: BaseHTTPRequestHandler, fault: str, body: bytes) -> None:
        if fault == "drop":
            handler.close_connection = True
            return
        if fault in ("429", "500", "401"):
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            # A 401 echoes the key, as some servers do, to test that it is scrubbed.
            message = f"injected {fault}; key {handler.headers.get('authorization')}"
            _reply(
                handler, int(fault), json.dumps({"error": {"message": message}}).encode(), headers
            )
            return
        if fault == "empty":
            empty = {
                "id": "x",
                "object": "text_completion",
                "created": 0,
                "model": "m",
                "choices": [],
            }
            _reply(handler, 200, json.dumps(empty).encode(), {})
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
        elif self.delay_seconds:
            time.sleep(self.delay_seconds)
        self._forward(handler, body)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            connection.request(
                handler.command,
                handler.path,
                body=body or None,
                headers={"content-type": "application/json"},
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            _reply(handler, response.status, data, {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a slow request


def _reply(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
