"""core.logsource: the filter sent, bounded paging through the official client's REST connection against
FakeLogging, tracebacks stitched back together, and local log files."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks.logs import group, signature_of
from core.errors import AccessDenied, LoggingUnavailable, Transient
from core.logsource import (
    MAX_PAGES,
    STITCH_GAP_S,
    CloudLoggingSource,
    FileLogSource,
    LogBatch,
    LogEntry,
    build_filter,
    parse_log_text,
    stitch,
)
from core.model import RevisionScope
from tests.servers.data import DATA, NEW, RECORDED
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
# A Python 3.11 traceback as Cloud Run stores plain stdout: one DEFAULT entry per line, nanosecond timestamps.
SPLIT = json.loads((LOGS / "split_traceback.json").read_text(encoding="utf-8"))
SPLIT_LINES = [e["textPayload"] for e in SPLIT]
SPLIT_KEY = "ValueError at orders/pricing.py parse_quantity"
INSTANCE_A, INSTANCE_B = SPLIT[0]["labels"]["instanceId"], "0066d924aa77e0b9c4f1"
KEY_LINES = RECORDED["python_traceback"]["textPayload"].splitlines()
CHAINED_LINES = [*KEY_LINES, "", "During handling of the above exception, another exception occurred:", "",
                 "Traceback (most recent call last):", '  File "/app/orders/api.py", line 50, in handle_checkout',
                 "    raise NotFound(sku)", "orders.errors.NotFound: sku"]


def split(lines: list[str], start: datetime, *, instance: str = INSTANCE_A, severity: str = "DEFAULT",
          log: str = "run.googleapis.com%2Fstdout", gap_s: float = 0.001) -> list[dict[str, Any]]:
    """The recorded split traceback's entry shape, one entry per line of `lines`, `gap_s` apart from `start`."""
    entries = []
    for i, line in enumerate(lines):
        entry: dict[str, Any] = copy.deepcopy(SPLIT[0])
        entry["timestamp"] = entry["receiveTimestamp"] = rfc3339(start + timedelta(seconds=i * gap_s))
        entry["insertId"] = f"{instance[-6:]}{start:%S%f}{i:03d}"
        entry.update(severity=severity, textPayload=line, logName=f"projects/acme-prod/logs/{log}")
        entry["labels"]["instanceId"] = instance
        entries.append(entry)
    return entries


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
    fake.entries += split(SPLIT_LINES, SINCE + timedelta(seconds=10))
    fake.entries += split(SPLIT_LINES, SINCE + timedelta(seconds=20))
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
    lines = split(SPLIT_LINES, SINCE + timedelta(seconds=30))
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
    fake.entries += split(SPLIT_LINES, SINCE + timedelta(seconds=30), severity="ERROR", log="run.googleapis.com%2Fstderr")
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert batch.fetched == 5 and [e.text for e in batch.entries] == ["\n".join(SPLIT_LINES)]
    assert batch.entries[0].severity == "ERROR"
    assert {key: sig.count for key, sig in group(batch.entries)[0].items()} == {SPLIT_KEY: 1}


def test_tracebacks_of_two_instances_interleaved_line_by_line_are_stitched_apart(fake: FakeLogging) -> None:
    start = SINCE + timedelta(seconds=30)
    fake.entries += split(SPLIT_LINES, start, gap_s=0.002, log="run.googleapis.com%2Fstderr")
    fake.entries += split(KEY_LINES, start + timedelta(seconds=0.001), instance=INSTANCE_B, gap_s=0.002,
                          log="run.googleapis.com%2Fstderr")
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert [(e.instance, signature_of(e)[0]) for e in batch.entries] == [
        (INSTANCE_A, SPLIT_KEY), (INSTANCE_B, "KeyError at orders/api.py handle_checkout")]
    assert batch.entries[1].text.endswith("KeyError: 'sku'") and "pricing" not in batch.entries[1].text


def test_a_chained_traceback_stays_one_entry(fake: FakeLogging) -> None:
    fake.entries += split(CHAINED_LINES, SINCE + timedelta(seconds=30))
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
        lines += split([line], when)
    fake.entries += lines
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert [e.text.splitlines() for e in batch.entries] == texts


def test_a_second_traceback_right_after_the_first_is_an_entry_of_its_own(fake: FakeLogging) -> None:
    start = SINCE + timedelta(seconds=30)
    fake.entries += split(SPLIT_LINES, start) + split(SPLIT_LINES, start + timedelta(seconds=0.5))
    batch = ask(CloudLoggingSource(), traceback_lines=True)
    assert {key: sig.count for key, sig in group(batch.entries)[0].items()} == {SPLIT_KEY: 2}


