"""A local Slack incoming webhook that records posts and replays scripted responses."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

ScriptedResponse = tuple[int, dict[str, str], str]
DEFAULT_RESPONSE: ScriptedResponse = (200, {"Content-Type": "text/plain"}, "ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: SlackReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_POST(self) -> None:
        """Record the posted JSON and answer with the next scripted response."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            message: dict[str, Any] = json.loads(raw)
        except ValueError:
            message = {"_raw": raw.decode(errors="replace")}
        status, headers, body = self.server.receiver._record(message)
        data = body.encode()
        self.send_response(status)
        headers = {"Content-Type": "text/plain", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class SlackReceiver:
    """Webhook receiver on 127.0.0.1; `.url` is the webhook URL to post to."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.responses: list[ScriptedResponse] = []
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Webhook URL of the running receiver."""
        if self._server is None:
            raise RuntimeError("slack receiver is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/services/T000/B000/XXXX"

    def start(self) -> str:
        """Start serving and return the webhook URL."""
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.receiver = self
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least `n` messages were recorded; return whether they were."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def _record(self, message: dict[str, Any]) -> ScriptedResponse:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
            return self.responses.pop(0) if self.responses else DEFAULT_RESPONSE

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
