"""Golden paths against the real sample service on loopback, run by the smoke check: HTTP sequences with
captures, the agent WebSocket, secrets in headers and ID tokens."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from checks import smoke
from core.model import NotMeasured, Status
from core.redact import forget, redact_text
from demo.sample_service import SampleService
from tests.probe.helpers import PROMPT, TOKEN, evidence, http, path, run_smoke, ws

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
                              'found "Bearer [REDACTED]"')
    assert TOKEN not in repr(result)
    shown = {e.measured for e in evidence(result, "request headers")}
    assert shown == {"Authorization: [REDACTED] (from env:AGENT_TOKEN), X-Client: smoke"}


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


def test_a_resolved_secret_is_hidden_wherever_it_is_quoted_later(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_HEADER", "resolved-upstream-value")  # a name that says nothing: secret as configured
    try:
        run_smoke(sample.url, [path("api", http("/headers", headers={"X-Upstream": "${env:UPSTREAM_HEADER}"}))])
        # The service may log what it was sent: the logs check's excerpts, the report and Slack hide it too.
        assert redact_text("GET /headers X-Upstream: resolved-upstream-value") == "GET /headers X-Upstream: [REDACTED]"
    finally:
        forget()


def test_what_a_service_echoes_is_scrubbed_by_the_shared_redactor(sample: SampleService) -> None:
    body = {"debug": "retry with password=hunter2-xyz", "access_token": "opaque-abc-123"}
    result = run_smoke(sample.url, [path("echo", http(f"/json?body={quote(json.dumps(body))}",
                                                      expect_json=['debug == "x"', 'access_token == "x"']))])
    # The path too: it carries them percent-encoded.
    label = "GET /json?body=%7B%22debug%22%3A%20%22retry%20with%20password%3D[REDACTED]%22%2C%20%22access_token%22%3A%20%22[REDACTED]%22%7D"
    assert result.summary == f'0/1 golden paths pass; echo: expected debug == "x" in {label}, found "retry with password=[REDACTED]"'
    assert f'echo: expected access_token == "x" in {label}, found "[REDACTED]"' in result.reasons
    # (The evidence item "JSON access_token" shows the value found; the report hides it by the field's name.)
    assert "hunter2-xyz" not in repr(result) and "opaque-abc-123" not in repr((result.summary, result.reasons))


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
        expect_json=['headers.authorization == "Bearer [REDACTED]"', "headers.x-serverless-authorization exists"]))],
        token_source=lambda audience: TOKEN, auth="id_token")
    # The first expectation fails because the server saw the real value, which the report then hides.
    assert result.summary == ('0/1 golden paths pass; echo: expected headers.authorization == "Bearer [REDACTED]" in GET /headers, '
                              'found "Bearer [REDACTED]"')
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