def test_stitch_passes_other_entries_through_in_order() -> None:
    at = datetime(2026, 11, 25, 10, 4, 1, tzinfo=UTC)

    def line(text: str, ms: int, instance: str = "a", log: str = "stdout", **fields: Any) -> LogEntry:
        return LogEntry(at + timedelta(milliseconds=ms), text=text, instance=instance, log_name=log, **fields)

    entries = [
        line("listening", 0), line("Traceback (most recent call last):", 1),
        line("GET /x 200", 2, log="requests", http_status=200),
        line("Traceback (most recent call last):", 3, "b"), line('  File "/app/x.py", line 3, in f', 4),
        line("handled", 5, "c", payload={"message": "handled"}), line("ValueError: boom", 6, severity="ERROR"),
        line('  File "/app/y.py", line 9, in g', 7, "b"), line("done", 8), line("KeyError: 'k'", 9, "b"),
    ]
    out = stitch(entries)
    assert [e.text for e in out] == [
        "listening", 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\nValueError: boom',
        "GET /x 200", "Traceback (most recent call last):\n  File \"/app/y.py\", line 9, in g\nKeyError: 'k'", "handled",
        "done"]
    assert out[1].severity == "ERROR" and out[1].timestamp == entries[1].timestamp and out[3].instance == "b"
    assert stitch(out) == out and out[0] is entries[0] and out[2] is entries[2]


def test_an_unrelated_line_among_the_frames_stays_apart_and_the_block_goes_on() -> None:
    at = datetime(2026, 11, 25, 10, 4, 1, tzinfo=UTC)
    texts = ["Traceback (most recent call last):", '  File "/app/main.py", line 8, in handler', "db timeout after 5 s",
             "KeyError: 'sku'"]
    severities = ["ERROR", "ERROR", "ERROR", "ERROR"]  # stderr lines of one instance, another request's line among them
    entries = [LogEntry(at + timedelta(milliseconds=i), severity=sev, text=t, instance="a", log_name="stderr")
               for i, (t, sev) in enumerate(zip(texts, severities, strict=True))]
    out = stitch(entries)
    assert [e.text for e in out] == ["\n".join([texts[0], texts[1], texts[3]]), texts[2]]
    assert signature_of(out[0])[0] == "KeyError at app/main.py handler"
    assert signature_of(out[1])[0] == "db timeout after <n> s"


def test_plain_text_tracebacks_in_a_row_are_separate_entries() -> None:
    first = "\n".join(SPLIT_LINES)
    texts = [e.text for e in parse_log_text(f"{first}\n{first}\nserving again\n")]
    assert texts == [first, first, "serving again"]


def test_a_json_lines_file_of_split_tracebacks_is_stitched_like_cloud_logging(tmp_path: Any) -> None:
    start = SINCE + timedelta(seconds=30)
    lines = split(SPLIT_LINES, start, gap_s=0.002) + split(KEY_LINES, start + timedelta(seconds=0.001),
                                                          instance=INSTANCE_B, gap_s=0.002)
    lines.sort(key=lambda e: str(e["timestamp"]))
    path = tmp_path / "exported.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    batch = ask(FileLogSource(path), traceback_lines=True)
    assert [(e.instance, signature_of(e)[0]) for e in batch.entries] == [
        (INSTANCE_A, SPLIT_KEY), (INSTANCE_B, "KeyError at orders/api.py handle_checkout")]
    assert batch.fetched == 3 + 5  # banners, frames and exception lines: KEY_LINES has three frames
    banners_only = ask(FileLogSource(path))
    assert [e.text for e in banners_only.entries] == ["Traceback (most recent call last):"] * 2


def test_json_lines_file() -> None:
    source = FileLogSource(LOGS / "local.jsonl", default_revision="orders-00042-new")
    batch = ask(source)
    assert [(e.severity, e.http_status) for e in batch.entries] == [("ERROR", None), ("INFO", 503)]
    assert batch.entries[0].text.endswith("KeyError: 'gift-card'") and batch.entries[0].revision == "orders-00042-new"
    anything = ask(source, min_severity=None, text_search=(), include_requests=False)
    assert len(anything.entries) == 5  # the previous revision's line and nothing outside the window
    old = asyncio.run(source.entries(RevisionScope("orders", "orders-00041-old"), SINCE - timedelta(hours=1), SINCE))
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


def test_the_request_timeout_never_reaches_past_the_deadline() -> None:
    source = CloudLoggingSource(timeout_s=30)
    assert source._timeout(0.0) == 30  # no deadline
    assert 4.0 < source._timeout(time.monotonic() + 5) <= 5.0
    assert source._timeout(time.monotonic() + 300) == 30
    assert source._timeout(time.monotonic() - 1) == 1.0  # late: one short try, not none


def test_a_log_file_is_read_again_once_it_changed(tmp_path: Any) -> None:
    path = tmp_path / "service.log"
    path.write_text("2026-11-25T10:04:00Z ERROR first failure\n", encoding="utf-8")
    source = FileLogSource(path)
    assert [e.text for e in source.read()] == ["ERROR first failure"]
    source.read().clear()  # callers get a copy: the kept entries are not theirs to change
    assert len(source.read()) == 1
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2026-11-25T10:05:00Z ERROR second failure\n")
    assert [e.text for e in source.read()] == ["ERROR first failure", "ERROR second failure"]
    path.unlink()
    assert source.read() == []
