"""The bundled sample service: healthy, slow and failing routes, a small orders API and an agent WebSocket.

With ``log_path`` it appends one JSON line per request to its own log, in the structured shape Cloud Run
takes from stdout (``timestamp``, ``severity``, ``message``, ``httpRequest``, ``logging.googleapis.com/labels``),
which ``sources.log_entries.FileLogSource`` reads. Modes (combine with ``+``, switch at run time):
``"broken"`` fails /health and order creation; ``"raising"`` keeps answering but logs a ``KeyError``
traceback from ``orders/api.py`` on every HTTP request, the new exception a bad deploy starts throwing;
``"hanging"`` accepts every HTTP request and never answers it (a deadlocked worker) until the service stops;
``"leaky"`` echoes its ``leaks`` (planted secrets) in /health, the agent's last event and /garbled's status line,
and logs each of them and every request's headers, as a service that quotes what it should not would.

WebSocket upgrades are served on the same port as HTTP: the handler hands the upgraded connection to
the sans-I/O ``websockets.server.ServerProtocol`` and pumps bytes between the socket and it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import linecache
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

HEALTHY_BODY = {"status": "healthy", "version": "1.4.2", "checks": {"db": "ok"}}
BROKEN_BODY = {"status": "degraded", "checks": {"db": "timeout"}}
DEFAULT_SLOW_MS = 1500
MAX_SLOW_MS = 10_000
DEFAULT_HUGE_BYTES = 5_000_000
CHUNK_BYTES = 64 * 1024
AGENT_SUBPROTOCOL = "agent.v1"
AGENT_MODES = ("ok", "chatty", "wrong-order", "slow", "close-early", "error-mid")
WS_IDLE_S = 30.0  # a client that never closes does not hold a handler thread for ever
HANG_S = 60.0  # how long mode "hanging" holds a request at most
WS_READ_BYTES = 64 * 1024
# The code the "raising" mode fails in, under the path it would have in the service's image, so the
# traceback is real (traceback.format_exception) and its innermost frame reads like application code.
ORDERS_API_FILE = "/app/orders/api.py"
ORDERS_API = """\
def handle_request(request):
    customer = load_customer(request)
    return customer


def load_customer(request):
    return request["session"]["customer_id"]
