"""A reverse proxy that enforces upload `ifGenerationMatch` for gcp-storage-emulator."""

from __future__ import annotations

import http.client
import json
import threading
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from tests.servers.loopback import Faults, LoopbackHandler, LoopbackServer

PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}
UPLOAD_PREFIX = "/upload/storage/v1/b/"


def error_json(status: int, message: str, reason: str) -> bytes:
    """Google-style JSON API error body."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"reason": reason, "message": message}],
        }
    }
    return json.dumps(body).encode()


def upload_target(
    path: str, query: dict[str, str], content_type: str, body: bytes
) -> tuple[str, str] | None:
    """Bucket and object name of an upload initiation request, or None when not one."""
    if not path.startswith(UPLOAD_PREFIX) or not path.endswith("/o"):
        return None
    bucket = path[len(UPLOAD_PREFIX) : -len("/o")]
    name = query.get("name") or _metadata(content_type, body).get("name")
    return (bucket, name) if name else None


def _metadata(content_type: str, body: bytes) -> dict[str, Any]:
    """Object metadata carried in a JSON or multipart/related upload body."""
    try:
        if content_type.startswith("application/json"):
            return dict(json.loads(body or b"{}"))
        if content_type.startswith("multipart/"):
            message = BytesParser().parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in message.walk():
                if part.get_content_type() == "application/json":
                    payload = part.get_payload(decode=True)
                    return dict(
                        json.loads(payload if isinstance(payload, bytes) else b"{}")
                    )
    except (ValueError, TypeError):
        pass
    return {}


class _Handler(LoopbackHandler["PreconditionProxy"]):
    def do_GET(self) -> None:
        """Forward the request."""
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _proxy(self) -> None:
        body = self.read_body()
        headers = [
            (k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
        ]
        status, out_headers, out_body = self.owner._handle(
            self.command, self.path, headers, body
        )
        length = str(len(out_body))
        self.send_response(status)
        for name, value in out_headers:
            if name.lower() == "content-length":
                length = value if self.command == "HEAD" else length
            elif name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out_body)


class PreconditionProxy(Faults, LoopbackServer):
    """Forwards to `upstream`; 412 when an upload's `ifGenerationMatch` fails. An injected failure never reaches
    upstream."""

    def __init__(self, upstream: str) -> None:
        super().__init__(_Handler, "precondition proxy")
        parts = urlsplit(upstream)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []  # every answer: upstream's, and the 412s the proxy gives itself
        self._sessions: dict[str, tuple[str, str, str]] = {}
        self._upload_lock = threading.Lock()

    def _handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            self.requests.append((method, target))
            self.bodies.append(body)
            failure = self._take_failure()
        json_headers = [("Content-Type", "application/json; charset=UTF-8")]
        if failure is not None:
            return (
                failure,
                json_headers,
                error_json(failure, f"injected failure {failure}", "backendError"),
            )
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        session = self._sessions.get(query.get("upload_id", ""))
        if session is None and "upload_id" not in query and method == "POST":
            found = upload_target(parts.path, query, content_type, body)
            if found is not None and "ifGenerationMatch" in query:
                session = (*found, query["ifGenerationMatch"])
        if session is None:
            # One request at a time, as GCS replaces an object atomically: the emulator writes an object's data and then
            # its metadata (the generation), and nothing may read or write in between.
            with self._upload_lock:
                return self._forward(method, target, headers, body)
        with self._upload_lock:
            if not self._holds(*session):
                with self._lock:
                    self.statuses.append(412)
                return (
                    412,
                    json_headers,
                    error_json(412, PRECONDITION_MESSAGE, "conditionNotMet"),
                )
            status, out_headers, out_body = self._forward(method, target, headers, body)
        location = next((v for k, v in out_headers if k.lower() == "location"), "")
        upload_id = parse_qs(urlsplit(location).query).get("upload_id", [""])[-1]
        with self._lock:
            if upload_id:
                self._sessions[upload_id] = session
            elif status in (200, 201):
                self._sessions.pop(query.get("upload_id", ""), None)
        return status, out_headers, out_body

    def _holds(self, bucket: str, name: str, expected: str) -> bool:
        status, _, body = self._forward(
            "GET",
            f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}",
            [],
            b"",
        )
        if status == 404:
            return expected == "0"
        generation = (
            json.loads(body or b"{}").get("generation") if status == 200 else None
        )
        return generation is not None and str(generation) == expected

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            if not any(k.lower() == "host" for k, _ in headers):
                conn.putheader("Host", f"{self._host}:{self._port}")
            for name, value in headers:
                if name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            with self._lock:
                self.statuses.append(response.status)
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()
