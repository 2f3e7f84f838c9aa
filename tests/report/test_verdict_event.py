"""The verdict event: the message built from a report, and publishing it to the Pub/Sub emulator."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from core.config import Config
from core.errors import ConfigError
from report import verdict_event
from report.verdict_event import event, publish
from tests.servers import processes

LINK = "https://storage.cloud.google.com/acme-reports/reports/orders/b-1/report.html"


def report(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "verdict": "FAIL", "score": 41.5, "finished_at": "2026-11-25T10:09:00Z",
        "reasons": ["health: expected status 200 from /health, got 503", "logs: new error", "smoke: 1/2 paths", "tests: 5/6"],
        "target": {"project": "acme-prod", "region": "us-central1", "service": "orders", "revision": "orders-00042-new",
                   "previous_revision": "orders-00041-old"},
        "build": {"id": "b-1", "commit": "4f2a9c1e7b3d"},
    }
    return {**base, **changes}


def test_the_message_names_the_revision_the_verdict_and_the_top_reasons() -> None:
    data, attributes = event(report(actions=[{"kind": "rollback", "outcome": "done"}]), LINK)
    body = json.loads(data)
    assert body == {
        "schema": "postdeploy.verdict/v1", "service": "orders", "region": "us-central1", "project": "acme-prod",
        "revision": "orders-00042-new", "previous_revision": "orders-00041-old", "build_id": "b-1", "commit": "4f2a9c1e7b3d",
        "verdict": "FAIL", "score": 41.5, "reasons": report()["reasons"][:3], "report_url": LINK,
        "actions": [{"kind": "rollback", "outcome": "done"}], "finished_at": "2026-11-25T10:09:00Z", "rerun": "",
    }
    assert attributes == {"service": "orders", "revision": "orders-00042-new", "verdict": "FAIL", "score": "41.5",
                          "build_id": "b-1"}


def test_a_link_that_is_not_a_url_and_empty_attributes_are_left_out() -> None:
    unresolved = report(target={**report()["target"], "revision": "", "previous_revision": ""}, verdict="INCONCLUSIVE", score=0.0)
    data, attributes = event(unresolved, "(not stored: permission denied)")
    assert json.loads(data)["report_url"] == "" and json.loads(data)["actions"] == []
    assert attributes == {"service": "orders", "verdict": "INCONCLUSIVE", "score": "0", "build_id": "b-1"}


def test_what_the_message_quotes_is_redacted() -> None:
    token = "ghp_" + "Z9y8X7w6" * 5
    data, _ = event(report(reasons=[f"smoke: GET /login answered {token}"]), LINK)
    assert token not in data.decode() and "[REDACTED]" in data.decode()


def test_no_topic_publishes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verdict_event, "_client", lambda: pytest.fail("no client may be made without a topic"))
    assert asyncio.run(publish("", report(), LINK, time.monotonic() + 5)) == "not configured"


@pytest.mark.parametrize("topic", ["verdicts", "projects/acme-prod/topics/", "projects/Acme/topics/verdicts",
                                   "projects/acme-prod/subscriptions/verdicts"])
def test_a_topic_that_is_not_a_full_topic_name_is_a_config_error(topic: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.parse(f"version: 1\ndefaults:\n  verdict_topic: {topic!r}\n", "test")
    assert "expected a topic name projects/PROJECT/topics/TOPIC" in str(caught.value.problems)


def test_a_missing_topic_is_logged_and_the_next_verdict_of_the_service_still_goes(
        pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    monkeypatch.setattr(verdict_event, "_publisher", None)  # a client for this emulator
    project = f"events-{uuid.uuid4().hex[:8]}"
    topic = f"projects/{project}/topics/verdicts"

    missing = asyncio.run(publish(topic, report(), LINK, time.monotonic() + 10))  # the topic is not there yet
    assert missing.startswith(f"not published to {topic}: NotFound")
    assert any("verdict event not published" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)

    # The failure paused the ordering key "orders" on that topic; once the topic exists, the service's next verdict goes.
    processes.create_topic(pubsub_emulator, project, "verdicts")
    processes.create_pull_subscription(pubsub_emulator, project, "sub", "verdicts")
    published = asyncio.run(publish(topic, report(), LINK, time.monotonic() + 10))
    received = processes.pull(pubsub_emulator, project, "sub")
    assert published == f"published {received[0]['messageId']}" and len(received) == 1
    assert received[0]["orderingKey"] == "orders" and json.loads(received[0]["data"])["verdict"] == "FAIL"


def test_a_rerun_says_so_in_the_body_and_an_attribute() -> None:
    data, attributes = event(report(rerun={"id": "rerun-20261201T190621097025Z", "of": {"verdict": "PASS"}}), LINK)
    assert json.loads(data)["rerun"] == "rerun-20261201T190621097025Z"
    assert attributes["rerun"] == "rerun-20261201T190621097025Z"
