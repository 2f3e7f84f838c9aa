"""sources/tasks.py: HTTP tasks on the real Cloud Tasks emulator (loopback), the API's answers mapped to our errors
(a small fake client where the emulator cannot answer so), task ids and the environment."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from core.errors import AccessDenied, ConfigError, PostdeployError, RequestRejected, Transient
from sources.gcp import TASKS_EMULATOR_ENV
from sources.tasks import QUEUE_ENV, SERVICE_ACCOUNT_ENV, URL_ENV, CloudTasksScheduler, TaskSpec, from_env, task_id
from tests.servers.loopback import LoopbackHandler, LoopbackServer
from tests.servers.processes import free_port

QUEUE = "projects/acme-prod/locations/us-central1/queues/postdeploy-checks"
URL = "https://postdeploy-checks-abc123-uc.a.run.app/followup"
ACCOUNT = "postdeploy@acme-prod.iam.gserviceaccount.com"
BODY = {"service": "orders", "build_id": "b-1", "step": 2}
LEAD_S = 2.0  # how far ahead the emulator tests schedule
EARLY_TOLERANCE_S = 0.25  # clocks: the emulator compares the task's time with its own UTC now
DELIVERY_WAIT_S = 20.0  # bound on waiting for the emulator's POST, far above the ~LEAD_S it takes


@pytest.fixture(autouse=True)
def no_tasks_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a developer's Cloud Tasks settings."""
    for name in (QUEUE_ENV, URL_ENV, SERVICE_ACCOUNT_ENV, TASKS_EMULATOR_ENV):
        monkeypatch.delenv(name, raising=False)


class _Handler(LoopbackHandler["Receiver"]):
    def do_POST(self) -> None:
        """Record the call and answer 204."""
        self.owner.record(self.path, {k.lower(): v for k, v in self.headers.items()}, self.read_body())
        self.send_bytes(204, b"", {})


