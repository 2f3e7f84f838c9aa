"""smoke against the real sample service on loopback: CRUD paths, the agent WebSocket, secrets and verdicts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from checks import smoke
from core.golden import PathConfig, PathOutcome, Session, StepOutcome
from core.model import CheckContext, CheckResult, NotMeasured, ServiceInfo, Status, Target
from core.sample_service import SampleService

TOKEN = "test-id-token"  # what the `sample` fixture accepts on /private and /ws/private
AGENT_EVENTS = ["agent_started", "agent_thinking", "agent_completed"]
PROMPT = [{"json": {"prompt": "hi"}}]

# The shape documented for users; run here so that the example cannot drift from the code.
EXAMPLE = """
paths:
  - name: create-order
    critical: true
    steps:
      - http: {name: create, method: POST, path: /orders, json: {item: "book"}, expect_status: [201],
               expect_json: ["id exists", 'item == "book"'], latency_budget_ms: 800,
               capture: {order_id: id}}
      - http: {name: read, method: GET, path: "/orders/${steps.create.order_id}", expect_status: [200]}
      - http: {name: list, path: /orders, expect_json: ["items.length >= 1"]}
  - name: agent-stream
    steps:
      - websocket: {name: chat, path: /ws/private, subprotocol: agent.v1, headers: {Authorization: "Bearer ${env:AGENT_TOKEN}"},
                    send: [{json: {prompt: "hi"}}], expect_events: [agent_started, agent_thinking, agent_completed],
                    event_field: type, expect: ['type == "agent_completed"'], timeout_s: 5}
