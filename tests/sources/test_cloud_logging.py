"""sources.cloud_logging: the filter sent, bounded paging through the official client's REST connection against
FakeLogging, retries inside the deadline, and tracebacks split one line per entry stitched back together."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks.logs import group, signature_of
from core.errors import AccessDenied, LoggingUnavailable, Transient
from core.signals import LogBatch, RevisionScope
from sources.cloud_logging import MAX_PAGES, CloudLoggingSource, build_filter
from sources.log_entries import STITCH_GAP_S
from tests.servers.data import DATA, INSTANCE_A, INSTANCE_B, NEW, RECORDED, SPLIT_KEY, SPLIT_LINES, split_entries
from tests.servers.data import recorded_entry as recorded
from tests.servers.fake_logging import FakeLogging, matches
from tests.servers.loopback import rfc3339

LOGS = DATA / "logs"
SCOPE = RevisionScope("orders", NEW, "acme-prod", "us-central1")
SINCE = datetime(2026, 11, 25, 10, 3, 30, 123456, tzinfo=UTC)
UNTIL = datetime(2026, 11, 25, 10, 8, 30, tzinfo=UTC)
EXPECTED_FILTER = (
    'resource.type="cloud_run_revision" AND resource.labels.service_name="orders" '
    'AND resource.labels.revision_name="orders-00042-new" AND resource.labels.location="us-central1" '
    'AND timestamp>="2026-11-25T10:03:30.123456Z" AND timestamp<="2026-11-25T10:08:30.000000Z" '
    'AND (severity>=ERROR OR httpRequest.status>=500 OR textPayload:"Traceback" OR jsonPayload.message:"Traceback")'
)
# The traceback_lines selectors as sent: RE2 patterns in quoted strings, backslashes and quotes escaped.
TRACEBACK_SELECTORS = (
    r'textPayload=~"^\\s+File \"" OR '
    r'textPayload=~"^(?:(?:[A-Za-z_]\\w*\\.)*[A-Z]\\w*[a-z]\\w*: |(?:[A-Za-z_]\\w*\\.)*\\w*(?:Error|Exception|Exit|Interrupt|'
    r'Iteration|Warning)$|(?:[A-Za-z_]\\w*\\.)+[A-Z]\\w*$)" OR '
    r'textPayload=~"^(?:Traceback \\(most recent call last\\)|During handling of the above exception|'
    r'The above exception was the direct cause)"'
)
KEY_LINES = RECORDED["python_traceback"]["textPayload"].splitlines()
CHAINED_LINES = [*KEY_LINES, "", "During handling of the above exception, another exception occurred:", "",
                 "Traceback (most recent call last):", '  File "/app/orders/api.py", line 50, in handle_checkout',
                 "    raise NotFound(sku)", "orders.errors.NotFound: sku"]


@pytest.fixture
def fake(fake_logging: FakeLogging) -> FakeLogging:
    return fake_logging


def ask(source: Any, **kwargs: Any) -> LogBatch:
    kwargs.setdefault("text_search", ("Traceback",))
    batch: LogBatch = asyncio.run(source.entries(SCOPE, SINCE, UNTIL, **kwargs))
    return batch


def test_filter_names_the_revision_both_time_bounds_and_the_signals() -> None:
    assert build_filter(SCOPE, SINCE, UNTIL, text_search=("Traceback",)) == EXPECTED_FILTER


def test_filter_with_traceback_lines_adds_quoted_regex_selectors() -> None:
    text = build_filter(SCOPE, SINCE, UNTIL, text_search=("Traceback",), traceback_lines=True)
    assert text == EXPECTED_FILTER[:-1] + " OR " + TRACEBACK_SELECTORS + ")"


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
    assert (batch.entries[0].instance, batch.entries[0].log_name) == (
        "0066d924aa1b2c3d4e5f", "projects/acme-prod/logs/run.googleapis.com%2Fstderr")
    assert "httpx.HTTPStatusError" in batch.entries[1].text and batch.entries[1].payload is not None
    assert batch.entries[2].payload is None and batch.entries[2].text.startswith("POST https://orders-abc123")
    assert batch.entries[2].http_method == "POST" and batch.calls == 1 and not batch.truncated


def test_a_full_page_is_truncated_not_paged_on(fake: FakeLogging) -> None:
    for i in range(3):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    batch = ask(CloudLoggingSource(), limit=2)
    assert len(fake.requests) == 1 and len(batch.entries) == 2 and batch.truncated


def test_a_short_page_is_followed_and_every_request_counted(fake: FakeLogging) -> None:
    for i in range(3):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    fake.short_pages(2)  # a partial page that still carries a nextPageToken
    source = CloudLoggingSource()
    batch = ask(source, limit=500)
    first, second = fake.requests
    assert first["pageSize"] == 500 and "pageToken" not in first
    assert (second["pageSize"], second["pageToken"], second["filter"]) == (1000, "2", first["filter"])
    assert batch.calls == source.calls == len(fake.requests) == 2
    assert (len(batch.entries), batch.fetched, batch.truncated) == (3, 3, False)


def test_paging_stops_after_max_pages_and_says_truncated(fake: FakeLogging) -> None:
    for i in range(10):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    fake.short_pages(2)
    batch = ask(CloudLoggingSource(), limit=500)
    assert len(fake.requests) == batch.calls == MAX_PAGES
    assert batch.fetched == 2 * MAX_PAGES and batch.truncated  # a nextPageToken remained unread


def test_paging_stops_once_the_limit_is_reached(fake: FakeLogging) -> None:
    for i in range(5):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    fake.short_pages(2)
    batch = ask(CloudLoggingSource(), limit=3)
    assert [r["pageSize"] for r in fake.requests] == [3, 1000]
    assert (batch.calls, batch.fetched, len(batch.entries), batch.truncated) == (2, 4, 3, True)


def test_the_limit_counts_tracebacks_not_their_lines(fake: FakeLogging) -> None:
    fake.entries += split_entries(SPLIT_LINES, SINCE + timedelta(seconds=10))
    fake.entries += split_entries(SPLIT_LINES, SINCE + timedelta(seconds=20))
    batch = ask(CloudLoggingSource(), traceback_lines=True, limit=2)
    # 6 lines are fetched (banner, frame, exception line of each); the first page of 2 lines holds half a
    # traceback, so its token is followed for the rest
    assert [r["pageSize"] for r in fake.requests] == [2, 1000] and batch.calls == 2
    assert (len(batch.entries), batch.fetched, batch.truncated) == (2, 6, False)
    assert all(e.text.startswith("Traceback") and e.text.endswith(SPLIT_LINES[4]) for e in batch.entries)


def test_no_further_page_when_a_whole_request_would_not_fit_before_the_deadline(fake: FakeLogging) -> None:
    for i in range(3):
        fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=i)))
    fake.short_pages(1)
    batch = ask(CloudLoggingSource(timeout_s=30), deadline=time.monotonic() + 5)
    assert len(fake.requests) == batch.calls == 1 and batch.fetched == 1 and batch.truncated


def test_a_slow_answer_is_cut_by_the_request_timeout_and_retried_within_bounds(fake: FakeLogging) -> None:
    fake.entries.append(recorded("python_traceback", SINCE + timedelta(seconds=5)))
    fake.delay_s = 2.0  # without a timeout the request would wait and succeed
    source = CloudLoggingSource(backoff_s=0.01, max_attempts=2, timeout_s=0.2)
    with pytest.raises(LoggingUnavailable, match=r"Cloud Logging unreachable: .*timed out.* after 2 attempts"):
        ask(source)
    assert len(fake.requests) == source.calls == 2


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


@pytest.mark.parametrize(("expression", "text", "hit"), [
    pytest.param(r'textPayload=~"^\\s+File \""', '  File "/app/x.py", line 3, in f', True, id="regex-escaped-quote"),
    pytest.param(r'textPayload=~"^\\s+File \""', 'File "/app/x.py", line 3, in f', False, id="regex-anchored"),
    pytest.param(r'textPayload!~"^\\s+File \""', "ValueError: boom", True, id="negated-regex"),
    pytest.param(r'textPayload=~"boom$" AND severity>=ERROR', "ValueError: boom", False, id="regex-and-severity"),
    pytest.param(r'jsonPayload.message=~"boom"', "ValueError: boom", False, id="regex-on-a-missing-field"),
    pytest.param(r'jsonPayload.message!~"boom"', "ValueError: boom", True, id="negated-regex-on-a-missing-field"),
])
def test_fake_evaluates_regex_operators(expression: str, text: str, hit: bool) -> None:
    assert matches({"textPayload": text, "severity": "DEFAULT"}, expression) is hit


def test_a_traceback_split_one_line_per_entry_comes_back_as_one_entry(fake: FakeLogging) -> None:
    lines = split_entries(SPLIT_LINES, SINCE + timedelta(seconds=30))
    fake.entries += lines
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    (sent,) = fake.requests
    assert sent["filter"].endswith(" OR " + TRACEBACK_SELECTORS + ")")
    (entry,) = batch.entries
    # The code and caret lines match no selector: the frame and the exception line are what signatures need.
    assert entry.text == "\n".join([SPLIT_LINES[0], SPLIT_LINES[1], SPLIT_LINES[4]]) and batch.fetched == 3
    assert (entry.insert_id, entry.instance, entry.severity, entry.payload) == (lines[0]["insertId"], INSTANCE_A, "DEFAULT", None)
    assert entry.log_name == "projects/acme-prod/logs/run.googleapis.com%2Fstdout" and entry.revision == NEW
    assert entry.timestamp is not None and rfc3339(entry.timestamp) == lines[0]["timestamp"]
    assert signature_of(entry) == (SPLIT_KEY, "ValueError at orders/pricing.py:27 parse_quantity")


def test_a_split_traceback_on_stderr_at_error_is_one_signature_not_five(fake: FakeLogging) -> None:
    fake.entries += split_entries(SPLIT_LINES, SINCE + timedelta(seconds=30), severity="ERROR", log="run.googleapis.com%2Fstderr")
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert batch.fetched == 5 and [e.text for e in batch.entries] == ["\n".join(SPLIT_LINES)]
    assert batch.entries[0].severity == "ERROR"
    assert {key: sig.count for key, sig in group(batch.entries)[0].items()} == {SPLIT_KEY: 1}


def test_tracebacks_of_two_instances_interleaved_line_by_line_are_stitched_apart(fake: FakeLogging) -> None:
    start = SINCE + timedelta(seconds=30)
    fake.entries += split_entries(SPLIT_LINES, start, gap_s=0.002, log="run.googleapis.com%2Fstderr")
    fake.entries += split_entries(KEY_LINES, start + timedelta(seconds=0.001), instance=INSTANCE_B, gap_s=0.002,
                          log="run.googleapis.com%2Fstderr")
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert [(e.instance, signature_of(e)[0]) for e in batch.entries] == [
        (INSTANCE_A, SPLIT_KEY), (INSTANCE_B, "KeyError at orders/api.py handle_checkout")]
    assert batch.entries[1].text.endswith("KeyError: 'sku'") and "pricing" not in batch.entries[1].text


def test_a_chained_traceback_stays_one_entry(fake: FakeLogging) -> None:
    fake.entries += split_entries(CHAINED_LINES, SINCE + timedelta(seconds=30))
    (entry,) = ask(CloudLoggingSource(), traceback_lines=True).entries
    assert "During handling of the above exception" in entry.text and "KeyError: 'sku'" in entry.text
    assert signature_of(entry)[0] == "orders.errors.NotFound at orders/api.py handle_checkout"


@pytest.mark.parametrize(("gaps_s", "texts"), [
    pytest.param([0.001, 0.001, 0.001, STITCH_GAP_S + 1], [SPLIT_LINES[:2], SPLIT_LINES[4:]], id="pause-before-the-exception"),
    pytest.param([0.001, 0.001, 0.001, 0.001], [SPLIT_LINES[:2] + SPLIT_LINES[4:]], id="no-pause"),
])
def test_a_pause_longer_than_the_stitch_gap_ends_the_block(fake: FakeLogging, gaps_s: list[float],
                                                           texts: list[list[str]]) -> None:
    lines, when = [], SINCE + timedelta(seconds=30)
    for line, gap in zip(SPLIT_LINES, [0.0, *gaps_s], strict=True):
        when += timedelta(seconds=gap)
        lines += split_entries([line], when)
    fake.entries += lines
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert [e.text.splitlines() for e in batch.entries] == texts


def test_a_second_traceback_right_after_the_first_is_an_entry_of_its_own(fake: FakeLogging) -> None:
    start = SINCE + timedelta(seconds=30)
    fake.entries += split_entries(SPLIT_LINES, start) + split_entries(SPLIT_LINES, start + timedelta(seconds=0.5))
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert {key: sig.count for key, sig in group(batch.entries)[0].items()} == {SPLIT_KEY: 2}


def test_the_request_timeout_never_reaches_past_the_deadline() -> None:
    source = CloudLoggingSource(timeout_s=30)
    assert source._timeout(0.0) == 30  # no deadline
    assert 4.0 < source._timeout(time.monotonic() + 5) <= 5.0
    assert source._timeout(time.monotonic() + 300) == 30
    assert source._timeout(time.monotonic() - 1) == 1.0  # late: one short try, not none
