"""A hand-written fake of the Cloud Run Admin API v2 REST reads postdeploy makes."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

TRAFFIC_LATEST = 1
TRAFFIC_REVISION = 2
CONDITION_FAILED = 3
CONDITION_SUCCEEDED = 4
ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    405: "UNIMPLEMENTED",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_SEGMENT = r"([^/?]+)"
_SERVICES = re.compile(rf"/v2/projects/{_SEGMENT}/locations/{_SEGMENT}/services")
_SERVICE = re.compile(rf"{_SERVICES.pattern}/{_SEGMENT}")
_REVISIONS = re.compile(rf"{_SERVICE.pattern}/revisions")
_REVISION = re.compile(rf"{_REVISIONS.pattern}/{_SEGMENT}")

Json = dict[str, Any]


def error_body(status: int, message: str) -> Json:
    """Google-style error JSON for an HTTP status."""
    return {
        "error": {
            "code": status,
            "message": message,
            "status": ERROR_STATUS.get(status, "UNKNOWN"),
        }
    }


def ready_condition(ready: bool, message: str = "", when: str = "") -> Json:
    """A `Ready` condition in REST shape, succeeded or failed."""
    condition: Json = {
        "type": "Ready",
        "state": CONDITION_SUCCEEDED if ready else CONDITION_FAILED,
    }
    if message:
        condition["message"] = message
    if not ready:
        condition["reason"] = "ContainerFailed"
    if when:
        condition["lastTransitionTime"] = when
    return condition


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeCloudRun


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Answer a read call from the fake's state."""
        self._reply("GET")

    def do_POST(self) -> None:
        """Refuse a write: the fake is read-only."""
        self._reply("POST")

    def do_PATCH(self) -> None:
        """Refuse a write: the fake is read-only."""
        self._reply("PATCH")

    def do_DELETE(self) -> None:
        """Refuse a write: the fake is read-only."""
        self._reply("DELETE")

    def _reply(self, method: str) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.fake._handle(method, self.path)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeCloudRun:
    """Serves services and revisions as REST-shaped dicts that tests may mutate."""

    def __init__(self) -> None:
        self.services: dict[str, Json] = {}
        self.revisions: dict[str, Json] = {}
        self.requests: list[tuple[str, str]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def service_name(project: str, region: str, service: str) -> str:
        """Full resource name of a service."""
        return f"projects/{project}/locations/{region}/services/{service}"

    @classmethod
    def revision_name(cls, project: str, region: str, service: str, rev_id: str) -> str:
        """Full resource name of a revision; a full name passes through unchanged."""
        if rev_id.startswith("projects/"):
            return rev_id
        return f"{cls.service_name(project, region, service)}/revisions/{rev_id}"

    def add_service(
        self,
        project: str,
        region: str,
        name: str,
        *,
        uri: str,
        latest_created: str,
        latest_ready: str,
        traffic: list[Json],
    ) -> Json:
        """Store a service; revision arguments may be short ids or full names."""
        full = self.service_name(project, region, name)
        service: Json = {
            "name": full,
            "uid": f"uid-{name}",
            "generation": "1",
            "observedGeneration": "1",
            "uri": uri,
            "urls": [uri],
            "latestCreatedRevision": self.revision_name(
                project, region, name, latest_created
            ),
            "latestReadyRevision": self.revision_name(
                project, region, name, latest_ready
            ),
            "traffic": [{k: v for k, v in t.items() if k != "uri"} for t in traffic],
            "trafficStatuses": [dict(t) for t in traffic],
            "terminalCondition": ready_condition(True),
            "conditions": [],
            "reconciling": False,
            "ingress": 1,
        }
        with self._lock:
            self.services[full] = service
        return service

    def add_revision(
        self,
        project: str,
        region: str,
        service: str,
        rev_id: str,
        *,
        image: str,
        labels: dict[str, str] | None = None,
        create_time: str,
        ready: bool = True,
        ready_message: str = "",
    ) -> Json:
        """Store a revision of a service."""
        full = self.revision_name(project, region, service, rev_id)
        short = full.rsplit("/", 1)[1]
        revision: Json = {
            "name": full,
            "uid": f"uid-{short}",
            "generation": "1",
            "labels": dict(labels or {}),
            "createTime": create_time,
            "updateTime": create_time,
            "service": self.service_name(project, region, service),
            "scaling": {"maxInstanceCount": 100},
            "maxInstanceRequestConcurrency": 80,
            "timeout": "300s",
            "serviceAccount": "123456789-compute@developer.gserviceaccount.com",
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [{"name": "http1", "containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
                }
            ],
            "executionEnvironment": 2,
            "conditions": [
                ready_condition(ready, ready_message, create_time),
                {
                    "type": "ContainerHealthy",
                    "state": CONDITION_SUCCEEDED if ready else CONDITION_FAILED,
                },
            ],
            "observedGeneration": "1",
            "reconciling": False,
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={project}"
            f"&resource=cloud_run_revision/service_name/{service}/revision_name/{short}",
        }
        with self._lock:
            self.revisions[full] = revision
        return revision

    def service(self, project: str, region: str, name: str) -> Json:
        """The stored dict of a service, for tests to mutate."""
        return self.services[self.service_name(project, region, name)]

    def revision(self, project: str, region: str, service: str, rev_id: str) -> Json:
        """The stored dict of a revision, for tests to mutate."""
        return self.revisions[self.revision_name(project, region, service, rev_id)]

    def set_traffic(
        self, project: str, region: str, name: str, traffic: list[Json]
    ) -> None:
        """Replace a service's traffic split and traffic statuses."""
        with self._lock:
            service = self.service(project, region, name)
            service["traffic"] = [
                {k: v for k, v in t.items() if k != "uri"} for t in traffic
            ]
            service["trafficStatuses"] = [dict(t) for t in traffic]

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Make the next `n` requests fail with `status`."""
        with self._lock:
            self._failures.extend([status] * n)

    @property
    def endpoint(self) -> str:
        """Base URL to pass as `api_endpoint`."""
        if self._server is None:
            raise RuntimeError("fake Cloud Run is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Start serving and return the endpoint."""
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
            )
            self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        """Stop serving."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handle(self, method: str, target: str) -> tuple[int, Json]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, unquote(target)))
            if self._failures:
                status = self._failures.pop(0)
                return status, error_body(status, f"injected failure {status}")
            if method != "GET":
                return 405, error_body(
                    405, f"{method} {path} is not supported by the fake"
                )
            if m := _REVISION.fullmatch(path):
                name = self.revision_name(
                    m.group(1), m.group(2), m.group(3), m.group(4)
                )
                return self._get(self.revisions, name, "Revision")
            if m := _REVISIONS.fullmatch(path):
                parent = self.service_name(m.group(1), m.group(2), m.group(3))
                if parent not in self.services:
                    return 404, error_body(
                        404,
                        f"Resource '{m.group(3)}' of kind 'SERVICE' in region "
                        f"'{m.group(2)}' in project '{m.group(1)}' does not exist.",
                    )
                items = [r for r in self.revisions.values() if r["service"] == parent]
                return 200, _page("revisions", items, query)
            if m := _SERVICE.fullmatch(path):
                name = self.service_name(m.group(1), m.group(2), m.group(3))
                return self._get(self.services, name, "Service")
            if m := _SERVICES.fullmatch(path):
                prefix = self.service_name(m.group(1), m.group(2), "")
                items = [
                    s for name, s in self.services.items() if name.startswith(prefix)
                ]
                return 200, _page("services", items, query)
        return 404, error_body(404, f"Method not found: {path}")

    @staticmethod
    def _get(store: dict[str, Json], name: str, kind: str) -> tuple[int, Json]:
        if name in store:
            return 200, copy.deepcopy(store[name])
        _, project, _, region, *rest = name.split("/")
        return 404, error_body(
            404,
            f"Resource '{rest[-1]}' of kind '{kind.upper()}' in region '{region}' "
            f"in project '{project}' does not exist.",
        )

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


def _page(key: str, items: list[Json], query: dict[str, str]) -> Json:
    """One page of a list response, paged by `pageSize` and an offset `pageToken`."""
    start = int(query.get("pageToken") or 0)
    size = int(query.get("pageSize") or 0) or len(items) or 1
    body: Json = {key: copy.deepcopy(items[start : start + size])}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return body
