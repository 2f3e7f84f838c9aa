"""The bundled sample service: healthy, slow and failing routes for demo and tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

HEALTHY_BODY = {"status": "healthy", "version": "1.4.2", "checks": {"db": "ok"}}
BROKEN_BODY = {"status": "degraded", "checks": {"db": "timeout"}}
DEFAULT_SLOW_MS = 1500
MAX_SLOW_MS = 10_000
DEFAULT_HUGE_BYTES = 5_000_000
CHUNK_BYTES = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    service: SampleService

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection so that stop() can close kept-alive ones."""
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection once its handler is done with it."""
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open connection so pooled clients see the service go down."""
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Dispatch a GET to its route."""
        service = self.server.service
        service._record("GET", self.path)
        parts = urlsplit(self.path)
        path = parts.path
        query = {
            k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
        }
        if path == "/health":
            if service.mode == "broken":
                self._send(503, json.dumps(BROKEN_BODY), "application/json")
            else:
                self._send(200, json.dumps(HEALTHY_BODY), "application/json")
        elif path == "/":
            self._send(200, "sample service")
        elif path == "/ok":
            self._send(200, "ok")
        elif path.startswith("/status/") and (
            code := _status(path.removeprefix("/status/"))
        ):
            self._send(code, query.get("body", f"status {code}"))
        elif path == "/slow":
            ms = min(_int(query.get("ms"), DEFAULT_SLOW_MS), MAX_SLOW_MS)
            if service._stopping.wait(ms / 1000):
                self.close_connection = True
            else:
                self._send(200, "slow")
        elif path == "/drop":
            self.close_connection = True
        elif path == "/huge":
            self._send_huge(_int(query.get("bytes"), DEFAULT_HUGE_BYTES))
        elif path == "/redirect":
            self._send(302, "redirect", headers={"Location": query.get("to", "/ok")})
        elif path == "/redirect-local":
            self._send(302, "redirect", headers={"Location": "/ok"})
        elif path == "/private":
            expected = f"Bearer {service.token}"
            if (
                service.token is not None
                and self.headers.get("Authorization") == expected
            ):
                self._send(200, json.dumps({"status": "healthy"}), "application/json")
            else:
                self._send(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        elif path == "/json":
            self._send(200, query.get("body", "{}"), "application/json")
        else:
            self._send(404, "not found")

    def do_POST(self) -> None:
        """Reject every POST: the sample service only serves GET routes."""
        self.server.service._record("POST", self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(405, "method not allowed", headers={"Allow": "GET"})

    def _send(
        self,
        status: int,
        body: str,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if status in (204, 304) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_huge(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"x" * CHUNK_BYTES
        remaining = size
        try:
            while remaining > 0:
                self.wfile.write(chunk[: min(remaining, CHUNK_BYTES)])
                remaining -= CHUNK_BYTES
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _status(text: str) -> int:
    code = int(text) if text.isdigit() else 0
    return code if 200 <= code <= 599 else 0


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


class SampleService:
    """The bundled sample service, served on 127.0.0.1 from a daemon thread."""

    def __init__(self, mode: str = "healthy", token: str | None = None) -> None:
        self.mode = mode
        self.token = token
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        if self._server is None:
            raise RuntimeError("sample service is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Start serving and return the base URL."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server()
            self._server.service = self
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and wake any sleeping /slow requests."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