"""


def run_smoke(url: str, paths: list[dict[str, Any]], *, token_source: Callable[[str], str] | None = None,
              secrets: Callable[[str], str] | None = None, deadline_in_s: float | None = None, cloud_run: bool = False,
              **settings: Any) -> CheckResult:
    """One smoke run over ``url``; ``cloud_run``: the URL is one the Cloud Run API returned (ID tokens may help)."""
    service = ServiceInfo("sample", "acme-prod", "us-central1", uri=url) if cloud_run else None

    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + deadline_in_s if deadline_in_s else 0.0
            ctx = CheckContext(http=http, token_source=token_source, secrets=secrets, deadline=deadline)
            config = smoke.Config.model_validate({"paths": paths, **settings})
            return await smoke.run(Target(service="sample", url=url, service_info=service), config, ctx)

    return asyncio.run(go())


def path(name: str, *steps: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"name": name, "steps": list(steps), **settings}


def http(path: str, **settings: Any) -> dict[str, Any]:
    return {"http": {"path": path, **settings}}


def ws(path: str = "/ws/agent", **settings: Any) -> dict[str, Any]:
    return {"websocket": {"path": path, "send": PROMPT, "expect_events": AGENT_EVENTS, "timeout_s": 3, **settings}}


def evidence(result: CheckResult, what_part: str) -> list[Any]:
    return [e for e in result.evidence if what_part in e.what]


# ---------------------------------------------------------------- HTTP paths


def test_crud_flow_passes_with_captures(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path(
        "orders",
        http("/orders", name="create", method="POST", json={"item": "book"}, expect_status=[201],
             expect_json=["id exists", 'item == "book"'], capture={"order_id": "id"}),
        http("/orders/${steps.create.json.id}", name="read", expect_json=['item == "book"']),
        http("/orders", name="copy", method="POST", json={"item": "${steps.create.json.item} (copy)", "of": "${steps.create.order_id}"},
             expect_status=[201], expect_json=['item == "book (copy)"']),
        http("/orders", name="list", expect_json=["items.length == 2", 'items.0.item == "book"']),
        http("/orders/${steps.create.order_id}", name="delete", method="DELETE", expect_status=[204]),
        http("/orders/${steps.create.order_id}", name="gone", expect_status=[404], expect_json=['error matches "^no order 1$"']),
    )])
    assert result.status is Status.PASS, result.reasons
    assert (result.score, result.summary) == (1.0, "1/1 golden paths pass (orders)")
    assert [r for r in sample.requests if r[1].startswith("/orders/")] == [
        ("GET", "/orders/1"), ("DELETE", "/orders/1"), ("GET", "/orders/1")]
    assert set(sample.orders) == {"2"}


def test_values_from_earlier_steps_are_percent_encoded_in_paths(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path(
        "odd-item",
        http("/orders", name="create", method="POST", json={"item": "a/b c?"}, expect_status=[201]),
        http("/orders/${steps.create.json.item}", expect_status=[404]),
    )])
    assert result.status is Status.PASS, result.reasons
    assert ("GET", "/orders/a%2Fb%20c%3F") in sample.requests


def test_500_mid_sequence_fails_the_path_and_stops_it(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path(
        "checkout",
        http("/orders", name="create", method="POST", json={"item": "book"}, expect_status=[201]),
        http("/orders?fail=1", name="pay", method="POST", json={"item": "book"}, expect_status=[201]),
        http("/orders/${steps.create.json.id}", name="read"),
    )])
    assert (result.status, result.critical, result.not_measured) == (Status.FAIL, None, [])
    assert result.score == 0.0
    assert result.summary == "0/1 golden paths pass; checkout: expected status 201 from POST /orders?fail=1, got 500"
    assert [(e.measured, e.ok) for e in evidence(result, "checkout/read")] == [("not run", None)]
    assert ("GET", "/orders/1") not in sample.requests
    assert "curl -i -X POST '" + sample.url + "/orders?fail=1'" in result.next_steps


BODY = {"status": "ok", "count": 3, "name": "Ada Lovelace", "items": [{"id": 7, "tags": ["a", "b"]}]}


@pytest.mark.parametrize(
    ("expectation", "holds", "found"),
    [
        ('status == "ok"', True, '"ok"'),
        ('status != "down"', True, '"ok"'),
        ("count >= 3", True, "3"),
        ("count < 3", False, "3"),
        ("items.0.id exists", True, "7"),
        ("items.1.id exists", False, "no such field"),
        ('name matches "^Ada"', True, '"Ada Lovelace"'),
        ("name matches ^Lovelace", False, '"Ada Lovelace"'),
        ('count matches "3"', False, "3"),
        ("items.length == 1", True, "1"),
        ("items.0.tags.length > 2", False, "2"),
        ("items.-1.id == 7", True, "7"),
        ("name.length == 12", True, "12"),
    ],
    ids=["equals", "not-equals", "ge", "lt-fails", "exists", "exists-fails", "matches", "matches-fails",
         "matches-needs-a-string", "length", "length-fails", "negative-index", "string-length"],
)
def test_json_assertions(sample: SampleService, expectation: str, holds: bool, found: str) -> None:
    result = run_smoke(sample.url, [path("json", http("/json", query={"body": json.dumps(BODY)}, expect_json=[expectation]))])
    assert result.status is (Status.PASS if holds else Status.FAIL), result.summary
    [item] = evidence(result, "JSON ")
    assert (item.measured, item.threshold, item.ok) == (found, expectation, holds)
    if not holds:
        assert result.summary.endswith(f"expected {expectation} in GET /json, found {found}")


def test_a_body_that_is_not_json_fails_the_assertions(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path("p", http("/ok", expect_json=["status exists"]))])
    assert result.status is Status.FAIL
    assert result.summary.endswith("p: expected a JSON body from GET /ok, got something else")


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (http("/slow?ms=300", latency_budget_ms=100), "expected GET /slow?ms=300 within 100 ms, took"),
        (http("/slow?ms=3000", timeout_s=0.3), "GET /slow?ms=3000: timed out after 0.3 s"),
        (http("/huge?bytes=2000000"), "GET /huge?bytes=2000000: body larger than 1000000 bytes (cap)"),
        (http("/drop"), "GET /drop: connection failed: RemoteProtocolError"),
        (http("/missing"), "expected status 2xx from GET /missing, got 404"),
        (http("/orders", name="c", method="POST", json={"item": "x"}, capture={"oops": "nope"}),
         "expected field nope in POST /orders to capture as oops, found no such field"),
        (http("/orders", method="POST", json={"wrong": "x"}, expect_status=[201], expect_json=['item == "x"']),
         "expected status 201 from POST /orders, got 400"),
    ],
    ids=["over-latency-budget", "step-timeout", "body-cap", "dropped", "404", "capture-missing", "400"],
)
def test_http_step_failures(sample: SampleService, step: dict[str, Any], reason: str) -> None:
    result = run_smoke(sample.url, [path("p", step)], max_body_bytes=1_000_000)
    assert (result.status, result.score, result.critical) == (Status.FAIL, 0.0, None)
    assert reason in result.summary, result.summary


def test_same_host_redirects_are_followed_and_others_refused(sample: SampleService) -> None:
    with SampleService() as other:
        elsewhere = other.url.replace("127.0.0.1", "localhost") + "/ok"
        result = run_smoke(sample.url, [path("local", http("/redirect-local")),
                                        path("foreign", http(f"/redirect?to={elsewhere}"))])
        assert other.requests == []
    assert (result.status, result.score) == (Status.FAIL, 0.5)
    assert result.summary == f"1/2 golden paths pass; foreign: GET /redirect?to={elsewhere}: redirect to another host refused: {elsewhere}"


# ---------------------------------------------------------------- WebSocket paths


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"path": "/ws/agent?mode=chatty"},
        {"subprotocol": "agent.v1"},
        {"send": [{"text": '{"prompt": "hi"}'}]},
        {"expect_events": ["agent_started", "agent_completed"]},
        {"expect_events": [], "expect": ['type == "agent_completed"']},
    ],
    ids=["ordered-events", "other-messages-in-between", "subprotocol", "text-message", "subset-in-order", "match-without-events"],
)
def test_websocket_exchange_passes(sample: SampleService, settings: dict[str, Any]) -> None:
    step = ws(**{"expect": ['answer == "echo: hi"'], **settings})
    result = run_smoke(sample.url, [path("agent", step)])
    assert result.status is Status.PASS, result.reasons
    [close] = evidence(result, "close of")
    assert (close.measured, close.ok) == ("1000 (OK), closed by postdeploy", True)


def test_websocket_values_feed_later_steps(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path(
        "agent-to-order",
        ws(name="chat", capture={"answer": "answer"}),
        http("/orders", method="POST", json={"item": "${steps.chat.answer}"}, expect_status=[201], expect_json=['item == "echo: hi"']),
    )])
    assert result.status is Status.PASS, result.reasons


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"path": "/ws/agent?mode=wrong-order"}, "expected agent_thinking after agent_started, got agent_completed"),
        ({"expect_events": ["agent_thinking", "agent_started"]}, "expected agent_thinking first, got agent_started"),
        ({"path": "/ws/agent?mode=slow&ms=3000", "timeout_s": 0.5},
         "saw agent_started, agent_thinking within 0.5 s; never agent_completed"),
        ({"expect_events": ["agent_done"], "timeout_s": 0.5}, "saw no expected event within 0.5 s (3 messages); never agent_done"),
        ({"path": "/ws/agent?mode=close-early"},
         "server closed the connection with 1001 (going away) after agent_started; never agent_thinking, agent_completed"),
        ({"path": "/ws/agent?mode=error-mid"}, 'got error event after agent_started: {"type": "error", "message": "model unavailable"}'),
        ({"path": "/ws/agent?mode=error-mid", "fail_on_events": []},
         "server closed the connection with 1011 (model unavailable) after agent_started; never agent_thinking, agent_completed"),
        ({"expect": ['answer == "no"']}, 'expected answer == "no" in the agent_completed message, found "echo: hi"'),
        ({"expect_events": [], "expect": ['type == "nope"'], "timeout_s": 0.5},
         'no message matched type == "nope" within 0.5 s (3 messages; last: {"type": "agent_completed", "answer": "echo: hi"})'),
        ({"subprotocol": "other.v2"}, "expected subprotocol other.v2 from WebSocket /ws/agent, server chose none"),
        ({"path": "/ws/private"}, "expected 101 Switching Protocols from WebSocket /ws/private, got HTTP 401"),
        ({"path": "/ok"}, "expected 101 Switching Protocols from WebSocket /ok, got HTTP 200"),
    ],
    ids=["wrong-order", "wrong-first", "timeout", "timeout-nothing-seen", "closed-early", "error-event", "error-close-1011",
         "final-assertion", "no-match", "subprotocol-refused", "upgrade-401", "not-a-websocket"],
)
def test_websocket_failures_say_what_happened(sample: SampleService, settings: dict[str, Any], reason: str) -> None:
    result = run_smoke(sample.url, [path("agent", ws(**settings))])
    assert result.status is Status.FAIL
    assert result.summary.startswith("0/1 golden paths pass; agent: ")
    assert reason in result.summary, result.summary


def test_closed_early_is_recorded_with_the_servers_close_code(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path("agent", ws("/ws/agent?mode=close-early"))])
    [close] = evidence(result, "close of")
    [messages] = evidence(result, "messages (type)")
    assert (close.measured, close.ok) == ("1001 (going away), closed by the server", False)
    assert (messages.measured, messages.threshold, messages.ok) == (
        "agent_started", "agent_started → agent_thinking → agent_completed in order within 3 s", False)


def test_websocket_redirects_stay_on_the_same_host(sample: SampleService) -> None:
    with SampleService() as other:
        elsewhere = other.url.replace("http://127.0.0.1", "ws://localhost") + "/ws/agent"
        result = run_smoke(sample.url, [path("local", ws("/redirect?to=/ws/agent")),
                                        path("foreign", ws(f"/redirect?to={elsewhere}"))])
        assert other.requests == []
    assert result.summary == (f"1/2 golden paths pass; foreign: WebSocket /redirect?to={elsewhere}: "
                              f"redirect to another host refused: {elsewhere}")


def test_connection_refused() -> None:
    with SampleService() as gone:
        url = gone.url
    result = run_smoke(url, [path("agent", ws()), path("api", http("/ok"))])
    assert (result.status, result.score, result.not_measured) == (Status.FAIL, 0.0, [])  # the revision's refusal, not ours
    port = url.rsplit(":", 1)[1]
    assert f"agent: could not connect to ws://127.0.0.1:{port}/ws/agent: connection refused" in result.reasons
    assert any(r.startswith("api: GET /ok: connection failed: ConnectError") for r in result.reasons), result.reasons


# ---------------------------------------------------------------- secrets and ID tokens


def test_secret_header_from_env_is_sent_but_never_shown(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN", TOKEN)
    auth = {"Authorization": "Bearer ${env:AGENT_TOKEN}", "X-Client": "smoke"}
    result = run_smoke(sample.url, [path("api", http("/private", headers=auth)),
                                    path("agent", ws("/ws/private", headers=auth)),
                                    path("echo", http("/headers", headers=auth, expect_json=['headers.authorization == "wrong"']))])
    assert result.status is Status.FAIL
    assert result.summary == ('2/3 golden paths pass; echo: expected headers.authorization == "wrong" in GET /headers, '
                              'found "Bearer <redacted>"')
    assert TOKEN not in repr(result)
    shown = {e.measured for e in evidence(result, "request headers")}
    assert shown == {"Authorization: <redacted> (from env:AGENT_TOKEN), X-Client: smoke"}


def test_secret_manager_reference_goes_through_the_secret_source(sample: SampleService) -> None:
    asked: list[str] = []

    def secrets(ref: str) -> str:
        asked.append(ref)
        return TOKEN

    ref = "${secret:projects/p/secrets/agent-token/versions/3}"
    result = run_smoke(sample.url, [path("api", http("/private", headers={"Authorization": f"Bearer {ref}"})),
                                    path("agent", ws("/ws/private", headers={"Authorization": f"Bearer {ref}"}))], secrets=secrets)
    assert result.status is Status.PASS, result.reasons
    assert asked == ["secret:projects/p/secrets/agent-token/versions/3"]  # resolved once per run
    assert TOKEN not in repr(result)


def _missing(ref: str) -> str:
    raise KeyError(f"expected {ref} to exist, found nothing")


@pytest.mark.parametrize(
    ("header", "secrets", "reason"),
    [
        ("Bearer ${env:UNSET_TOKEN}", None,
         "could not resolve ${env:UNSET_TOKEN}: expected environment variable UNSET_TOKEN to be set, found nothing"),
        ("Bearer ${secret:projects/p/secrets/s/versions/1}", None,
         "could not resolve ${secret:projects/p/secrets/s/versions/1}: no secret source"),
        ("Bearer ${env:UNSET_TOKEN}", _missing, "could not resolve ${env:UNSET_TOKEN}: expected env:UNSET_TOKEN to exist, found nothing"),
    ],
    ids=["env-unset", "no-secret-source", "source-raises"],
)
def test_an_unresolvable_secret_fails_the_step_before_sending(sample: SampleService, header: str,
                                                              secrets: Callable[[str], str] | None, reason: str) -> None:
    result = run_smoke(sample.url, [path("api", http("/private", headers={"Authorization": header}))], secrets=secrets)
    why = f"GET /private: header Authorization: {reason}"
    assert result.summary == f"0/1 golden paths pass; not measured: api: {why}"
    assert ("GET", "/private") not in sample.requests
    # Our missing secret is no verdict on the service: not measured, unscored, and it says what would fix it.
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, None)
    assert result.not_measured == [NotMeasured("golden path api", why, smoke.SETUP_FIX)]


def test_a_secret_with_a_trailing_newline_is_sent_trimmed(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN", "test-id-token\n")
    result = run_smoke(sample.url, [path("api", http("/private", headers={"Authorization": "Bearer ${env:AGENT_TOKEN}"}))])
    assert result.status is Status.PASS, result.summary


def test_a_secret_that_cannot_be_a_header_is_an_error_that_never_shows_it(sample: SampleService,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN", "s3cr3t\nvalue-é")
    result = run_smoke(sample.url, [path("api", http("/private", headers={"Authorization": "Bearer ${env:AGENT_TOKEN}"}),
                                         critical=True)])
    assert (result.status, result.critical) == (Status.ERROR, True)  # a critical path left unmeasured
    assert "resolves to a value that cannot be sent in a header" in result.summary
    assert "s3cr3t" not in repr(result)


def test_a_websocket_step_must_wait_for_something() -> None:
    with pytest.raises(ValidationError, match="a WebSocket step that waits for nothing proves nothing"):
        smoke.Config.model_validate({"paths": [path("p", {"websocket": {"path": "/ws/agent", "send": PROMPT}})]})


def test_a_step_timeout_longer_than_its_path_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=r"found p/slow \(30 s\)"):
        smoke.Config.model_validate({"paths": [path("p", http("/slow", name="slow", timeout_s=30), timeout_s=5)]})


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer abc123"},
        {"authorization": "abc123"},
        {"Cookie": "sid=abc123"},
        {"X-Api-Key": "abc123"},
        {"X-Forwarded-Credential": "abc123"},
        {"X-Anything": "Bearer abc123"},
        {"X-Anything": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc123"},
    ],
    ids=["authorization", "lowercase-name", "cookie", "api-key", "credential-name", "bearer-in-any-header", "jwt-in-any-header"],
)
@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_a_literal_credential_is_a_config_error(headers: dict[str, str], kind: str) -> None:
    with pytest.raises(ValidationError, match="found a literal value") as caught:
        smoke.Config.model_validate({"paths": [path("p", {kind: {"path": "/x", "headers": headers}})]})
    assert "abc123" not in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer ${env:AGENT_TOKEN}"}, {"Cookie": "sid=${secret:projects/p/secrets/s/versions/latest}"},
     {"X-Client": "smoke"}, {"X-Session": "${steps.first.json.session}"}],
    ids=["env", "secret", "plain", "earlier-step"],
)
def test_references_are_accepted(headers: dict[str, str]) -> None:
    smoke.Config.model_validate({"paths": [path("p", http("/a", name="first"), http("/b", headers=headers))]})


@pytest.mark.parametrize(("auth", "cloud_run"), [("auto", True), ("id_token", True), ("id_token", False)],
                         ids=["auto-on-a-cloud-run-url", "id-token-on-a-cloud-run-url", "id-token-asked-for-anywhere"])
def test_private_service_gets_an_id_token(sample: SampleService, auth: str, cloud_run: bool) -> None:
    audiences: list[str] = []

    def token_source(audience: str) -> str:
        audiences.append(audience)
        return TOKEN

    result = run_smoke(sample.url, [path("api", http("/private")), path("agent", ws("/ws/private"))],
                       token_source=token_source, auth=auth, cloud_run=cloud_run)
    assert result.status is Status.PASS, result.reasons
    assert audiences == [sample.url]  # fetched once, shared by the paths
    assert TOKEN not in repr(result)


def test_id_token_moves_aside_when_the_app_uses_authorization(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_TOKEN", "app-level-token")
    result = run_smoke(sample.url, [path("echo", http(
        "/headers", headers={"Authorization": "Bearer ${env:APP_TOKEN}"},
        expect_json=['headers.authorization == "Bearer <redacted>"', "headers.x-serverless-authorization exists"]))],
        token_source=lambda audience: TOKEN, auth="id_token")
    # The first expectation fails because the server saw the real value, which the report then hides.
    assert result.summary == ('0/1 golden paths pass; echo: expected headers.authorization == "Bearer <redacted>" in GET /headers, '
                              'found "Bearer <redacted>"')
    assert [e.ok for e in evidence(result, "JSON headers.x-serverless-authorization")] == [True]
    assert "app-level-token" not in repr(result) and TOKEN not in repr(result)


@pytest.mark.parametrize("cloud_run", [False, True], ids=["loopback-url", "cloud-run-url"])
@pytest.mark.parametrize(("step", "reason"), [
    (ws("/status/403"), "expected 101 Switching Protocols from WebSocket /status/403, got HTTP 403"),
    (http("/status/403"), "expected status 2xx from GET /status/403, got 403"),
], ids=["websocket", "http"])
def test_a_403_asks_for_an_id_token_only_where_one_can_work(sample: SampleService, step: dict[str, Any], reason: str,
                                                            cloud_run: bool) -> None:
    asked: list[str] = []

    def token_source(audience: str) -> str:
        asked.append(audience)
        return TOKEN

    result = run_smoke(sample.url, [path("p", step)], token_source=token_source, cloud_run=cloud_run)
    # With or without a token the service refuses: judged, the status it is.
    assert (result.status, result.not_measured) == (Status.FAIL, [])
    assert result.summary == f"0/1 golden paths pass; p: {reason}"
    assert asked == ([sample.url] if cloud_run else [])
    assert sum(1 for _, p in sample.requests if p == "/status/403") == (2 if cloud_run else 1)  # retried with the token


def _no_credentials(audience: str) -> str:
    raise OSError("no metadata server")


@pytest.mark.parametrize(("token_source", "problem"), [
    (None, "no ID token source"),
    (_no_credentials, "could not get an ID token for {url}: OSError: no metadata server"),
], ids=["no-token-source", "token-source-raises"])
@pytest.mark.parametrize(("step", "reason"), [
    (ws("/ws/private"), "expected 101 Switching Protocols from WebSocket /ws/private, got HTTP 401"),
    (http("/private"), "expected status 2xx from GET /private, got 401"),
], ids=["websocket", "http"])
def test_a_private_path_postdeploy_has_no_token_for_is_not_measured(sample: SampleService, step: dict[str, Any], reason: str,
                                                                    token_source: Callable[[str], str] | None,
                                                                    problem: str) -> None:
    result = run_smoke(sample.url, [path("p", step, critical=True)], token_source=token_source, cloud_run=True)
    why = f"{reason} ({problem.format(url=sample.url)})"
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, True)
    assert result.not_measured == [NotMeasured("golden path p", why, smoke.SETUP_FIX)]
    assert "roles/run.invoker" in smoke.SETUP_FIX


# ---------------------------------------------------------------- verdict, budget, config


GOT_500 = "expected status 2xx from GET /status/500, got 500"


@pytest.mark.parametrize(
    ("critical", "result_critical", "summary"),
    [
        ({"checkout": True}, True, f"1/2 golden paths pass; checkout (critical): {GOT_500}"),
        ({}, None, f"1/2 golden paths pass; checkout: {GOT_500}"),
        ({"browse": True}, None, f"1/2 golden paths pass; checkout: {GOT_500}"),
    ],
    ids=["critical-path-fails-critically", "non-critical-path-fails-too", "only-passing-path-critical"],
)
def test_any_failing_path_fails_the_check_and_a_critical_one_marks_it(sample: SampleService, critical: dict[str, bool],
                                                                     result_critical: bool | None, summary: str) -> None:
    paths = [path("browse", http("/ok"), critical=critical.get("browse", False)),
             path("checkout", http("/status/500"), critical=critical.get("checkout", False))]
    result = run_smoke(sample.url, paths)
    assert (result.status, result.score, result.critical, result.summary) == (Status.FAIL, 0.5, result_critical, summary)
    assert result.not_measured == []


def test_critical_failures_lead_the_summary(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path("a", http("/status/503")), path("b", http("/ok")), path("c", http("/status/500"), critical=True)])
    assert result.status is Status.FAIL
    assert result.score == pytest.approx(1 / 3)
    assert result.summary == "1/3 golden paths pass; c (critical): expected status 2xx from GET /status/500, got 500 (+1 more failing)"
    assert result.reasons[1] == "a: expected status 2xx from GET /status/503, got 503"


@pytest.mark.parametrize(
    ("settings", "critical"),
    [({"paths": [path("p", http("/a"), critical=True)]}, False), ({"paths": [path("p", http("/a"))]}, False),
     ({"paths": [path("p", http("/a"))], "critical": True}, True),
     ({"paths": [path("p", http("/a"), critical=True)], "critical": False}, False)],
    ids=["critical-path-leaves-the-check-setting-alone", "no-critical-path", "explicit-true", "explicit-false"],
)
def test_check_criticality_is_only_what_is_configured(settings: dict[str, Any], critical: bool) -> None:
    # A critical path marks the result (result.critical) when it fails; the setting is not promoted by it.
    assert smoke.Config.model_validate(settings).critical is critical


READ_LOGS = "read the revision's logs around the deploy time"


def judged(name: str, kind: str, critical: bool = False) -> PathOutcome:
    """A one-step path that passed ("pass"), failed on the revision's answer ("fail") or was never sent ("unsent")."""
    config = PathConfig.model_validate(path(name, http(f"/{name}"), critical=critical))
    reasons = [] if kind == "pass" else [f"{name} broke"]
    return PathOutcome(config, [StepOutcome("s", f"GET /{name}", reasons, setup_failed=kind == "unsent")])