class Receiver(LoopbackServer):
    """The HTTP entry point the tasks call: records each POST (header names lower-cased) with the wall-clock time it
    arrived."""

    def __init__(self) -> None:
        super().__init__(_Handler, "tasks receiver")
        self.calls: list[tuple[float, str, dict[str, str], bytes]] = []
        self._cond = threading.Condition()

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._cond:
            self.calls.append((time.time(), path, headers, body))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` calls came; whether they did."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= n, timeout)


@pytest.fixture
def receiver() -> Any:
    with Receiver() as server:
        yield server


class FakeTasks:
    """A CloudTasksClient stand-in: keeps the requests it got and answers with the scripted errors, one per call;
    a task name it holds already is ALREADY_EXISTS, as Cloud Tasks answers (the emulator does not)."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.requests: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self.created: list[str] = []

    def create_task(self, request: Any, retry: Any = None, timeout: float | None = None) -> Any:
        from google.cloud import tasks_v2

        self.requests.append(request)
        self.calls.append({"retry": retry, "timeout": timeout})
        if self.errors:
            raise self.errors.pop(0)
        if request.task.name in self.created:
            raise gexc.AlreadyExists(f"Requested entity already exists: {request.task.name}")
        self.created.append(request.task.name)
        return tasks_v2.Task(name=request.task.name)


def soon(seconds: float = LEAD_S) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- on the emulator ------------------------------------------------------------------------------------------

def test_the_emulator_posts_the_body_at_the_scheduled_time(tasks_queue: str, receiver: Receiver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(QUEUE_ENV, tasks_queue)
    monkeypatch.setenv(URL_ENV, f"{receiver.base_url}/followup")
    scheduler = from_env()
    assert scheduler is not None
    spec = TaskSpec(id=task_id("orders", "b-1", "step-2"), body=BODY, at=soon())

    outcome = scheduler.schedule(spec)

    assert outcome == f"scheduled {tasks_queue}/tasks/{spec.id}"
    assert receiver.wait_for(1, DELIVERY_WAIT_S), f"no POST within {DELIVERY_WAIT_S} s of scheduling {spec.id}"
    arrived, path, headers, raw = receiver.calls[0]
    assert arrived >= spec.at.timestamp() - EARLY_TOLERANCE_S, "the task was called before its time"
    assert (path, json.loads(raw)) == ("/followup", BODY)
    assert headers["content-type"] == "application/json"
    assert headers["x-cloudtasks-taskname"] == spec.id
    assert headers["x-cloudtasks-queuename"] == tasks_queue
    assert "authorization" not in headers  # no service account: no OIDC token (the emulator sends none anyway)


def test_an_aware_time_in_another_zone_is_the_same_instant(tasks_queue: str, receiver: Receiver) -> None:
    at = soon().astimezone(timezone(timedelta(hours=-5)))
    scheduler = CloudTasksScheduler(tasks_queue, f"{receiver.base_url}/followup")

    scheduler.schedule(TaskSpec(id="zoned", body={"n": 1}, at=at))

    assert receiver.wait_for(1, DELIVERY_WAIT_S)
    assert receiver.calls[0][0] >= at.timestamp() - EARLY_TOLERANCE_S


def test_a_missing_queue_is_our_error_naming_it(tasks_queue: str) -> None:
    missing = tasks_queue.rsplit("/", 1)[0] + "/never-created"
    scheduler = CloudTasksScheduler(missing, "http://127.0.0.1:9/followup")

    with pytest.raises(PostdeployError) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()))

    assert not isinstance(caught.value, Transient | AccessDenied)
    assert f"expected Cloud Tasks queue {missing} to exist" in str(caught.value)
    assert "gcloud tasks queues create never-created --location=us-central1 --project=test" in caught.value.fix


def test_an_unreachable_api_is_transient_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TASKS_EMULATOR_ENV, f"127.0.0.1:{free_port()}")  # nothing listens there
    scheduler = CloudTasksScheduler(QUEUE, URL)
    timeout_s = 5.0

    started = time.monotonic()
    with pytest.raises(Transient) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()), timeout_s=timeout_s)

    assert time.monotonic() - started < timeout_s + 2.0
    assert QUEUE in str(caught.value)
    assert isinstance(caught.value.__cause__, gexc.GoogleAPICallError)


# --- the API's answers, from a fake client ---------------------------------------------------------------------

def test_scheduling_the_same_check_twice_is_already_scheduled() -> None:
    fake = FakeTasks()
    scheduler = CloudTasksScheduler(QUEUE, URL, client=fake)
    spec = TaskSpec(id=task_id("orders", "b-1", "step-2"), body=BODY, at=soon(60))

    first, second = scheduler.schedule(spec), scheduler.schedule(spec)

    name = f"{QUEUE}/tasks/{spec.id}"
    assert (first, second) == (f"scheduled {name}", f"already scheduled {name}")
    assert fake.created == [name]
    assert [r.task.name for r in fake.requests] == [name, name]


TRANSIENT = [
    pytest.param(gexc.ServiceUnavailable("connection refused"), id="UNAVAILABLE"),
    pytest.param(gexc.DeadlineExceeded("deadline"), id="DEADLINE_EXCEEDED"),
    pytest.param(gexc.InternalServerError("oops"), id="INTERNAL"),
    pytest.param(gexc.ResourceExhausted("quota"), id="RESOURCE_EXHAUSTED"),
    pytest.param(gexc.RetryError("gave up", cause=None), id="retry-error"),
    pytest.param(ConnectionResetError("reset by peer"), id="connection-reset"),
]


@pytest.mark.parametrize("error", TRANSIENT)
def test_outages_are_transient_naming_the_queue(error: Exception) -> None:
    scheduler = CloudTasksScheduler(QUEUE, URL, client=FakeTasks(error))

    with pytest.raises(Transient, match=QUEUE) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()))

    assert caught.value.__cause__ is error


@pytest.mark.parametrize("error", [
    pytest.param(gexc.PermissionDenied("cloudtasks.tasks.create denied"), id="PERMISSION_DENIED"),
    pytest.param(gexc.Unauthenticated("no token"), id="UNAUTHENTICATED"),
])
def test_a_refusal_is_access_denied_with_the_roles_to_grant(error: Exception) -> None:
    scheduler = CloudTasksScheduler(QUEUE, URL, service_account=ACCOUNT, client=FakeTasks(error))

    with pytest.raises(AccessDenied, match=QUEUE) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()))

    assert f"roles/cloudtasks.enqueuer on the queue {QUEUE}" in caught.value.fix
    assert f"roles/iam.serviceAccountUser on {ACCOUNT}" in caught.value.fix
    assert not isinstance(caught.value, Transient)


def test_without_a_token_account_the_fix_asks_only_for_the_enqueuer_role() -> None:
    scheduler = CloudTasksScheduler(QUEUE, URL, client=FakeTasks(gexc.PermissionDenied("denied")))

    with pytest.raises(AccessDenied) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()))

    assert "roles/cloudtasks.enqueuer" in caught.value.fix
    assert "serviceAccountUser" not in caught.value.fix


def test_a_queue_the_api_does_not_find_is_our_error_with_the_command_to_create_it() -> None:
    scheduler = CloudTasksScheduler(QUEUE, URL, client=FakeTasks(gexc.NotFound("Requested entity was not found.")))

    with pytest.raises(PostdeployError) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=soon()))

    assert not isinstance(caught.value, Transient | AccessDenied)
    assert str(caught.value) == (f"expected Cloud Tasks queue {QUEUE} to exist and accept tasks, found NOT_FOUND: "
                                 "Requested entity was not found.")
    assert caught.value.fix.startswith("create or resume it: gcloud tasks queues create postdeploy-checks "
                                       "--location=us-central1 --project=acme-prod")


def test_an_invalid_argument_says_what_was_sent_and_what_the_api_said() -> None:
    at = soon(60)
    error = gexc.InvalidArgument("Task.scheduleTime is too far in the future")
    scheduler = CloudTasksScheduler(QUEUE, URL, client=FakeTasks(error))

    with pytest.raises(RequestRejected) as caught:
        scheduler.schedule(TaskSpec(id="x", body={}, at=at))

    assert str(caught.value) == (f"Cloud Tasks refused task {QUEUE}/tasks/x as invalid: expected an HTTP task to {URL} "
                                 f"at {at.isoformat()}, found the API saying: Task.scheduleTime is too far in the future")


@pytest.mark.parametrize("spec, expected", [
    pytest.param(TaskSpec(id="a/b", body={}, at=datetime(2026, 12, 1, tzinfo=UTC)), "found 'a/b'", id="slash-in-id"),
    pytest.param(TaskSpec(id="", body={}, at=datetime(2026, 12, 1, tzinfo=UTC)), "found ''", id="empty-id"),
    pytest.param(TaskSpec(id="x" * 501, body={}, at=datetime(2026, 12, 1, tzinfo=UTC)), "1–500 letters", id="long-id"),
    pytest.param(TaskSpec(id="x", body={}, at=datetime(2026, 12, 1)), "found naive 2026-12-01T00:00:00", id="naive-time"),
    pytest.param(TaskSpec(id="x", body={"at": datetime(2026, 12, 1)}, at=datetime(2026, 12, 1, tzinfo=UTC)),
                 "expected a JSON body, found TypeError", id="body-not-json"),
])
def test_a_task_the_api_would_refuse_is_refused_before_sending(spec: TaskSpec, expected: str) -> None:
    fake = FakeTasks()

    with pytest.raises(RequestRejected, match=QUEUE) as caught:
        CloudTasksScheduler(QUEUE, URL, client=fake).schedule(spec)

    assert expected in str(caught.value)
    assert fake.requests == []


# --- the request ----------------------------------------------------------------------------------------------

def test_the_request_carries_an_oidc_token_for_the_account_with_the_url_as_audience() -> None:
    fake = FakeTasks()
    at = datetime(2026, 12, 1, 16, 30, 5, 250000, tzinfo=timezone(timedelta(hours=1)))

    CloudTasksScheduler(QUEUE, URL, service_account=ACCOUNT, client=fake).schedule(TaskSpec(id="t-1", body=BODY, at=at),
                                                                                  timeout_s=7.5)

    [request] = fake.requests
    http = request.task.http_request
    assert (request.parent, request.task.name) == (QUEUE, f"{QUEUE}/tasks/t-1")
    assert (http.oidc_token.service_account_email, http.oidc_token.audience) == (ACCOUNT, URL)
    assert (http.url, http.http_method.name, dict(http.headers)) == (URL, "POST", {"Content-Type": "application/json"})
    assert json.loads(http.body) == BODY
    assert request.task.schedule_time == datetime(2026, 12, 1, 15, 30, 5, 250000, tzinfo=UTC)
    assert fake.calls == [{"retry": None, "timeout": 7.5}]  # one attempt, bounded: a redelivery is the retry


def test_without_an_account_the_request_carries_no_token() -> None:
    fake = FakeTasks()

    CloudTasksScheduler(QUEUE, URL, client=fake).schedule(TaskSpec(id="t-1", body=BODY, at=soon()))

    http = fake.requests[0].task.http_request
    assert "oidc_token" not in http
    assert "oauth_token" not in http


# --- task ids -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("parts, prefix", [
    pytest.param(("orders", "b7e1c2d4-0a5f-4e1b-9c3d-2f6a8b0c1d2e", "step-2"),
                 "orders-b7e1c2d4-0a5f-4e1b-9c3d-2f6a8b0c1d2e-step-2-", id="service-build-step"),
    pytest.param(("orders api", "v1.2/3", "ünïcode"), "orders-api-v1-2-3-n-code-", id="odd-characters"),
    pytest.param(("a--b", "-c-"), "a-b-c-", id="dashes-collapse"),
    pytest.param(("///",), "", id="nothing-readable"),
    pytest.param(("x" * 2000, "y"), "x" * 200 + "-", id="long"),
])
def test_task_ids_are_valid_readable_and_deterministic(parts: tuple[str, ...], prefix: str) -> None:
    made = task_id(*parts)

    readable = prefix.removesuffix("-")
    assert made == task_id(*parts)
    assert made.endswith(f"-{readable}" if readable else "")
    assert len(made) == 16 + (len(readable) + 1 if readable else 0) and len(made) <= 500
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in made)
    assert made[:16].isalnum()


@pytest.mark.parametrize("a, b", [
    pytest.param(("orders", "b-1", "step-2"), ("orders", "b-1", "step-3"), id="another-step"),
    pytest.param(("a-b", "c"), ("a", "b-c"), id="same-letters-split-differently"),
    pytest.param(("orders api",), ("orders-api",), id="same-readable-prefix"),
])
def test_different_checks_get_different_ids(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    assert task_id(*a) != task_id(*b)


# --- the environment ------------------------------------------------------------------------------------------

def test_without_a_queue_nothing_is_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, URL)
    assert from_env() is None
    monkeypatch.setenv(QUEUE_ENV, "  ")
    assert from_env() is None


def test_the_environment_makes_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(QUEUE_ENV, QUEUE)
    monkeypatch.setenv(URL_ENV, URL)
    monkeypatch.setenv(SERVICE_ACCOUNT_ENV, ACCOUNT)

    scheduler = from_env()

    assert scheduler is not None
    assert (scheduler.queue, scheduler.url, scheduler.service_account) == (QUEUE, URL, ACCOUNT)


@pytest.mark.parametrize("env, problems", [
    pytest.param({QUEUE_ENV: "postdeploy-checks", URL_ENV: URL},
                 [f"{QUEUE_ENV}: expected projects/P/locations/L/queues/Q, found 'postdeploy-checks'"], id="short-queue"),
    pytest.param({QUEUE_ENV: QUEUE + "/tasks/t"}, [
        f"{QUEUE_ENV}: expected projects/P/locations/L/queues/Q, found '{QUEUE}/tasks/t'",
        f"{URL_ENV}: expected the http(s) URL of the entry point tasks call, found nothing"], id="task-name-no-url"),
    pytest.param({QUEUE_ENV: QUEUE}, [f"{URL_ENV}: expected the http(s) URL of the entry point tasks call, found nothing"],
                 id="no-url"),
    pytest.param({QUEUE_ENV: QUEUE, URL_ENV: "ftp://example.com/x"},
                 [f"{URL_ENV}: expected the http(s) URL of the entry point tasks call, found 'ftp://example.com/x'"],
                 id="ftp-url"),
    pytest.param({QUEUE_ENV: QUEUE, URL_ENV: "postdeploy-checks.run.app/followup"},
                 [f"{URL_ENV}: expected the http(s) URL of the entry point tasks call, "
                  "found 'postdeploy-checks.run.app/followup'"], id="url-without-scheme"),
    pytest.param({QUEUE_ENV: QUEUE, URL_ENV: URL, SERVICE_ACCOUNT_ENV: "postdeploy"},
                 [f"{SERVICE_ACCOUNT_ENV}: expected a service account email, found 'postdeploy'"], id="account-not-email"),
])
def test_a_bad_environment_is_a_config_error_saying_expected_and_found(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problems: list[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as caught:
        from_env()

    assert (caught.value.source, caught.value.problems) == ("environment", problems)


def test_any_other_api_error_is_said_not_raised_as_a_surprise() -> None:
    class Aborting:
        def create_task(self, **kwargs: Any) -> Any:
            raise gexc.Aborted("the queue is being modified")

    scheduler = CloudTasksScheduler(QUEUE, URL, client=Aborting())
    with pytest.raises(PostdeployError, match=r"^expected Cloud Tasks to create task .* found ABORTED: the queue is being"):
        scheduler.schedule(TaskSpec(id="t-1", body={}, at=datetime.now(UTC)))
