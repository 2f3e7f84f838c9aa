"""Cloud Tasks behind ``CloudTasksScheduler``: a follow-up check as an HTTP task that POSTs JSON to postdeploy's own
authenticated entry point at a given time, created once per check (a deterministic task id)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from core.errors import AccessDenied, ConfigError, PostdeployError, RequestRejected, Transient
from sources.gcp import MIN_TIMEOUT_S

QUEUE_ENV = "POSTDEPLOY_TASKS_QUEUE"
URL_ENV = "POSTDEPLOY_TASKS_URL"
SERVICE_ACCOUNT_ENV = "POSTDEPLOY_TASKS_SERVICE_ACCOUNT"
ENQUEUER_ROLE = "roles/cloudtasks.enqueuer"
ACT_AS_ROLE = "roles/iam.serviceAccountUser"
SCHEDULE_TIMEOUT_S = 30.0
MAX_TASK_ID_CHARS = 500
READABLE_PREFIX_CHARS = 200
HASH_HEX_CHARS = 16
QUEUE_NAME = re.compile(r"projects/([^/\s]+)/locations/([^/\s]+)/queues/([A-Za-z0-9-]{1,100})")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_]+")  # runs of anything else, '-' too, become one '-'


@dataclass(frozen=True)
class TaskSpec:
    """One follow-up call: its task id (deterministic per scheduled check), the JSON it POSTs, and when."""

    id: str
    body: dict[str, Any]
    at: datetime  # aware; sent as UTC


def task_id(*parts: str) -> str:
    """A valid task id that is the same for the same ``parts``: a short SHA-256 of them, then their readable letters.

    The hash comes first: Cloud Tasks spreads ids with distinct prefixes better than ids sharing a prefix."""
    # JSON keeps ("a-b", "c") and ("a", "b-c") apart, which joining the readable part does not.
    digest = hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).hexdigest()[:HASH_HEX_CHARS]
    readable = _NOT_ID_CHARS.sub("-", "-".join(parts)).strip("-")[:READABLE_PREFIX_CHARS].rstrip("-")
    return f"{digest}-{readable}" if readable else digest


def _problem(spec: TaskSpec) -> str:
    """Why the API would refuse ``spec`` as it stands, or nothing."""
    if not TASK_ID.fullmatch(spec.id):
        return f"expected a task id of 1–{MAX_TASK_ID_CHARS} letters, digits, '-' or '_', found {spec.id[:80]!r}"
    if spec.at.tzinfo is None or spec.at.utcoffset() is None:
        return f"expected an aware datetime for the task's time, found naive {spec.at.isoformat()}"
    return ""


class CloudTasksScheduler:
    """Schedules TaskSpecs on one Cloud Tasks queue as HTTP POSTs to ``url`` (google-cloud-tasks, gRPC)."""

    def __init__(self, queue: str, url: str, service_account: str = "", client: Any = None) -> None:
        self.queue = queue
        self.url = url
        self.service_account = service_account  # the OIDC token's account; empty: no token (the emulator sends none)
        self._client = client
        self._client_lock = threading.Lock()

    def _tasks(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from sources.gcp import tasks_client

                self._client = tasks_client()
            return self._client

    def _request(self, task: TaskSpec) -> Any:
        """The CreateTaskRequest for ``task`` (RequestRejected when the API would refuse it anyway)."""
        from google.cloud import tasks_v2

        problem = _problem(task)
        try:
            body = json.dumps(task.body, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            problem = problem or f"expected a JSON body, found {type(exc).__name__}: {exc}"
        if problem:
            raise RequestRejected(f"task for {self.queue}: {problem}")
        http = tasks_v2.HttpRequest(url=self.url, http_method=tasks_v2.HttpMethod.POST,
                                    headers={"Content-Type": "application/json"}, body=body)
        if self.service_account:
            http.oidc_token = tasks_v2.OidcToken(service_account_email=self.service_account, audience=self.url)
        return tasks_v2.CreateTaskRequest(parent=self.queue, task=tasks_v2.Task(
            name=f"{self.queue}/tasks/{task.id}", http_request=http, schedule_time=task.at.astimezone(UTC)))

    def schedule(self, task: TaskSpec, timeout_s: float = SCHEDULE_TIMEOUT_S) -> str:
        """Create the task once: ``scheduled NAME``, or ``already scheduled NAME`` when a task of that id exists.

        One call bounded by ``timeout_s``, never retried here (a redelivery retries, and then finds the task if the
        first call landed). UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED and an unreachable API are
        Transient; PERMISSION_DENIED and UNAUTHENTICATED AccessDenied with the roles to grant; a missing queue and an
        invalid request PostdeployError.
        """
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        request = self._request(task)
        name = request.task.name
        try:
            created = self._tasks().create_task(request=request, retry=None, timeout=max(timeout_s, MIN_TIMEOUT_S))
        except gexc.AlreadyExists:  # Cloud Tasks keeps a task's id for about an hour after it ran, too
            return f"already scheduled {name}"
        except (gexc.Forbidden, gexc.Unauthorized) as exc:  # gRPC answers PermissionDenied / Unauthenticated
            raise AccessDenied(f"permission denied creating a task in {self.queue} ({exc.message})",
                               fix=self._access_fix()) from exc
        except (gexc.NotFound, gexc.FailedPrecondition) as exc:
            raise PostdeployError(f"expected Cloud Tasks queue {self.queue} to exist and accept tasks, found "
                                  f"{exc.grpc_status_code.name if exc.grpc_status_code else exc.code}: {exc.message}",
                                  fix=self._queue_fix()) from exc
        except gexc.BadRequest as exc:  # 400 INVALID_ARGUMENT: the same request would be refused again
            raise RequestRejected(f"Cloud Tasks refused task {name} as invalid: expected an HTTP task to {self.url} at "
                                  f"{task.at.isoformat()}, found the API saying: {exc.message}") from exc
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:  # DEADLINE_EXCEEDED is a 504
            raise Transient(f"Cloud Tasks failed creating a task in {self.queue}: {exc}") from exc
        except (ConnectionError, TimeoutError, OSError, auth_exc.TransportError) as exc:
            raise Transient(f"Cloud Tasks unreachable creating a task in {self.queue}: {exc}") from exc
        except gexc.GoogleAPICallError as exc:  # ABORTED, CANCELLED, …: said, never an unexpected error that loses the report
            raise PostdeployError(f"expected Cloud Tasks to create task {name} in {self.queue}, found "
                                  f"{exc.grpc_status_code.name if exc.grpc_status_code else exc.code}: {exc.message}",
                                  fix=self._queue_fix()) from exc
        return f"scheduled {created.name or name}"

    def _access_fix(self) -> str:
        fix = f"grant postdeploy's service account {ENQUEUER_ROLE} on the queue {self.queue}"
        if self.service_account:
            fix += f", and {ACT_AS_ROLE} on {self.service_account} (the account the task's OIDC token is minted for)"
        return fix

    def _queue_fix(self) -> str:
        match = QUEUE_NAME.fullmatch(self.queue)
        if not match:
            return f"set {QUEUE_ENV} to projects/P/locations/L/queues/Q"
        project, location, queue = match.groups()
        return (f"create or resume it: gcloud tasks queues create {queue} --location={location} --project={project}, "
                f"or set {QUEUE_ENV} to a queue that exists")


def from_env() -> CloudTasksScheduler | None:
    """The scheduler the deployment configures, or None when POSTDEPLOY_TASKS_QUEUE is unset; ConfigError if invalid."""
    queue = os.environ.get(QUEUE_ENV, "").strip()
    if not queue:
        return None
    url = os.environ.get(URL_ENV, "").strip()
    account = os.environ.get(SERVICE_ACCOUNT_ENV, "").strip()
    problems = []
    if not QUEUE_NAME.fullmatch(queue):
        problems.append(f"{QUEUE_ENV}: expected projects/P/locations/L/queues/Q, found {queue!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{URL_ENV}: expected the http(s) URL of the entry point tasks call, "
                        f"found {repr(url) if url else 'nothing'}")
    if account and "@" not in account:
        problems.append(f"{SERVICE_ACCOUNT_ENV}: expected a service account email, found {account!r}")
    if problems:
        raise ConfigError("environment", problems)
    return CloudTasksScheduler(queue, url, account)