def judge(*paths: PathOutcome) -> CheckResult:
    session = Session(Target(service="s", url="http://127.0.0.1:9"), smoke.Config(), CheckContext(http=None))
    return smoke._judge(session, list(paths))


@pytest.mark.parametrize(
    ("paths", "status", "score", "critical", "summary", "unmeasured"),
    [
        ([judged("a", "pass"), judged("b", "pass", True)], Status.PASS, 1.0, None, "2/2 golden paths pass (a, b)", []),
        ([judged("a", "pass"), judged("b", "fail")], Status.FAIL, 0.5, None, "1/2 golden paths pass; b: b broke", []),
        ([judged("a", "pass"), judged("b", "fail", True)], Status.FAIL, 0.5, True, "1/2 golden paths pass; b (critical): b broke", []),
        ([judged("a", "pass", True), judged("b", "fail")], Status.FAIL, 0.5, None, "1/2 golden paths pass; b: b broke", []),
        ([judged("a", "pass"), judged("b", "unsent")], Status.ERROR, None, None, "1/2 golden paths pass; not measured: b: b broke",
         ["golden path b"]),
        ([judged("b", "unsent", True)], Status.ERROR, None, True, "0/1 golden paths pass; not measured: b (critical): b broke",
         ["golden path b"]),
        ([judged("a", "fail"), judged("b", "unsent", True)], Status.ERROR, None, True,
         "0/2 golden paths pass; not measured: b (critical): b broke", ["golden path b"]),
        ([judged("a", "pass"), judged("b", "fail"), judged("c", "unsent")], Status.FAIL, 0.5, None,
         "1/3 golden paths pass; b: b broke", ["golden path c"]),
        ([judged("a", "fail", True), judged("b", "unsent", True)], Status.FAIL, 0.0, True,
         "0/2 golden paths pass; a (critical): a broke", ["golden path b"]),
        ([judged("a", "fail", True), judged("b", "unsent")], Status.FAIL, 0.0, True,
         "0/2 golden paths pass; a (critical): a broke", ["golden path b"]),
        ([judged("a", "fail"), judged("b", "fail", True), judged("c", "pass")], Status.FAIL, 1 / 3, True,
         "1/3 golden paths pass; b (critical): b broke (+1 more failing)", []),
    ],
    ids=["all-pass", "non-critical-failure-fails", "critical-failure-fails-critically", "critical-path-passed",
         "unsent-alone-not-measured", "critical-unsent-alone", "critical-unsent-beside-a-non-critical-failure",
         "unsent-beside-a-failure-is-left-out-of-the-grade", "critical-unsent-beside-a-critical-failure",
         "unsent-beside-a-critical-failure", "critical-failure-leads-and-counts-the-rest"],
)
def test_judge_fails_every_failing_path_and_leaves_unsent_ones_unmeasured(
        paths: list[PathOutcome], status: Status, score: float | None, critical: bool | None, summary: str,
        unmeasured: list[str]) -> None:
    result = judge(*paths)
    assert (result.status, result.critical, result.summary) == (status, critical, summary)
    assert result.score == (pytest.approx(score) if score is not None else None)
    assert [(n.what, n.fix) for n in result.not_measured] == [(what, smoke.SETUP_FIX) for what in unmeasured]
    assert result.evidence == [e for p in paths for e in p.evidence()]  # also when nothing could be judged
    hints = [f"curl -i -X GET 'http://127.0.0.1:9/{p.config.name}'" for p in sorted(paths, key=lambda p: not p.config.critical)
             if not p.ok and not p.steps[0].setup_failed]
    assert result.next_steps == ([*hints, READ_LOGS] if status is not Status.PASS else [])


