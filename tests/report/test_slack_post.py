"""Posting to Slack against a local webhook receiver."""

from __future__ import annotations

import asyncio
import time

import pytest

from report.slack import MAX_ATTEMPTS, post
from tests.servers.processes import free_port
from tests.servers.slack import SlackReceiver

BODY = {"text": "PASS orders", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "café ✓"}}]}


def test_success_posts_the_body_once(slack: SlackReceiver) -> None:
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 10))
    assert (delivery.ok, delivery.status, delivery.attempts) == (True, 200, 1)
    assert slack.messages == [BODY]


def test_429_waits_retry_after_then_succeeds(slack: SlackReceiver) -> None:
    slack.responses.append((429, {"Retry-After": "1"}, "rate_limited"))
    started = time.monotonic()
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 10))
    assert delivery.ok and delivery.attempts == 2
    assert time.monotonic() - started >= 1.0
    assert len(slack.messages) == 2


def test_429_beyond_the_deadline_gives_up_without_waiting(slack: SlackReceiver) -> None:
    slack.responses.append((429, {"Retry-After": "30"}, "rate_limited"))
    started = time.monotonic()
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 5))
    assert not delivery.ok and delivery.status == 429
    assert time.monotonic() - started < 5
    assert "gave up after 1 attempts" in delivery.detail


def test_permanent_errors_are_not_retried(slack: SlackReceiver) -> None:
    slack.responses.append((404, {"Content-Type": "text/plain"}, "channel_not_found"))
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 10))
    assert (delivery.ok, delivery.status, delivery.attempts) == (False, 404, 1)
    assert "channel_not_found" in delivery.detail
    assert slack.url not in delivery.detail


def test_server_errors_are_retried_a_bounded_number_of_times(slack: SlackReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("report.slack.DEFAULT_RETRY_AFTER_S", 0.01)  # the production backoff would spend 6 s here
    slack.responses.extend([(500, {}, "oops")] * 10)
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 30))
    assert not delivery.ok and delivery.attempts == MAX_ATTEMPTS
    assert len(slack.messages) == MAX_ATTEMPTS


def test_the_body_is_redacted_before_it_is_posted(slack: SlackReceiver) -> None:
    body = {"text": f"FAIL orders — posted via {slack.url}", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "• health: found password=hunter2-xyz and xoxb-1234567890-abcdefghij"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "hook https://hooks.slack.com/services/T01/B02/abcdefghijklmnop"}]},
    ]}
    delivery = asyncio.run(post(slack.url, body, time.monotonic() + 10))
    assert delivery.ok
    assert slack.messages == [{"text": "FAIL orders — posted via [REDACTED]", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "• health: found password=[REDACTED] and [REDACTED]"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "hook https://hooks.slack.com/services/[REDACTED]"}]},
    ]}]
    assert b"hunter2-xyz" not in slack.bodies[0] and slack.url.encode() not in slack.bodies[0]


def test_an_answer_later_than_the_deadline_is_not_waited_for_nor_posted_again(slack: SlackReceiver) -> None:
    slack.delay_s = 2.5  # Slack has the message (the receiver recorded it) and answers late
    started = time.monotonic()
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 1))
    assert (delivery.ok, delivery.attempts) == (False, 1)
    assert delivery.detail == "no answer from Slack (ReadTimeout); not retried"
    assert time.monotonic() - started < 2.0  # the request's timeout is the time left, not POST_TIMEOUT_S
    assert len(slack.messages) == 1


def test_a_refused_connection_is_retried_since_nothing_reached_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("report.slack.DEFAULT_RETRY_AFTER_S", 0.01)
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXX"
    delivery = asyncio.run(post(url, BODY, time.monotonic() + 10))
    assert (delivery.ok, delivery.status, delivery.attempts) == (False, None, MAX_ATTEMPTS)
    assert delivery.detail == f"gave up after {MAX_ATTEMPTS} attempts: ConnectError"


@pytest.mark.parametrize("retry_after", [
    pytest.param("Wed, 21 Oct 2037 07:28:00 GMT", id="http-date"),
    pytest.param("-3", id="negative"),
    pytest.param("nan", id="not-a-number"),
])
def test_an_unusable_retry_after_waits_the_default(slack: SlackReceiver, monkeypatch: pytest.MonkeyPatch,
                                                   retry_after: str) -> None:
    monkeypatch.setattr("report.slack.DEFAULT_RETRY_AFTER_S", 0.3)
    slack.responses.append((429, {"Retry-After": retry_after}, "rate_limited"))
    started = time.monotonic()
    delivery = asyncio.run(post(slack.url, BODY, time.monotonic() + 10))
    assert (delivery.ok, delivery.attempts) == (True, 2)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_fractional_retry_after_is_honoured(slack: SlackReceiver) -> None:
    slack.responses.append((429, {"Retry-After": "0.4"}, "rate_limited"))
    started = time.monotonic()
    assert asyncio.run(post(slack.url, BODY, time.monotonic() + 10)).ok
    assert 0.4 <= time.monotonic() - started < 1.0
