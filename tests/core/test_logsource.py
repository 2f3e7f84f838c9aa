"""core.logsource: the filter sent, the official client over REST against FakeLogging, and local log files."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import AccessDenied, LoggingUnavailable, Transient
from core.logsource import CloudLoggingSource, FileLogSource, LogBatch, LogScope, build_filter
from tests.conftest import DATA
from tests.servers.fake_logging import FakeLogging, rfc3339

LOGS = DATA / "logs"
NEW = "orders-00042-new"
SCOPE = LogScope("orders", NEW, "acme-prod", "us-central1")
SINCE = datetime(2026, 11, 25, 10, 3, 30, 123456, tzinfo=UTC)
UNTIL = datetime(2026, 11, 25, 10, 8, 30, tzinfo=UTC)
EXPECTED_FILTER = (
    'resource.type="cloud_run_revision" AND resource.labels.service_name="orders" '
    'AND resource.labels.revision_name="orders-00042-new" AND resource.labels.location="us-central1" '
    'AND timestamp>="2026-11-25T10:03:30.123456Z" AND timestamp<="2026-11-25T10:08:30.000000Z" '
    'AND (severity>=ERROR OR httpRequest.status>=500 OR textPayload:"Traceback" OR jsonPayload.message:"Traceback")'
)


def recorded(name: str, when: datetime, revision: str = "orders-00042-new") -> dict[str, Any]:
    """A real-shaped entry from tests/data/logs, stamped and attributed to a revision."""
    entry: dict[str, Any] = copy.deepcopy(json.loads((LOGS / "cloud_run_entries.json").read_text(encoding="utf-8"))[name])
    entry["timestamp"] = entry["receiveTimestamp"] = rfc3339(when)
    entry["resource"]["labels"]["revision_name"] = revision
    return entry


@pytest.fixture
def fake(fake_logging: FakeLogging) -> FakeLogging:
    return fake_logging


def ask(source: Any, **kwargs: Any) -> LogBatch:
    kwargs.setdefault("text_search", ("Traceback",))
    batch: LogBatch = asyncio.run(source.entries(SCOPE, SINCE, UNTIL, **kwargs))
    return batch


def test_filter_names_the_revision_both_time_bounds_and_the_signals() -> None:
    assert build_filter(SCOPE, SINCE, UNTIL, text_search=("Traceback",)) == EXPECTED_FILTER


def test_filter_without_selectors_asks_for_any_entry() -> None:
    text = build_filter(SCOPE, SINCE, UNTIL, min_severity=None, include_requests=False)
    assert text.endswith('timestamp<="2026-11-25T10:08:30.000000Z"') and "(" not in text


def test_one_call_through_the_official_client_with_the_filter_and_page_size(fake: FakeLogging) -> None:
    inside = SINCE + timedelta(seconds=30)
    for name in ("python_traceback", "json_stack_trace", "request_503", "request_200"):
        fake.entries.append(recorded(name, inside))
    fake.entries.append(recorded("python_traceback", SINCE - timedelta(seconds=1)))  # before the window
    fake.entries.append(recorded("python_traceback", inside, revision="orders-00041-old"))
    batch = ask(CloudLoggingSource(), limit=500)
    (sent,) = fake.requests
    assert sent["filter"] == EXPECTED_FILTER  # no "now-24h" appended by the client: the bounds are explicit
    assert sent["pageSize"] == 500 and sent["resourceNames"] == ["projects/acme-prod"]
    assert sent["orderBy"] == "timestamp asc"
    assert [(e.http_status, e.severity, e.revision) for e in batch.entries] == [
        (None, "DEFAULT", "orders-00042-new"), (None, "ERROR", "orders-00042-new"), (503, "ERROR", "orders-00042-new")]
    assert batch.entries[0].text.endswith("KeyError: 'sku'")
    assert "httpx.HTTPStatusError" in batch.entries[1].text and batch.entries[1].payload is not None
    assert batch.entries[2].http_method == "POST" and batch.calls == 1 and not batch.truncated


def test_a_full_page_is_truncated_not_paged_on(fake: FakeLogging) -> None:
    for i in range(3):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    batch = ask(CloudLoggingSource(), limit=2)
    assert len(fake.requests) == 1 and len(batch.entries) == 2 and batch.truncated


def test_429_is_retried_after_a_pause(fake: FakeLogging) -> None:
    fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=5)))
    fake.fail_next(1, 429)
    source = CloudLoggingSource(backoff_s=0.05)
    started = time.monotonic()
    batch = ask(source, deadline=time.monotonic() + 10)
    assert time.monotonic() - started >= 0.05
    assert len(batch.entries) == 1 and batch.calls == 2 and len(fake.requests) == 2 and source.calls == 2


def test_429_beyond_the_deadline_is_unavailable(fake: FakeLogging) -> None:
    fake.fail_next(5, 429)
    with pytest.raises(LoggingUnavailable, match=r"quota exceeded \(429.*after 1 attempt"):
        ask(CloudLoggingSource(backoff_s=5.0), deadline=time.monotonic() + 1)
    assert len(fake.requests) == 1


def test_5xx_after_every_attempt_is_transient(fake: FakeLogging) -> None:
    fake.fail_next(3, 503)
    with pytest.raises(Transient, match=r"Cloud Logging failed.*after 3 attempts"):
        ask(CloudLoggingSource(backoff_s=0.01, max_attempts=3))
    assert len(fake.requests) == 3


def test_403_names_the_role(fake: FakeLogging) -> None:
    fake.fail_next(1, 403)
    with pytest.raises(AccessDenied, match=r"projects/acme-prod.*roles/logging\.viewer"):
        ask(CloudLoggingSource())
    assert len(fake.requests) == 1


def test_fake_evaluates_the_or_group(fake: FakeLogging) -> None:
    inside = SINCE + timedelta(seconds=1)
    for severity, line in (("INFO", "all good"), ("DEFAULT", "Traceback (most recent call last):")):
        fake.add_revision_entry("orders", NEW, project="acme-prod", severity=severity, text=line, timestamp=inside)
    assert [e.text for e in ask(CloudLoggingSource()).entries] == ["Traceback (most recent call last):"]


def test_json_lines_file() -> None:
    source = FileLogSource(LOGS / "local.jsonl", default_revision="orders-00042-new")
    batch = ask(source)
    assert [(e.severity, e.http_status) for e in batch.entries] == [("ERROR", None), ("INFO", 503)]
    assert batch.entries[0].text.endswith("KeyError: 'gift-card'") and batch.entries[0].revision == "orders-00042-new"
    anything = ask(source, min_severity=None, text_search=(), include_requests=False)
    assert len(anything.entries) == 5  # the previous revision's line and nothing outside the window
    old = asyncio.run(source.entries(LogScope("orders", "orders-00041-old"), SINCE - timedelta(hours=1), SINCE))
    assert [e.text for e in old.entries] == ["old failure"]


def test_plain_text_file_keeps_a_chained_traceback_in_one_entry() -> None:
    batch = ask(FileLogSource(LOGS / "local.txt"), text_search=("Traceback", "DeprecationWarning"))
    texts = [e.text for e in batch.entries]
    assert len(texts) == 2
    assert texts[0].startswith("ERROR sample: checkout failed") and texts[0].endswith("unknown item 'gift-card'")
    assert "During handling" in texts[0]
    assert texts[1].startswith("/srv/sample/db.py:17: DeprecationWarning") and texts[1].endswith("datetime.utcnow()")


def test_a_missing_file_has_no_entries(tmp_path: Any) -> None:
    assert ask(FileLogSource(tmp_path / "nothing.log")).entries == []