def test_curl_hints_keep_the_whole_path_and_skip_websocket_steps() -> None:
    spaced = PathOutcome(PathConfig.model_validate(path("find", http("/find"))), [StepOutcome("s", "GET /find?q=two words", ["x"])])
    chat = PathOutcome(PathConfig.model_validate(path("chat", ws())), [StepOutcome("s", "WebSocket /ws/agent", ["y"])])
    assert judge(spaced, chat).next_steps == ["curl -i -X GET 'http://127.0.0.1:9/find?q=two words'", READ_LOGS]


def test_judge_lists_every_failure_and_suggests_curl_only_for_judged_ones() -> None:
    result = judge(judged("a", "unsent"), judged("b", "fail"), judged("c", "fail", True))
    assert result.reasons == ["c (critical): c broke", "b: b broke", "a: a broke"]
    assert result.next_steps == ["curl -i -X GET 'http://127.0.0.1:9/c'", "curl -i -X GET 'http://127.0.0.1:9/b'", READ_LOGS]
    assert result.not_measured == [NotMeasured("golden path a", "a broke", smoke.SETUP_FIX)]


def test_a_critical_path_postdeploy_cannot_send_leaves_the_check_unmeasured(sample: SampleService,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTDEPLOY_TEST_UNSET", raising=False)
    keyed = path("keyed", http("/headers", headers={"X-Api-Key": "${env:POSTDEPLOY_TEST_UNSET}"}), critical=True)
    result = run_smoke(sample.url, [keyed, path("checkout", http("/status/500"))])
    why = ("GET /headers: header X-Api-Key: could not resolve ${env:POSTDEPLOY_TEST_UNSET}: "
           "expected environment variable POSTDEPLOY_TEST_UNSET to be set, found nothing")
    # A non-critical failure cannot stand in for a critical path nobody measured: no verdict, not a pass.
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, True)
    assert result.summary == f"0/2 golden paths pass; not measured: keyed (critical): {why}"
    assert result.not_measured == [NotMeasured("golden path keyed", why, smoke.SETUP_FIX)]
    assert f"checkout: {GOT_500}" in result.reasons
    assert result.next_steps == [f"curl -i -X GET '{sample.url}/status/500'", READ_LOGS]
    assert ("GET", "/headers") not in sample.requests


