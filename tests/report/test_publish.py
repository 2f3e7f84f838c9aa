"""make_report, store_report and notify: the report objects, latest.json, the service index and the Slack message,
all of them redacted."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from core.model import CheckResult, Evidence, Outcome, Status, Target, Verdict
from core.redact import forget, redact_text
from report.document import make_report
from report.publish import notify, store_report
from report.score import Scored
from report.store import LocalStore
from tests.report.test_render import representative_report
from tests.servers.slack import SlackReceiver


class ContendedIndex(LocalStore):
    """A folder whose index is always being rewritten by someone else."""

    def update(self, name: str, change: Callable[[str | None], str]) -> str:
        raise StorageUnavailable(f"updating {name}: changed by other writers 8 times in a row")


def test_reports_index_latest_and_a_second_validation_first_in_the_index(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    first = representative_report()
    links = store_report(store, first)
    assert set(links) == {"report.md", "report.html", "report.json", "latest.json", "index.json", "index.html"}
    second = {**first, "build": {**first["build"], "id": "b-2"}}
    store_report(store, second)
    index = json.loads(Path(links["index.json"]).read_text(encoding="utf-8"))
    assert [v["build_id"] for v in index["validations"]] == ["b-2", first["build"]["id"]]


def test_an_index_that_cannot_be_updated_keeps_the_reports_and_says_so(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    report = representative_report()
    links = store_report(ContendedIndex(str(tmp_path)), report)
    assert Path(links["report.json"]).exists() and Path(links["latest.json"]).exists()
    service = report["target"]["service"]
    assert links["index.json"] == f"(not updated: updating {service}/index.json: changed by other writers 8 times in a row)"
    assert any(r.levelname == "WARNING" and r.getMessage().startswith("index not updated") for r in caplog.records)


def test_a_report_from_anywhere_is_stored_redacted(tmp_path: Path) -> None:
    report = copy.deepcopy(representative_report())
    report["build"]["id"] = "b-ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    report["checks"][1]["evidence"].append({"what": "body", "measured": {"token": "opaque-42", "echo": "password=hunter2-xyz"},
                                            "threshold": None, "previous": None, "ok": None})
    report["reasons"].insert(0, "health: answered with Authorization: Bearer abc.DEF-123")
    links = store_report(LocalStore(str(tmp_path)), report)
    written = {name: Path(links[name]).read_text(encoding="utf-8") for name in links}
    for name, text in written.items():
        for secret in ("16C7e42F292c6912E7710c838347Ae178B4a", "opaque-42", "hunter2-xyz", "abc.DEF-123"):
            assert secret not in text, (name, secret)
    stored = json.loads(written["report.json"])
    assert stored["checks"][1]["evidence"][-1]["measured"] == {"token": "[REDACTED]", "echo": "password=[REDACTED]"}
    assert json.loads(written["index.json"])["validations"][0]["build_id"] == "b-[REDACTED]"
    assert report["reasons"][0].endswith("abc.DEF-123")  # the caller's report is left as it was


class Webhook:
    """What notify asks of the adapters: the webhook URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, name: str) -> str:
        assert name == "webhook"
        return self.url


def test_the_webhook_is_never_quoted_and_a_refusal_is_logged_redacted(slack: SlackReceiver,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    slack.responses.append((400, {"Content-Type": "text/plain"}, "invalid_payload near xoxb-1234567890-abcdefghij"))
    report = representative_report()
    try:
        outcome = asyncio.run(notify(report, "https://storage.cloud.google.com/b/r.html", Webhook(slack.url), time.monotonic() + 10))
        assert redact_text(f"retrying {slack.url}") == "retrying [REDACTED]"  # registered: quoted anywhere later, hidden
    finally:
        forget()
    assert outcome == "Slack refused the message: 400 invalid_payload near xoxb-1234567890-abcdefghij"
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert logged == ["Slack message not delivered: Slack refused the message: 400 invalid_payload near [REDACTED]"]


@pytest.mark.parametrize(("what", "found", "shown"), [
    ("JSON api_key", "k-123456", "[REDACTED]"),
    ("smoke/login: JSON data.access_token of POST /login", '"opaque-9f8e"', '"[REDACTED]"'),
    ("agent/ws1: message session.token", '"Bearer abc.def-1"', '"Bearer [REDACTED]"'),
    ("JSON password", "no such field", "no such field"),
    ("JSON status", "degraded", "degraded"),
    ("JSON token_count", 3, 3),
], ids=["health-field", "golden-path-field", "websocket-field", "field-absent", "ordinary-field", "a-number"])
def test_a_value_found_under_a_secret_name_is_not_shown(what: str, found: object, shown: object) -> None:
    result = CheckResult(Status.FAIL, "expected something else", [Evidence(what, found, "exists", ok=False)], 0.0)
    report = make_report(Target(service="orders"), None, Scored(0.0, Verdict.FAIL, [], []), [Outcome("health", "Deployment", True,
                         result, 5)], datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert report["checks"][0]["evidence"][0]["measured"] == shown