"""


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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (probes time out on purpose) is no error of the service's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut every open connection so pooled clients see the service go down."""
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    status: int | None = None  # of the response sent, for the request log

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Remember the status for the request log."""
        self.status = code
        super().send_response(code, message)

    def _serve(self, method: str, route: Any) -> None:
        """Record the request, raise-and-log in mode "raising", route it, then write its request log line."""
        service = self.server.service
        service._record(method, self.path)
        started = time.perf_counter()
        self.status = None
        if service.has_mode("raising") and self.headers.get("Upgrade", "").lower() != "websocket":
            service._log_exception(method, self.path)
        if service.has_mode("leaky"):
            service.log("ERROR", f"{method} {self.path} with headers " + ", ".join(f"{k}: {v}" for k, v in self.headers.items()))
            for leak in service.leaks:
                service.log("ERROR", f"leaked {leak}")
        if service.has_mode("hanging"):
            service._stopping.wait(HANG_S)
            self.close_connection = True
            return
        route()
        if self.status is not None:
            service._log_request(method, self.path, self.status, time.perf_counter() - started)

    def do_GET(self) -> None:
        """Dispatch a GET to its route."""
        self._serve("GET", self._get)

    def do_POST(self) -> None:
        """Create an order on /orders (``?fail=1`` or mode "broken" answers 500); every other POST is refused."""
        self._serve("POST", self._post)

    def do_DELETE(self) -> None:
        """Delete an order: 204, or 404 when there is no such order."""
        self._serve("DELETE", self._delete)

    def _get(self) -> None:
        service = self.server.service
        parts = urlsplit(self.path)
        path = parts.path
        query = {
            k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
        }
        if path in ("/ws/agent", "/ws/private"):
            self._agent(query, private=path == "/ws/private")
        elif path == "/orders":
            self._send_json(200, {"items": service.list_orders()})
        elif path.startswith("/orders/"):
            order = service.get_order(path.removeprefix("/orders/"))
            if order is None:
                self._send_json(404, {"error": f"no order {path.removeprefix('/orders/')}"})
            else:
                self._send_json(200, order)
        elif path == "/health":
            if service.has_mode("broken"):
                self._send(503, json.dumps(BROKEN_BODY), "application/json")
            else:
                leaks = {"leaks": service.leaks} if service.has_mode("leaky") else {}
                self._send(200, json.dumps({**HEALTHY_BODY, **leaks}), "application/json")
        elif path == "/":
            self._send(200, "sample service")
        elif path == "/ok":
            self._send(200, "ok")
        elif path == "/flaky":
            # Every Nth request answers 500: an intermittent failure for availability figures.
            every = max(_int(query.get("every"), 3), 1)
            with service._lock:
                service._flaky_count += 1
                failing = service._flaky_count % every == 0
            self._send(500 if failing else 200, "flaky failure" if failing else "ok")
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
        elif path == "/garbled":  # a status line no client can parse, which clients quote in their error
            self.close_connection = True
            quoted = " | ".join(leak for leak in service.leaks if "\n" not in leak) if service.has_mode("leaky") else "garbled"
            self.wfile.write(f"HTTP/1.1 OK {quoted}\r\n\r\n".encode())
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
        elif path == "/headers":
            self._send_json(200, {"headers": {k.lower(): v for k, v in self.headers.items()}})
        else:
            self._send(404, "not found")

    def _post(self) -> None:
        service = self.server.service
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        if parts.path != "/orders":
            self._send(405, "method not allowed", headers={"Allow": "GET"})
            return
        if parse_qs(parts.query).get("fail") == ["1"] or service.has_mode("broken"):
            self._send_json(500, {"error": "order store unavailable"})
            return
        try:
            item = json.loads(body).get("item")
        except (ValueError, AttributeError):
            item = None
        if not isinstance(item, str) or not item:
            self._send_json(400, {"error": "expected a JSON object with a non-empty string 'item'"})
            return
        order = service.add_order(item)
        self._send_json(201, order, headers={"Location": f"/orders/{order['id']}"})

    def _delete(self) -> None:
        service = self.server.service
        path = urlsplit(self.path).path
        if not path.startswith("/orders/"):
            self._send(405, "method not allowed", headers={"Allow": "GET"})
        elif service.delete_order(path.removeprefix("/orders/")):
            self._send(204, "")
        else:
            self._send_json(404, {"error": f"no order {path.removeprefix('/orders/')}"})

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc), "application/json", headers)

    def _agent(self, query: dict[str, str], private: bool) -> None:
        """The agent stream: one prompt in, ordered events out, then wait for the client to close."""
        service = self.server.service
        self.close_connection = True
        protocol = ServerProtocol(select_subprotocol=_agent_subprotocol)
        # BaseHTTPRequestHandler has consumed the request head; the protocol parses it again from bytes.
        head = self.requestline + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n"
        protocol.receive_data(head.encode("iso-8859-1"))
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:
            self._send(400, "expected a WebSocket handshake request")
            return
        if private and (service.token is None or request.headers.get("Authorization") != f"Bearer {service.token}"):
            response = protocol.reject(401, "unauthorized\n")
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = protocol.accept(request)
        protocol.send_response(response)
        ws = _WebSocket(self.connection, self.rfile, protocol)
        ws.flush()
        if protocol.state is not State.OPEN:
            return
        self.connection.settimeout(WS_IDLE_S)
        with contextlib.suppress(OSError):  # the client went away; nothing to tell it
            service._agent_session(ws, query)

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


def _agent_subprotocol(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Accept ``agent.v1`` when offered, and clients that offer no subprotocol."""
    return Subprotocol(AGENT_SUBPROTOCOL) if AGENT_SUBPROTOCOL in offered else None


class _WebSocket:
    """A server-side WebSocket: bytes between a blocking socket and a sans-I/O ServerProtocol."""

    def __init__(self, sock: socket.socket, rfile: Any, protocol: ServerProtocol) -> None:
        self.sock = sock
        self.rfile = rfile  # reads go through the handler's buffer, which may already hold bytes
        self.protocol = protocol
        self.pending: list[Frame] = []
        self.fragments: list[bytes] = []

    def flush(self) -> None:
        """Write what the protocol wants sent; an empty chunk means half-close."""
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)
            else:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)

    def send_json(self, doc: Any) -> None:
        """Send one text message holding JSON."""
        self.protocol.send_text(json.dumps(doc).encode())
        self.flush()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait for the client's answer."""
        self.protocol.send_close(code, reason)
        self.flush()
        while self.receive() is not None:
            pass

    def receive(self) -> bytes | None:
        """The next whole message from the client, or None once the connection is closed."""
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    self.fragments.append(bytes(frame.data))
                    if frame.fin:
                        message, self.fragments = b"".join(self.fragments), []
                        return message
            if self.protocol.state is State.CLOSED:
                return None
            try:
                data = self.rfile.read1(WS_READ_BYTES)
            except (OSError, ValueError):
                data = b""
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            self.flush()
            self.pending += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
            if not data and not self.pending:
                return None


def _load_orders_api() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(ORDERS_API, ORDERS_API_FILE, "exec"), namespace)
    # An mtime of None keeps linecache.checkcache from dropping the entry: tracebacks show the source lines.
    linecache.cache[ORDERS_API_FILE] = (len(ORDERS_API), None, ORDERS_API.splitlines(True), ORDERS_API_FILE)
    return namespace