def test_a_path_may_run_for_the_checks_whole_timeout_less_a_small_margin(sample: SampleService) -> None:
    # 60 s leaves min(2.5 s, 60 s / 4) to close and report: a path answering in 2.6 s is well within its budget.
    result = run_smoke(sample.url, [path("slow", http("/slow?ms=2600"))], timeout_s=60)
    assert result.status is Status.PASS, result.summary


def test_a_short_timeout_keeps_a_quarter_of_itself_to_close_and_report(sample: SampleService) -> None:
    # 2 s leaves min(2.5 s, 2 s / 4): paths get 1.5 s. Quick ones pass; one bounded at 1.55 s is cut by the check's budget first.
    paths = [path("quick", http("/ok")), path("slow", http("/slow?ms=3000"), timeout_s=1.55)]
    result = run_smoke(sample.url, paths, timeout_s=2)
    assert result.summary == ("1/2 golden paths pass; slow: GET /slow?ms=3000: the check's time budget ran out "
                              "(timeout_s 2 s or the run's deadline)")


def test_no_paths_is_skipped(sample: SampleService) -> None:
    result = run_smoke(sample.url, [])
    assert (result.status, result.summary) == (Status.SKIPPED, "no golden paths configured")


def test_no_url_is_skipped() -> None:
    result = run_smoke("", [path("p", http("/ok"))])
    assert (result.status, result.summary) == (Status.SKIPPED, "nothing to probe: no URL")


