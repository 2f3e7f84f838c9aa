"""The plumbing every test server shares: a daemon-threaded HTTP/1.1 server on 127.0.0.1 and a quiet handler,
scripted faults, Google's error body and timestamp format.

A fake subclasses `LoopbackServer` and passes its handler class, a `LoopbackHandler[TheFake]` whose
``do_*`` methods read the request with `read_body`/`read_json`, ask ``self.owner`` (the fake) for the
answer and reply with `send_json`/`send_text`/`send_bytes`. A fake that can be told to fail also
subclasses `Faults` (or `QueryFaults`, which can find nothing yet as well).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

HOST = "127.0.0.1"
POLL_INTERVAL_S = 0.005  # how long `stop` may wait for the serving loop to notice
STOP_TIMEOUT_S = 5.0
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
TEXT_CONTENT_TYPE = "text/plain"
# HTTP status → the ``status`` (gRPC code name) Google APIs put in an error body.
ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

OwnerT = TypeVar("OwnerT")


def rfc3339(when: datetime | None = None) -> str:
    """A UTC timestamp in the APIs' format (microseconds, ``Z``); now when `when` is None."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_body(status: int, message: str) -> dict[str, Any]:
    """Google-style error JSON for an HTTP status."""
    return {"error": {"code": status, "message": message, "status": ERROR_STATUS.get(status, "UNKNOWN")}}


class Faults:
    """Failures a test scripts with `fail_next`; the fake takes one per request, under ``self._lock``.

    A mixin: list it before the server base class (``class FakeX(Faults, LoopbackServer)``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self._failures: list[int] = []
        super().__init__(*args, **kwargs)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Make the next `n` requests fail with `status`."""
        with self._lock:
            self._failures.extend([status] * n)

    def _take_failure(self) -> int | None:
        """The status the current request fails with, if one is scripted; call with ``self._lock`` held."""
        return self._failures.pop(0) if self._failures else None


class QueryFaults(Faults):
    """`Faults`, and queries that find nothing yet (`lag`), as Logging and Monitoring do right after a write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lag = 0
        super().__init__(*args, **kwargs)

    def lag(self, n: int = 1) -> None:
        """The next `n` queries find nothing: what was added is not queryable yet."""
        with self._lock:
            self._lag += n

    def _take_lag(self) -> bool:
        """Whether the current query finds nothing; call with ``self._lock`` held."""
        lagging = self._lag > 0
        self._lag -= lagging
        return lagging


class LoopbackHTTPServer(ThreadingHTTPServer, Generic[OwnerT]):
    """A threading HTTP server on a free loopback port whose handlers reach `owner`."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: OwnerT, handler: type[LoopbackHandler[OwnerT]]) -> None:
        self.owner = owner
        super().__init__((HOST, 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report handler errors, except a client hanging up mid-request (clients under test time out on purpose)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler, Generic[OwnerT]):
    """HTTP/1.1 (keep-alive) request handler that logs nothing and speaks JSON or text."""

    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer[OwnerT]

    @property
    def owner(self) -> OwnerT:
        """The fake this request is served for."""
        return self.server.owner

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():
            pass
        return b"".join(chunks)

    def read_json(self) -> Any:
        """The decoded JSON body; ``{}`` when empty, ``{"_raw": text}`` when not JSON, so tests can see what came."""
        raw = self.read_body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {"_raw": raw.decode(errors="replace")}

    def send_bytes(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        """Reply with `status`, `headers` (in order), a Content-Length and `data`."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        """Reply with `obj` as JSON; `headers` add to or replace the JSON Content-Type."""
        self.send_bytes(status, json.dumps(obj).encode(), {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})

    def send_text(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        """Reply with `text`; `headers` add to or replace the text/plain Content-Type."""
        self.send_bytes(status, text.encode(), {"Content-Type": TEXT_CONTENT_TYPE, **(headers or {})})


class LoopbackServer:
    """Serves a handler class on 127.0.0.1 from a daemon thread; `start`/`stop` or use as a context manager."""

    def __init__(self, handler: type[LoopbackHandler[Any]], label: str) -> None:
        """`label` names the fake in errors, e.g. "fake Cloud Run is not running"."""
        self._handler = handler
        self._label = label
        self._server: LoopbackHTTPServer[Any] | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._server is None:
            raise RuntimeError(f"{self._label} is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def endpoint(self) -> str:
        """The base URL, for a client's ``api_endpoint``, STORAGE_EMULATOR_HOST or a push endpoint."""
        return self.base_url

    def start(self) -> str:
        """Start serving (once; later calls do nothing) and return the base URL."""
        if self._server is None:
            self._server = LoopbackHTTPServer(self, self._handler)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)

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
