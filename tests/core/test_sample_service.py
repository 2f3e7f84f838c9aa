"""Routes of the bundled sample service, exercised over real loopback HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from core.sample_service import HEALTHY_BODY, SampleService


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