def test_paths_run_concurrently_each_within_its_bound(sample: SampleService) -> None:
    # The run ends in 4.5 s, less the 2.5 s kept to close and report: 2 s for five 0.6 s paths, which only fit side by side.
    slow = [path(name, http("/slow?ms=600")) for name in "abcde"]
    result = run_smoke(sample.url, [*slow, path("bounded", http("/slow?ms=3000"), http("/ok"), timeout_s=0.4)], deadline_in_s=4.5)
    assert result.summary == "5/6 golden paths pass; bounded: GET /slow?ms=3000: path bounded did not finish within 0.4 s"
    assert [e.measured for e in evidence(result, "bounded/http2")] == ["not run"]


def test_the_runs_deadline_less_the_margin_bounds_every_path(sample: SampleService) -> None:
    # The run ends in 3.5 s, less the 2.5 s kept to close and report: a 2 s answer comes too late.
    result = run_smoke(sample.url, [path("slow", http("/slow?ms=2000"))], deadline_in_s=3.5)
    assert result.summary == ("0/1 golden paths pass; slow: GET /slow?ms=2000: the check's time budget ran out "
                              "(timeout_s 60 s or the run's deadline)")
    assert [e.measured for e in evidence(result, "slow/http1")] == ["unfinished"]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([path("p", http("/a", expect_json=['name matches "("']))], "expected a valid regex after 'matches'"),
        ([path("p", http("/a", expect_json=["status = ok"]))], "expected '<path> <op> <value>'"),
        ([path("p", http("/a", expect_json=["status == healthy"]))],
         "expected a JSON literal after '==', found bare word healthy in 'status == healthy'; quote strings"),
        ([path("p", ws(expect=["type != done"]))], "found bare word done in 'type != done'"),
        ([path("p", {"http": {"path": "/a"}, "websocket": {"path": "/b"}})], "expected a mapping with one key, http or websocket"),
        ([path("p", http("/a"), {"grpc": {"path": "/a"}})], "paths.0.steps.1\n  expected a mapping with one key, http or websocket"),
        ([path("p", {"http": "/a"})], "expected a mapping with one key, http or websocket"),
        ([path("p", http("/a", unknown=1))], "Extra inputs are not permitted"),
        ([path("p", http("/a/${steps.later.json.id}"), http("/b", name="later"))],
         "refers to 'later', which is not an earlier step (earlier steps: none)"),
        ([path("p", http("/a", name="one"), http("/b/${steps.one.order_id}"))],
         "${steps.one.order_id}: expected one of status, json.PATH after steps.one, found 'order_id'"),
        ([path("p", http("/a?t=${env:TOKEN}"))], "${env:TOKEN} is a secret reference; secrets are only allowed in headers"),
        ([path("p", http("/a", json={"password": "${secret:projects/p/secrets/s/versions/1}"}))], "secrets are only allowed in headers"),
        ([path("p", http("/a", headers={"X-Id": "${nonsense}"}))], "expected ${env:NAME}"),
        ([path("p", http("/a", name="x"), http("/b", name="x"))], "steps[1] (x): duplicate step name"),
        ([path("p", http("/a")), path("p", http("/b"))], "expected unique path names, found p more than once"),
        ([path("p", http("a"))], "expected a path starting with '/'"),
        ([path("p", http("/a", json={}, text="x"))], "expected at most one body, json or text, found both"),
        ([path("p", http("/a", method="FETCH"))], "expected one of GET, HEAD"),
        ([path("p", ws(send=[{"json": 1, "text": "x"}]))], "expected exactly one of json or text"),
        ([path("p", http("/a", capture={"status": "x"}))], "other than status and json"),
        ([path("p")], "at least 1 item"),
        ([path("p", http("/a"), timeout_s=120)],
         "expected each path's and step's timeout_s ≤ the enclosing timeout_s (60 s), found p (120 s)"),
    ],
    ids=["bad-regex", "bad-expression", "bare-word", "bare-word-in-websocket-expect", "two-kinds", "unknown-kind", "not-a-mapping",
         "unknown-key", "later-step", "unknown-capture",
         "secret-in-query", "secret-in-body", "bad-reference", "duplicate-step", "duplicate-path", "relative-path", "two-bodies",
         "bad-method", "message-two-bodies", "reserved-capture-name", "no-steps", "path-timeout-over-check-timeout"],
)
def test_config_errors(paths: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        smoke.Config.model_validate({"paths": paths})
    assert message in str(caught.value)


def test_the_documented_example_runs(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN", TOKEN)
    settings = yaml.safe_load(EXAMPLE)
    config = smoke.Config.model_validate(settings)
    assert not config.critical and config.paths[0].critical  # a critical path marks a failing result, not the setting
    assert [type(s).__name__ for p in config.paths for s in p.steps] == ["HttpStep"] * 3 + ["WebSocketStep"]
    result = run_smoke(sample.url, **settings)
    assert result.status is Status.PASS, result.reasons
    assert result.summary == "2/2 golden paths pass (create-order, agent-stream)"
