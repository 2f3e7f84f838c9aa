"""Routes of the bundled sample service, exercised over real loopback HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from checks import logs
from demo.sample_service import HEALTHY_BODY, SampleService
from sources.log_entries import FileLogSource


@pytest.fixture
def service() -> Iterator[SampleService]:
    with SampleService(token="s3cret") as running:
        yield running


@pytest.fixture
def client(service: SampleService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=5) as http:
        yield http


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        pytest.param("/", 200, "sample service", id="root"),
        pytest.param("/ok", 200, "ok", id="ok"),
        pytest.param("/status/503", 503, "status 503", id="status-code"),
        pytest.param("/status/418?body=teapot", 418, "teapot", id="status-with-body"),
        pytest.param(
            "/json?body=%7B%22a%22%3A%201%7D", 200, '{"a": 1}', id="json-echo"
        ),
        pytest.param("/json?body=%7Bnot-json", 200, "{not-json", id="json-invalid"),
        pytest.param("/status/abc", 404, "not found", id="status-not-a-number"),
        pytest.param("/nope", 404, "not found", id="unknown"),
    ],
)
def test_simple_routes(client: httpx.Client, path: str, status: int, body: str) -> None:
    response = client.get(path)
    assert (response.status_code, response.text) == (status, body)


def test_health_follows_mode_changes(
    service: SampleService, client: httpx.Client
) -> None:
    healthy = client.get("/health")
    service.mode = "broken"
    broken = client.get("/health")
    assert (healthy.status_code, healthy.json()) == (200, HEALTHY_BODY)
    assert (broken.status_code, broken.json()["checks"]) == (503, {"db": "timeout"})


@pytest.mark.parametrize(
    ("path", "location"),
    [
        pytest.param("/redirect-local", "/ok", id="local"),
        pytest.param(
            "/redirect?to=http://example.invalid/x",
            "http://example.invalid/x",
            id="external",
        ),
    ],
)
def test_redirects_are_not_followed_by_the_server(
    client: httpx.Client, path: str, location: str
) -> None:
    response = client.get(path)
    assert (response.status_code, response.headers["location"]) == (302, location)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Authorization": "Bearer s3cret"}, 200, id="right-token"),
        pytest.param({"Authorization": "Bearer wrong"}, 401, id="wrong-token"),
        pytest.param({}, 401, id="no-token"),
    ],
)
def test_private_requires_the_configured_token(
    client: httpx.Client, headers: dict[str, str], status: int
) -> None:
    assert client.get("/private", headers=headers).status_code == status


def test_slow_delays_and_times_out(client: httpx.Client) -> None:
    started = time.monotonic()
    assert client.get("/slow?ms=200").text == "slow"
    assert time.monotonic() - started >= 0.2
    with pytest.raises(httpx.ReadTimeout):
        client.get("/slow?ms=3000", timeout=0.2)


def test_drop_closes_without_a_response(client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/drop")


def test_huge_streams_the_announced_length(client: httpx.Client) -> None:
    with client.stream("GET", "/huge?bytes=1000000") as response:
        received = sum(len(chunk) for chunk in response.iter_bytes())
        assert response.headers["content-length"] == "1000000"
    assert received == 1_000_000


def test_requests_are_recorded(service: SampleService, client: httpx.Client) -> None:
    client.get("/ok")
    client.post("/ok")
    assert service.requests == [("GET", "/ok"), ("POST", "/ok")]


def test_stop_is_prompt_with_a_slow_request_in_flight(service: SampleService) -> None:
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.get(f"{service.url}/slow?ms=10000", timeout=15)
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not service.requests:
        time.sleep(0.01)
    started = time.monotonic()
    service.stop()
    caller.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not caller.is_alive() and errors


def test_stop_cuts_kept_alive_connections(
    service: SampleService, client: httpx.Client
) -> None:
    assert client.get("/ok").status_code == 200
    service.stop()
    with pytest.raises(httpx.TransportError):
        client.get("/ok")


def test_log_has_one_structured_line_per_request(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with SampleService(log_path=log, revision="sample-00002-new") as running, \
            httpx.Client(base_url=running.url, timeout=5) as http:
        http.get("/ok")
        http.get("/status/404")
        http.get("/status/503")
        http.post("/orders", json={"item": "book"})
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["message"].startswith("listening on http://127.0.0.1:")
    assert [(ln["severity"], ln["httpRequest"]["requestMethod"], urlsplit(ln["httpRequest"]["requestUrl"]).path,
             ln["httpRequest"]["status"]) for ln in lines[1:]] == [
        ("INFO", "GET", "/ok", 200), ("WARNING", "GET", "/status/404", 404), ("ERROR", "GET", "/status/503", 503),
        ("INFO", "POST", "/orders", 201)]
    assert all(ln["logging.googleapis.com/labels"] == {"revision_name": "sample-00002-new"} for ln in lines)
    assert all(ln["httpRequest"]["latency"].endswith("s") for ln in lines[1:])
    entries = FileLogSource(log).read()
    assert [e.revision for e in entries] == ["sample-00002-new"] * 5
    assert [e.http_status for e in entries] == [None, 200, 404, 503, 201]
    assert [e.timestamp for e in entries] == sorted(e.timestamp for e in entries if e.timestamp)


def test_raising_mode_answers_but_logs_a_new_traceback(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with SampleService(log_path=log) as running, httpx.Client(base_url=running.url, timeout=5) as http:
        before = http.get("/orders")
        running.mode = "raising"
        after = http.get("/orders")
    assert (before.status_code, after.status_code) == (200, 200)
    entries = FileLogSource(log).read()
    assert [(e.severity, e.http_status) for e in entries] == [("INFO", None), ("INFO", 200), ("ERROR", None), ("INFO", 200)]
    failure = entries[2]
    assert failure.text.startswith("Exception on /orders [GET]\nTraceback (most recent call last):\n")
    assert 'File "/app/orders/api.py", line 7, in load_customer\n    return request["session"]["customer_id"]' in failure.text
    assert failure.text.endswith("KeyError: 'customer_id'")
    assert logs.signature_of(failure) == ("KeyError at orders/api.py load_customer", "KeyError at orders/api.py:7 load_customer")


@pytest.mark.parametrize(
    ("mode", "health", "create", "tracebacks"),
    [
        pytest.param("healthy", 200, 201, 0, id="healthy"),
        pytest.param("broken", 503, 500, 0, id="broken"),
        pytest.param("raising", 200, 201, 2, id="raising"),
        pytest.param("broken+raising", 503, 500, 2, id="broken-and-raising"),
    ],
)
def test_modes_combine(tmp_path: Path, mode: str, health: int, create: int, tracebacks: int) -> None:
    log = tmp_path / "service.log"
    with SampleService(mode=mode, log_path=log) as running, httpx.Client(base_url=running.url, timeout=5) as http:
        statuses = (http.get("/health").status_code, http.post("/orders", json={"item": "x"}).status_code)
    assert statuses == (health, create)
    assert sum("Traceback" in e.text for e in FileLogSource(log).read()) == tracebacks


LEAKS = ["one password=p4ss-w0rd", "two\nlines"]


def test_leaky_mode_quotes_its_leaks_in_health_garbled_the_agent_and_its_log(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    log = tmp_path / "service.log"
    with SampleService(mode="leaky", log_path=log, leaks=LEAKS) as running, httpx.Client(base_url=running.url, timeout=5) as http:
        health = http.get("/health", headers={"X-Echo": "sent-value"})
        with pytest.raises(httpx.RemoteProtocolError) as garbled:
            http.get("/garbled")
        with connect(running.url.replace("http", "ws") + "/ws/agent", open_timeout=5) as ws:
            ws.send(json.dumps({"prompt": "hi"}))
            events = [json.loads(ws.recv(timeout=5)) for _ in range(3)]
    assert (health.status_code, health.json()) == (200, {**HEALTHY_BODY, "leaks": LEAKS})
    assert "HTTP/1.1 OK one password=p4ss-w0rd')" in str(garbled.value)  # one-line leaks only: a status line is one line
    assert events[-1] == {"type": "agent_completed", "answer": "echo: hi", "leaks": LEAKS}
    texts = [e.text for e in FileLogSource(log).read()]
    assert any(t.startswith("GET /health with headers ") and "X-Echo: sent-value" in t for t in texts)
    assert [t for t in texts if t.startswith("leaked ")] == [f"leaked {leak}" for leak in LEAKS] * 3  # per HTTP request


def test_other_modes_leak_nothing(client: httpx.Client) -> None:
    assert "leaks" not in client.get("/health").json()
    with pytest.raises(httpx.RemoteProtocolError, match=r"HTTP/1\.1 OK garbled"):
        client.get("/garbled")