_ORDERS_API_CODE = _load_orders_api()


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

    def __init__(self, mode: str = "healthy", token: str | None = None, log_path: str | Path | None = None,
                 revision: str = "", leaks: Sequence[str] = ()) -> None:
        self.mode = mode
        self.leaks = list(leaks)  # what mode "leaky" quotes
        self.token = token
        self.log_path = Path(log_path) if log_path is not None else None
        self.revision = revision  # the Cloud Run revision label of every line this service logs
        self.requests: list[tuple[str, str]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self._order_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._flaky_count = 0
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
                kwargs={"poll_interval": 0.005},  # shutdown() waits up to one interval
                daemon=True,
            )
            self._thread.start()
            self.log("INFO", f"listening on {self.url} (mode {self.mode})")
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

    def has_mode(self, name: str) -> bool:
        """Whether ``name`` is one of the ``+``-joined modes the service is in now."""
        return name in self.mode.split("+")

    def log(self, severity: str, message: str, **fields: Any) -> None:
        """Append one structured JSON line to the service's log (nothing without ``log_path``)."""
        if self.log_path is None:
            return
        # Imported on first use: importing the sample service (the demo's imports probe does) stays free of the log reader.
        from core.model import stamp

        with self._lock:  # the timestamp is taken under the lock so that file order is time order
            line: dict[str, Any] = {"timestamp": stamp(datetime.now(UTC)),
                                    "severity": severity, "message": message, **fields}
            if self.revision:
                line["logging.googleapis.com/labels"] = {"revision_name": self.revision}
            with self.log_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")

    def _log_request(self, method: str, path: str, status: int, seconds: float) -> None:
        # Cloud Run's request logs: ERROR for 5xx, WARNING for 4xx.
        severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
        url = f"{self.url}{path}" if self._server is not None else path
        self.log(severity, f"{method} {path} {status}", httpRequest={
            "requestMethod": method, "requestUrl": url, "status": status, "latency": f"{seconds:.6f}s"})

    def _log_exception(self, method: str, path: str) -> None:
        """Fail in the orders API and log the traceback as an unhandled-exception handler would."""
        try:
            _ORDERS_API_CODE["handle_request"]({"method": method, "path": path, "session": {}})
        except KeyError as exc:
            self.log("ERROR", f"Exception on {path} [{method}]\n" + "".join(traceback.format_exception(exc)).rstrip())

    def add_order(self, item: str) -> dict[str, Any]:
        """Store a new order and return it."""
        with self._lock:
            order = {"id": next(self._order_ids), "item": item}
            self.orders[str(order["id"])] = order
            return dict(order)

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        """One order by id, or None."""
        with self._lock:
            order = self.orders.get(order_id)
            return dict(order) if order else None

    def list_orders(self) -> list[dict[str, Any]]:
        """Every order, oldest first."""
        with self._lock:
            return [dict(o) for o in self.orders.values()]

    def delete_order(self, order_id: str) -> bool:
        """Delete an order; False when there was none."""
        with self._lock:
            return self.orders.pop(order_id, None) is not None

    def _think(self, ws: _WebSocket, seconds: float) -> bool:
        """Pause like a slow agent while still answering a close from the client; False when the session is over."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._stopping.is_set():
                return False
            readable, _, _ = select.select([ws.sock], [], [], min(left, 0.05))
            if readable and ws.receive() is None:
                return False
        return True

    def _agent_session(self, ws: _WebSocket, query: dict[str, str]) -> None:
        """After one prompt, stream the events of ``?mode=`` (see AGENT_MODES), then wait for the close."""
        mode = query.get("mode", "ok")
        prompt_message = ws.receive()
        if prompt_message is None:
            return
        try:
            prompt = json.loads(prompt_message).get("prompt", "")
        except (ValueError, AttributeError):
            prompt = prompt_message.decode(errors="replace")
        started = {"type": "agent_started"}
        thinking = {"type": "agent_thinking", "step": 1}
        completed = {"type": "agent_completed", "answer": f"echo: {prompt}", **({"leaks": self.leaks} if self.has_mode("leaky") else {})}
        if mode == "close-early":
            ws.send_json(started)
            ws.close(1001, "going away")
            return
        if mode == "error-mid":
            ws.send_json(started)
            ws.send_json({"type": "error", "message": "model unavailable"})
            ws.close(1011, "model unavailable")
            return
        if mode == "wrong-order":
            events = [started, completed, thinking]
        elif mode == "chatty":
            events = [{"type": "heartbeat"}, started, {"type": "token", "text": "ec"}, thinking, thinking, completed]
        else:
            events = [started, thinking, completed]
        pause_s = min(_int(query.get("ms"), DEFAULT_SLOW_MS), MAX_SLOW_MS) / 1000 if mode == "slow" else 0.0
        for event in events:
            if event is completed and pause_s and not self._think(ws, pause_s):
                return
            ws.send_json(event)
        while ws.receive() is not None:
            pass

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
