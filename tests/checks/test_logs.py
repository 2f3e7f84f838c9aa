"""logs: signatures on real-shaped entries, new/gone/increased by rate, and the queries sent to FakeLogging."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from checks import logs
from core.model import CheckResult, NotMeasured, Status, Target
from core.signals import PAGE_SIZE_MAX, LogBatch, LogEntry, LogSource, RevisionScope
from sources.cloud_logging import MAX_ATTEMPTS, CloudLoggingSource
from sources.log_entries import TRACEBACK_LINE_PATTERNS, FileLogSource, entry_from_parts
from tests.checks.helpers import NEW, OLD, revision_target, run_check
from tests.servers.data import DATA, RECORDED
from tests.servers.data import recorded_entry as entry
from tests.servers.fake_logging import FakeLogging
from tests.servers.loopback import rfc3339

# A Python traceback as Cloud Run stores plain stdout: one DEFAULT entry per line.
SPLIT = json.loads((DATA / "logs" / "split_traceback.json").read_text(encoding="utf-8"))
TRACEBACK_SELECTORS = " OR ".join(f"textPayload=~{json.dumps(p)}" for p in TRACEBACK_LINE_PATTERNS)
FAST = {"settle_s": 0}


def as_entry(name: str) -> LogEntry:
    data = RECORDED[name]
    return entry_from_parts(timestamp=None, severity=data["severity"], payload=data.get("jsonPayload", data.get("textPayload")),
                            http_request=data.get("httpRequest"))


def text(value: str, severity: str = "ERROR") -> LogEntry:
    return LogEntry(None, severity=severity, text=value)


def check(source: LogSource | None, tgt: Target, **settings: Any) -> CheckResult:
    return run_check(logs, tgt, logs.Config(**{**FAST, **settings}), log_source=source)


@pytest.fixture
def fake(fake_logging: FakeLogging) -> FakeLogging:
    return fake_logging


TRACEBACK = '''Traceback (most recent call last):
  File "/app/orders/api.py", line 42, in handle_checkout
    order = ORDERS[order_id]
KeyError: 'ord_7Hq2xK9p'
'''


@pytest.mark.parametrize(("entry_", "title"), [
    pytest.param(as_entry("python_traceback"), "KeyError at orders/api.py:42 handle_checkout", id="traceback-in-textPayload"),
    pytest.param(as_entry("json_stack_trace"), "httpx.HTTPStatusError at httpx/_models.py:829 raise_for_status",
                 id="json-message-and-stack_trace"),
    pytest.param(as_entry("request_503"), "HTTP 503 POST /orders/{id}/checkout", id="request-log-503"),
    pytest.param(as_entry("deprecation"), "DeprecationWarning: datetime.datetime.utcnow() is deprecated and scheduled for "
                 "removal in a future version. Use timezone-aware objects to represent datetimes in UTC: datetime.date…",
                 id="deprecation-warning-capped"),
    pytest.param(text("ERROR checkout failed for user 'bob' after 3 tries\n  at line two"),
                 "ERROR checkout failed for user '<value>' after <n> tries", id="multi-line-text-first-line"),
    pytest.param(text(f"handled request\n{TRACEBACK}\nDuring handling of the above exception, another exception occurred:\n\n"
                      'Traceback (most recent call last):\n  File "/app/orders/api.py", line 50, in handle_checkout\n'
                      "    raise NotFound(order_id)\norders.errors.NotFound: ord_7Hq2xK9p"),
                 "orders.errors.NotFound at orders/api.py:50 handle_checkout", id="chained-traceback-last-wins"),
    pytest.param(text("Traceback (most recent call last):", "DEFAULT"), "exception (traceback without frames)",
                 id="traceback-header-alone"),
])
def test_signature_titles(entry_: LogEntry, title: str) -> None:
    assert logs.signature_of(entry_)[1] == title


def test_same_error_with_different_ids_is_one_signature() -> None:
    entries = [
        text("payment failed for order 8f14e45f-ceea-467f-a1f3-6a1a3b4c5d6e at 2026-11-25T10:04:01.5Z: 'card_declined' (hash deadbeef42)"),
        text("payment failed for order 0b6d5e2c-1a77-4c1e-9a8f-4f1c9a2e7d3b at 2026-11-25T10:05:17Z: 'no_funds' (hash 9c0ffee1b)"),
        text(TRACEBACK), text(TRACEBACK.replace("ord_7Hq2xK9p", "ord_Zz91aa0q").replace("line 42", "line 43")),
    ]
    grouped, _ = logs.group(entries)
    assert {k: s.count for k, s in grouped.items()} == {
        "payment failed for order <uuid> at <time>: '<value>' (hash <hex>)": 2,
        "KeyError at orders/api.py handle_checkout": 2,
    }


def test_classification_by_rate_new_gone_increased() -> None:
    new, _ = logs.group([text("A")] * 10 + [text("B")] * 2 + [text("C")] * 1)
    old, _ = logs.group([text("A")] * 10 + [text("B")] * 10 + [text("D")] * 3)
    # 5 minutes now vs 50 minutes before: A went from 0.2/min to 2/min, B stayed 0.2 → 0.4.
    result = {s.key: s for s in logs.classify(new, old, 5.0, 50.0, 2.0)}
    assert {k: s.status for k, s in result.items()} == {"A": "increased", "B": "increased", "C": "new", "D": "gone"}
    assert (result["A"].rate, result["A"].previous_rate) == (2.0, 0.2)
    only_b = logs.group([text("B")] * 2)[0]  # 0.4/min now
    assert logs.classify(only_b, logs.group([text("B")] * 15)[0], 5.0, 50.0, 2.0)[0].status == "same"  # was 0.3/min
    assert logs.classify(only_b, logs.group([text("B")] * 30)[0], 5.0, 50.0, 2.0)[0].status == "fewer"  # was 0.6/min


def test_excerpts_are_redacted_and_capped() -> None:
    secret = text('login failed: password=hunter2 api_key="AKIAIOSFODNN7EXAMPLE" Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.'
                  'eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl url=https://bob:s3cret@db.internal/x ' + "x" * 900)
    cut = logs.excerpt(secret, 200)
    assert len(cut) == 200 and cut.endswith("…")
    for leaked in ("hunter2", "AKIAIOSFODNN7EXAMPLE", "eyJzdWIi", "s3cret"):
        assert leaked not in cut
    assert "password=[REDACTED]" in cut and "Bearer [REDACTED]" in cut
    assert logs.excerpt(text(TRACEBACK + "y" * 0), 60).endswith("KeyError: 'ord_7Hq2xK9p'")


def filters(fake: FakeLogging) -> dict[str, list[str]]:
    by_revision: dict[str, list[str]] = {}
    for body in fake.requests:
        revision = re.search(r'revision_name="([^"]+)"', body["filter"])
        by_revision.setdefault(revision.group(1) if revision else "", []).append(body["filter"])
    return by_revision


def test_new_error_since_deploy_fails_with_two_calls_and_explicit_windows(fake: FakeLogging) -> None:
    now = datetime.now(UTC)
    created = now - timedelta(minutes=2)
    for i in range(6):
        fake.entries.append(entry("python_traceback", created + timedelta(seconds=10 + i)))
    fake.entries.append(entry("request_200", created + timedelta(seconds=5)))
    fake.entries.append(entry("json_stack_trace", created - timedelta(minutes=3), revision=OLD))
    fake.entries.append(entry("python_traceback", created - timedelta(hours=2), revision=OLD))  # before the baseline
    source = CloudLoggingSource()
    result = check(source, revision_target(created), baseline_s=600)
    assert result.status is Status.FAIL
    assert result.summary == "new error since deploy: KeyError at orders/api.py:42 handle_checkout (6×, 3/min)"
    sent = filters(fake)
    assert len(sent[NEW]) == 1 and len(sent[OLD]) == 1 and source.calls == 2
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert f'timestamp>="{stamp}"' in sent[NEW][0]
    before = (created - timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    start = (created - timedelta(microseconds=1) - timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert f'timestamp>="{start}" AND timestamp<="{before}"' in sent[OLD][0]
    assert sent[NEW][0].endswith('AND (severity>=ERROR OR httpRequest.status>=500 OR textPayload:"Traceback" OR '
                                 'jsonPayload.message:"Traceback" OR textPayload:"DeprecationWarning" OR '
                                 'jsonPayload.message:"DeprecationWarning" OR textPayload:"FutureWarning" OR '
                                 'jsonPayload.message:"FutureWarning" OR ' + TRACEBACK_SELECTORS + ")")
    shown = {e.what: e for e in result.evidence}
    assert "gone signature: httpx.HTTPStatusError at httpx/_models.py:829 raise_for_status" in shown
    new_sig = shown["new signature: KeyError at orders/api.py:42 handle_checkout"]
    assert new_sig.previous == "0× (0/min)" and "KeyError: 'sku'" in str(new_sig.measured)


def split_traceback(start: datetime, revision: str = NEW) -> list[dict[str, Any]]:
    """The recorded five-line traceback, restamped a millisecond apart from `start`."""
    lines = copy.deepcopy(SPLIT)
    for i, data in enumerate(lines):
        data["timestamp"] = rfc3339(start + timedelta(milliseconds=i))
        data["resource"]["labels"]["revision_name"] = revision
    return lines


def test_a_traceback_split_into_lines_is_one_new_error_naming_its_exception_and_frame(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=2)
    fake.entries += split_traceback(created + timedelta(seconds=20))
    fake.entries.append(entry("request_503", created - timedelta(minutes=3), revision=OLD))
    source = CloudLoggingSource()
    result = check(source, revision_target(created))
    # Stitched, the five lines are one occurrence: below fail_count, so a warning and not five new errors.
    assert (result.status, result.critical) == (Status.WARN, True)
    assert result.reasons[0].startswith("new error since deploy, seen 1× (fewer than fail_count 3): "
                                        "ValueError at orders/pricing.py:27 parse_quantity (1×,")
    sent = filters(fake)
    assert len(sent[NEW]) <= 2 and len(sent[OLD]) <= 2 and "textPayload=~" in sent[NEW][0]
    assert any(e.what == "entries.list calls" and e.measured == f"1 for {NEW}, 1 for {OLD}" for e in result.evidence)


def test_traceback_lines_outside_a_traceback_are_not_errors(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    for i, line in enumerate(['  File "/app/orders/pricing.py", line 27, in parse_quantity', "ValueError: retrying",
                              "orders.errors.NotFound: sku"]):
        fake.add_revision_entry("orders", NEW, project="acme-prod", log="run.googleapis.com/stdout", text=line,
                                severity=("DEFAULT", "INFO", "DEFAULT")[i], timestamp=created + timedelta(seconds=5 * i + 5))
    result = check(CloudLoggingSource(), revision_target(created, previous=""))
    assert result.status is Status.PASS and result.summary.startswith(f"no errors logged by {NEW}")
    assert len(fake.requests) == 1  # the lines were found, so no presence query


@pytest.mark.parametrize("line", [
    pytest.param(text('  File "/app/x.py", line 3, in f', "DEFAULT"), id="frame-line-default"),
    pytest.param(text("ValueError: boom", "DEFAULT"), id="exception-line-default"),
    pytest.param(text("ValueError: boom", "INFO"), id="exception-line-info"),
])
def test_a_lone_traceback_line_below_error_does_not_count(line: LogEntry) -> None:
    assert logs.group([line]) == ({}, 0)


def test_known_error_at_a_higher_rate_warns(fake: FakeLogging) -> None:
    now = datetime.now(UTC)
    created = now - timedelta(minutes=1)
    for i in range(4):
        fake.entries.append(entry("request_503", created + timedelta(seconds=5 + i)))
    fake.entries.append(entry("request_503", created - timedelta(minutes=5), revision=OLD))
    result = check(CloudLoggingSource(), revision_target(created))
    assert result.status is Status.WARN and result.score == 0.5
    assert result.summary.startswith("error increased: HTTP 503 POST /orders/{id}/checkout (4×, 4/min), was 0.1/min")


def test_no_errors_but_request_logs_is_a_pass_after_one_extra_call(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.entries.append(entry("request_200", created + timedelta(seconds=3)))
    result = check(CloudLoggingSource(), revision_target(created))
    assert result.status is Status.PASS and result.summary.startswith(f"no errors logged by {NEW}")
    sent = filters(fake)
    assert len(sent[NEW]) == 2 and len(sent[OLD]) == 1
    assert fake.requests[-1]["pageSize"] == 1 and "severity" not in fake.requests[-1]["filter"]
    assert [e.measured for e in result.evidence if e.what == "entries.list calls"] == [f"2 for {NEW}, 1 for {OLD}"]


def test_any_entry_of_the_revision_proves_its_logs_are_in(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.add_revision_entry("orders", NEW, project="acme-prod", log="run.googleapis.com/stdout", text="listening on :8080",
                            severity="INFO", timestamp=created + timedelta(seconds=2))
    result = check(CloudLoggingSource(), revision_target(created, previous=""), settle_s=0.01)
    assert result.status is Status.PASS and result.summary.startswith(f"no errors logged by {NEW}")
    assert "httpRequest" not in fake.requests[-1]["filter"]  # the presence question asks for anything, not requests


def test_count_warnings_asks_for_warnings_too(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.add_revision_entry("orders", NEW, project="acme-prod", text="retrying upstream", severity="WARNING",
                            timestamp=created + timedelta(seconds=2))
    result = check(CloudLoggingSource(), revision_target(created, previous=""), count_warnings=True)
    assert "severity>=WARNING" in fake.requests[0]["filter"]
    assert result.status is Status.WARN and "retrying upstream" in result.summary


def test_nothing_ingested_yet_is_skipped_not_passed(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(seconds=20)
    fake.entries.append(entry("python_traceback", created - timedelta(minutes=1), revision=OLD))
    result = check(CloudLoggingSource(), revision_target(created))
    assert result.status is Status.SKIPPED and result.assessed
    assert "no log entries at all" in result.summary and "not a pass" in result.summary
    assert len(fake.requests) == 3


def test_deprecations_are_information_and_prove_logs_exist(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.entries.append(entry("deprecation", created + timedelta(seconds=3)))
    result = check(CloudLoggingSource(), revision_target(created))
    assert result.status is Status.PASS and len(fake.requests) == 2
    (info,) = [e for e in result.evidence if e.what.startswith("deprecation warning: ")]
    assert info.ok is None and str(info.measured).startswith("1×")


def test_ignored_errors_do_not_count(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.entries.append(entry("python_traceback", created + timedelta(seconds=3)))
    result = check(CloudLoggingSource(), revision_target(created), ignore=[r"^KeyError at orders/api\.py"])
    assert result.status is Status.PASS
    assert any(e.what == "entries ignored (logs.ignore)" and e.measured == 1 for e in result.evidence)


def test_error_rate_threshold_fails_even_without_new_signatures(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(5):
        fake.entries.append(entry("python_traceback", created + timedelta(seconds=i)))
        fake.entries.append(entry("python_traceback", created - timedelta(minutes=5, seconds=i), revision=OLD))
    result = check(CloudLoggingSource(), revision_target(created), max_error_rate_per_min=2, increase_ratio=100)
    assert result.status is Status.FAIL and result.summary.startswith("expected at most 2 errors/min, found 5/min")


def test_permission_denied_is_an_error_naming_the_role(fake: FakeLogging) -> None:
    fake.fail_next(2, 403)
    result = check(CloudLoggingSource(), revision_target(datetime.now(UTC) - timedelta(minutes=1)))
    assert (result.status, result.score) == (Status.ERROR, None) and "roles/logging.viewer" in result.summary
    [missing] = result.not_measured
    assert (missing.what, missing.why) == ("Cloud Logging", result.summary)
    assert missing.fix == "grant roles/logging.viewer to postdeploy's service account"
    assert result.critical is True  # a baseline exists: the unmeasured new-error check is a critical gap


def test_a_rejected_query_is_an_error_and_is_not_retried(fake: FakeLogging) -> None:
    fake.fail_next(2, 400)
    result = check(CloudLoggingSource(backoff_s=0.01), revision_target(datetime.now(UTC) - timedelta(minutes=1)))
    assert result.status is Status.ERROR
    assert result.summary.startswith("Cloud Logging rejected the query (400: ") and "injected failure 400" in result.summary
    # None retried: the same request would be refused again. The two revisions are asked at once, and the first
    # refusal ends the check, so the other question may or may not have reached the fake by then.
    sent = [body["filter"] for body in fake.requests]
    assert 1 <= len(sent) <= 2 and len(set(sent)) == len(sent)


def test_quota_429_then_success(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    fake.entries.append(entry("python_traceback", created + timedelta(seconds=3)))
    fake.fail_next(1, 429)
    result = check(CloudLoggingSource(backoff_s=0.01), revision_target(created, previous=""))
    # The retry read the entry: judged (a warning: one new occurrence), not an ERROR.
    assert (result.status, result.not_measured) == (Status.WARN, []) and len(fake.requests) == 2
    assert "no previous revision to compare with: every error signature counts as new" in result.reasons


def test_no_log_source_is_skipped() -> None:
    result = check(None, revision_target(datetime.now(UTC)))
    assert (result.status, result.assessed) == (Status.SKIPPED, False)
    assert result.summary == "no log source: Cloud Logging in the cloud, or a log file in local mode"


def test_local_log_file(tmp_path: Any) -> None:
    now = datetime.now(UTC)
    log = tmp_path / "service.log"
    log.write_text(f"{now:%Y-%m-%d %H:%M:%S},001 INFO sample: listening\n{now:%Y-%m-%d %H:%M:%S},002 ERROR sample: boom\n"
                   + TRACEBACK, encoding="utf-8")
    source = FileLogSource(log, default_revision=NEW)
    result = check(source, revision_target(now - timedelta(seconds=30)))
    assert (result.status, result.critical) == (Status.WARN, True)
    assert result.summary == ("new error since deploy, seen 1× (fewer than fail_count 3): "
                              "KeyError at orders/api.py:42 handle_checkout (1×, 1/min)")
    assert source.calls == 2


def test_secrets_never_reach_a_signature_title() -> None:
    key, title = logs.signature_of(text("login failed for admin password=hunter2 Authorization: Bearer sk-proj-abcdef123456"))
    assert "hunter2" not in title + key and "sk-proj-abcdef123456" not in title + key


def test_an_error_that_mentions_a_deprecation_is_still_an_error() -> None:
    entry_ = text("payment failed; see FutureWarning in the gateway client", severity="ERROR")
    assert not logs.is_deprecation(entry_)
    assert logs.is_deprecation(text("FutureWarning: pandas will change the default", severity="WARNING"))


def test_a_read_cut_off_at_max_entries_cannot_pass(fake: FakeLogging) -> None:
    now = datetime.now(UTC)
    created = now - timedelta(minutes=2)
    for i in range(4):
        fake.entries.append(entry("request_503", created + timedelta(seconds=5 + i)))
        fake.entries.append(entry("request_503", created - timedelta(minutes=5, seconds=i), revision=OLD))
    result = check(CloudLoggingSource(), revision_target(created), max_entries=3, increase_ratio=100)
    assert result.status is Status.WARN
    assert result.summary.startswith("only the first 3 matching entries of the new revision were read")


def test_pages_left_unread_cannot_pass_either(fake: FakeLogging) -> None:
    created = datetime.now(UTC) - timedelta(minutes=2)
    for i in range(5):
        fake.entries.append(entry("request_503", created + timedelta(seconds=5 + i)))
        fake.entries.append(entry("request_503", created - timedelta(minutes=5, seconds=i), revision=OLD))
    fake.short_pages(1)
    result = check(CloudLoggingSource(), revision_target(created), increase_ratio=100)
    assert result.status is Status.WARN
    assert result.summary.startswith("only the first 3 matching entries of the new revision were read")
    shown = {e.what: e.measured for e in result.evidence}
    assert shown["entries read (new revision)"] == "3 (pages left unread)"
    assert shown["entries.list calls"] == f"3 for {NEW}, 3 for {OLD}"


def two_pages(fake: FakeLogging, created: datetime) -> None:
    """Two 5xx request logs of the new revision, answered one per page."""
    fake.entries += [entry("request_503", created + timedelta(seconds=s)) for s in (5, 6)]
    fake.short_pages(1)


def test_with_less_than_the_query_reserve_left_the_check_reads_at_once(fake: FakeLogging) -> None:
    # 1.9 s is less than QUERY_RESERVE_S: no settle wait, so after the first page a whole 1 s request still fits and the
    # second page is read. Waiting the 1 s settle_s first would have left no room for it.
    created = datetime.now(UTC) - timedelta(minutes=1)
    two_pages(fake, created)
    result = check(CloudLoggingSource(timeout_s=1.0), revision_target(created, previous=""), timeout_s=1.9, settle_s=1)
    shown = {e.what: e.measured for e in result.evidence}
    assert shown["entries.list calls"] == f"2 for {NEW}" and "entries read (new revision)" not in shown


def test_the_settle_wait_comes_out_of_the_budget(fake: FakeLogging) -> None:
    # 16.9 s less QUERY_RESERVE_S leaves room for the whole 1 s settle_s; after it less than 16 s remain, too little for
    # another 16 s request, so the second page is left unread.
    created = datetime.now(UTC) - timedelta(minutes=1)
    two_pages(fake, created)
    result = check(CloudLoggingSource(timeout_s=16.0), revision_target(created, previous=""), timeout_s=16.9, settle_s=1)
    shown = {e.what: e.measured for e in result.evidence}
    assert (shown["entries.list calls"], shown["entries read (new revision)"]) == (f"1 for {NEW}", "1 (pages left unread)")


class Asked:
    """A LogSource that finds nothing and keeps the deadline each question came with."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    async def entries(self, scope: RevisionScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, traceback_lines: bool = False,
                      limit: int = PAGE_SIZE_MAX, deadline: float = 0.0) -> LogBatch:
        self.deadlines.append(deadline)
        return LogBatch(calls=1)


def test_every_question_carries_the_runs_deadline() -> None:
    source = Asked()
    deadline = time.monotonic() + 30  # sooner than the check's own 90 s
    result = run_check(logs, revision_target(datetime.now(UTC) - timedelta(minutes=1)), logs.Config(**FAST), log_source=source,
                       deadline=deadline)
    assert result.status is Status.SKIPPED
    assert source.deadlines == [deadline] * 3  # both revisions' signals, then whether the new one logged anything


def test_an_old_revision_is_judged_on_its_latest_window() -> None:
    now = datetime.now(UTC)
    win = logs.windows(revision_target(now - timedelta(days=2)), logs.Config(max_window_s=3600), now)
    assert (win.until, win.since) == (now, now - timedelta(seconds=3600))


KEY_ERROR = "KeyError at orders/api.py:42 handle_checkout"
HTTP_503 = "HTTP 503 POST /orders/{id}/checkout"


def new_errors(fake: FakeLogging, created: datetime, **counts: int) -> None:
    """`counts` occurrences of each recorded entry in the new revision, one signature after the other."""
    for offset, (name, count) in enumerate(counts.items()):
        for i in range(count):
            fake.entries.append(entry(name, created + timedelta(seconds=5 + 30 * offset + i)))


def rates_hidden(text: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?/min", "R/min", text)


@pytest.mark.parametrize(
    ("counts", "settings", "status", "summary", "recurring"),
    [
        ({"python_traceback": 1}, {}, Status.WARN,
         f"new error since deploy, seen 1× (fewer than fail_count 3): {KEY_ERROR} (1×, R/min)", ("≥ 3×", "0 of 1 new", "≤ 0", True)),
        ({"python_traceback": 2}, {}, Status.WARN,
         f"new error since deploy, seen 2× (fewer than fail_count 3): {KEY_ERROR} (2×, R/min)", ("≥ 3×", "0 of 1 new", "≤ 0", True)),
        ({"python_traceback": 3}, {}, Status.FAIL, f"new error since deploy: {KEY_ERROR} (3×, R/min)",
         ("≥ 3×", "1 of 1 new", "≤ 0", False)),
        ({"python_traceback": 6}, {}, Status.FAIL, f"new error since deploy: {KEY_ERROR} (6×, R/min)",
         ("≥ 3×", "1 of 1 new", "≤ 0", False)),
        ({"python_traceback": 1}, {"fail_count": 1}, Status.FAIL, f"new error since deploy: {KEY_ERROR} (1×, R/min)",
         ("≥ 1×", "1 of 1 new", "≤ 0", False)),
        ({"python_traceback": 4}, {"fail_count": 5}, Status.WARN,
         f"new error since deploy, seen 4× (fewer than fail_count 5): {KEY_ERROR} (4×, R/min)", ("≥ 5×", "0 of 1 new", "≤ 0", True)),
        ({"python_traceback": 3}, {"max_new_signatures": 1}, Status.WARN, f"new error since deploy: {KEY_ERROR} (3×, R/min)",
         ("≥ 3×", "1 of 1 new", "≤ 1", True)),
        ({"python_traceback": 3, "request_503": 3}, {"max_new_signatures": 1}, Status.FAIL,
         f"new error since deploy: {KEY_ERROR} (3×, R/min) (+1 more)", ("≥ 3×", "2 of 2 new", "≤ 1", False)),
        ({"python_traceback": 1, "request_503": 3}, {}, Status.FAIL,
         f"new error since deploy: {HTTP_503} (3×, R/min) (+1 more)", ("≥ 3×", "1 of 2 new", "≤ 0", False)),
    ],
    ids=["single-occurrence-warns", "fail-count-minus-one-warns", "exactly-fail-count-fails", "recurring-fails",
         "fail-count-1-fails-on-one", "below-a-raised-fail-count-warns", "one-recurring-within-max-new-signatures-warns",
         "two-recurring-over-max-new-signatures-fail", "recurring-leads-a-rarer-one"],
)
def test_a_new_signature_fails_once_it_recurs_fail_count_times(fake: FakeLogging, counts: dict[str, int], settings: dict[str, Any],
                                                               status: Status, summary: str,
                                                               recurring: tuple[str, str, str, bool]) -> None:
    created = datetime.now(UTC) - timedelta(minutes=2)
    new_errors(fake, created, **counts)
    result = check(CloudLoggingSource(), revision_target(created), **settings)
    assert (result.status, rates_hidden(result.summary)) == (status, summary)
    assert result.score == (0.0 if status is Status.FAIL else 0.5)
    at_least, measured, threshold, ok = recurring
    assert [(e.measured, e.threshold, e.ok) for e in result.evidence if e.what == f"new error signatures ({at_least})"] == [
        (measured, threshold, ok)]
    assert sum(1 for r in result.reasons if r.startswith("new error since deploy")) == len(counts)  # every new one is listed


def test_defaults_and_limits_of_the_new_signature_thresholds() -> None:
    config = logs.Config()
    assert (config.fail_count, config.max_new_signatures, config.critical) == (3, 0, None)
    with pytest.raises(ValidationError, match="fail_count"):
        logs.Config(fail_count=0)


@pytest.mark.parametrize(
    ("previous", "settings", "errors", "status", "critical"),
    [
        (OLD, {}, 3, Status.FAIL, True),
        ("", {}, 3, Status.FAIL, False),
        (OLD, {}, 0, Status.PASS, True),
        (OLD, {"critical": True}, 3, Status.FAIL, None),
        (OLD, {"critical": False}, 3, Status.FAIL, None),
        ("", {"critical": True}, 3, Status.FAIL, None),
    ],
    ids=["baseline-makes-it-critical", "no-baseline-not-critical", "a-pass-with-a-baseline-too", "explicit-true-decides",
         "explicit-false-decides", "explicit-true-without-baseline"],
)
def test_new_errors_are_critical_when_there_is_a_revision_to_compare_with(fake: FakeLogging, previous: str, settings: dict[str, Any],
                                                                          errors: int, status: Status,
                                                                          critical: bool | None) -> None:
    created = datetime.now(UTC) - timedelta(minutes=2)
    new_errors(fake, created, python_traceback=errors, request_200=1)
    result = check(CloudLoggingSource(), revision_target(created, previous=previous), **settings)
    assert (result.status, result.critical) == (status, critical)
    assert logs.Config(**settings).critical is settings.get("critical")


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (403, "grant roles/logging.viewer to postdeploy's service account"),
        (429, "validate again later: the API kept answering 429/5xx or could not be reached"),
        (503, "validate again later: the API kept answering 429/5xx or could not be reached"),
    ],
    ids=["permission-denied", "quota-after-retries", "outage-after-retries"],
)
def test_cloud_logging_failures_are_not_measured_and_name_the_fix(fake: FakeLogging, status: int, fix: str) -> None:
    created = datetime.now(UTC) - timedelta(minutes=1)
    new_errors(fake, created, python_traceback=3)
    fake.fail_next(50, status)
    result = check(CloudLoggingSource(backoff_s=0.001), revision_target(created, previous=""))
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, False)  # no baseline: not critical
    assert result.not_measured == [NotMeasured("Cloud Logging", result.summary, fix)]
    assert len(fake.requests) == (1 if status == 403 else MAX_ATTEMPTS)  # only a transient answer is worth a retry


# ---------------------------------------------------------------- the verdict on fixed entries and windows

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
WINDOWS = logs._Windows(T0, T0 + timedelta(minutes=5), T0 - timedelta(minutes=10), T0)  # 5 min now, 10 min before
REFUND = "refund failed because the card issuer declined the reversal after the settlement window had already closed"
UTCNOW = "DeprecationWarning: utcnow is deprecated"
READ_AT_LIMIT = "only the first 16 matching entries of the new revision were read"


def at(minutes: float, text_: str, severity: str = "ERROR") -> LogEntry:
    return LogEntry(T0 + timedelta(minutes=minutes), severity=severity, text=text_)


def many(text_: str, *minutes: float, severity: str = "ERROR") -> list[LogEntry]:
    return [at(m, text_, severity) for m in minutes]


# Since the deploy: two new signatures (one recurring), one increased, one the same, one fewer, a deprecation, an ignored line.
NEW_ENTRIES = [*many("checkout failed", 1, 1.5, 2), at(4, REFUND), *many("db timeout", 2, 3), *many("cache miss", 0.5, 1, 1.5),
               *many("slow query", 3, 3.5, 4, 4.5), *many(UTCNOW, 2, 2.5, severity="WARNING"), at(0.2, "healthcheck noise")]
# Before it: the same known errors at other rates, one that is gone, an ignored line and deprecations.
OLD_ENTRIES = [at(-5, "db timeout"), *many("cache miss", -9, -8, -7, -6, -5, -4), *many("slow query", *range(-9, 0)),
               at(-3, "disk full"), at(-2, "healthcheck noise"), at(-1, UTCNOW, "WARNING"),
               at(-1, "FutureWarning: pandas will change the default", "WARNING")]
JUDGED = {"max_error_rate_per_min": 2.6, "excerpt_chars": 80, "max_entries": 16, "ignore": ["noise"], **FAST}


def judge(settings: dict[str, Any], new: list[LogEntry], old: list[LogEntry] | None, *, new_truncated: bool = False,
          old_truncated: bool = False, presence: list[LogEntry] | None = None) -> CheckResult:
    """``logs._judge`` on fixed windows: `new` read in 3 calls (``fetched`` = max_entries when truncated), `old` in 2."""
    config = logs.Config(**settings)
    target = revision_target(T0, previous=OLD if old is not None else "")
    new_batch = LogBatch(new, new_truncated, 3, fetched=config.max_entries if new_truncated else len(new))
    old_batch = LogBatch(old, old_truncated, 2, fetched=len(old)) if old is not None else None
    found = LogBatch(presence, calls=1) if presence is not None else None
    return logs._judge(target, config, WINDOWS, new_batch, old_batch, found, {"new": 3, "previous": 2})


def shown(result: CheckResult) -> list[tuple[Any, ...]]:
    return [(e.what, e.measured, e.threshold, e.previous, e.ok) for e in result.evidence]


def test_the_whole_verdict_on_known_entries() -> None:
    result = judge({**JUDGED, "max_signatures_listed": 4}, NEW_ENTRIES, OLD_ENTRIES, new_truncated=True)
    assert (result.status, result.score) == (Status.FAIL, 0.0)
    assert result.summary == "new error since deploy: checkout failed (3×, 0.6/min) (+2 more)"
    assert result.reasons == ["new error since deploy: checkout failed (3×, 0.6/min)",
                              f"new error since deploy, seen 1× (fewer than fail_count 3): {REFUND} (1×, 0.2/min)",
                              "error increased: db timeout (2×, 0.4/min), was 0.1/min", READ_AT_LIMIT]
    assert result.next_steps == [f"read the logs of {NEW} around 2026-11-25 10:01:00Z",
                                 "add a logs.ignore pattern if the error is expected"]
    assert shown(result) == [
        ("window", f"2026-11-25 10:00:00Z → 2026-11-25 10:05:00Z ({NEW})", None, f"2026-11-25 09:50:00Z → 2026-11-25 10:00:00Z ({OLD})",
         None),
        ("entries.list calls", f"3 for {NEW}, 2 for {OLD}", "≤ 2 per revision, more only when paged or retried", None, None),
        ("error entries", "13 (2.6/min)", "≤ 2.6/min", "17 (1.7/min)", True),  # exactly at the rate limit: within it
        ("new error signatures (≥ 3×)", "1 of 2 new", "≤ 0", None, False),
        ("new signature: checkout failed", "3× (0.6/min), first seen 2026-11-25 10:01:00Z: checkout failed", None, "0× (0/min)", False),
        (f"new signature: {REFUND}", f"1× (0.2/min), first seen 2026-11-25 10:04:00Z: {REFUND[:79]}…", None, "0× (0/min)", False),
        ("increased signature: db timeout", "2× (0.4/min), first seen 2026-11-25 10:02:00Z: db timeout", None, "1× (0.1/min)", False),
        ("same signature: cache miss", "3× (0.6/min), first seen 2026-11-25 10:00:30Z: cache miss", None, "6× (0.6/min)", True),
        ("signatures not listed", 2, "max_signatures_listed 4", None, None),
        (f"deprecation warning: {UTCNOW}", f"2×, first seen 2026-11-25 10:02:00Z: {UTCNOW}", None, "1×", None),
        ("entries ignored (logs.ignore)", 1, None, None, None),
        ("entries read (new revision)", "16 (limit reached)", "max_entries 16", None, False),
    ]


@pytest.mark.parametrize("listed", [6, 20], ids=["exactly-as-many-as-listed", "more-room"])
def test_signatures_are_listed_new_first_then_by_count(listed: int) -> None:
    result = judge({**JUDGED, "max_signatures_listed": listed}, NEW_ENTRIES, OLD_ENTRIES)
    assert [row for row in shown(result) if "signature" in str(row[0]) and not row[0].startswith("new error")] == [
        ("new signature: checkout failed", "3× (0.6/min), first seen 2026-11-25 10:01:00Z: checkout failed", None, "0× (0/min)", False),
        (f"new signature: {REFUND}", f"1× (0.2/min), first seen 2026-11-25 10:04:00Z: {REFUND[:79]}…", None, "0× (0/min)", False),
        ("increased signature: db timeout", "2× (0.4/min), first seen 2026-11-25 10:02:00Z: db timeout", None, "1× (0.1/min)", False),
        ("same signature: cache miss", "3× (0.6/min), first seen 2026-11-25 10:00:30Z: cache miss", None, "6× (0.6/min)", True),
        ("fewer signature: slow query", "4× (0.8/min), first seen 2026-11-25 10:03:00Z: slow query", None, "9× (0.9/min)", None),
        ("gone signature: disk full", "0× since deploy", None, "1× (0.1/min)", None),
    ]


def test_without_a_previous_revision_every_signature_is_new_and_nothing_has_a_previous_value() -> None:
    result = judge(JUDGED, NEW_ENTRIES, None, new_truncated=True)
    assert result.summary == "new error since deploy: cache miss (3×, 0.6/min) (+4 more)"
    assert result.reasons[-2:] == [READ_AT_LIMIT, "no previous revision to compare with: every error signature counts as new"]
    assert [row[3] for row in shown(result)] == [None] * len(result.evidence)  # no `previous` anywhere
    rows = {row[0]: row[1:] for row in shown(result)}
    assert rows["entries.list calls"][0] == f"3 for {NEW}"
    assert rows["new error signatures (≥ 3×)"] == ("3 of 5 new", "≤ 0", None, False)
    assert rows[f"deprecation warning: {UTCNOW}"] == (f"2×, first seen 2026-11-25 10:02:00Z: {UTCNOW}", None, None, None)


def test_known_errors_only_pass_and_say_how_many() -> None:
    result = judge(FAST, many("cache miss", 0.5, 1, 1.5), [*many("cache miss", *range(-9, -3)), at(-3, "disk full")])
    assert (result.status, result.score, result.reasons) == (Status.PASS, 1.0, [])
    assert result.summary == f"no new error signature in {NEW} since 2026-11-25 10:00:00Z: 3 error entries in 1 known signatures"


def test_no_errors_and_no_previous_revision_pass_with_a_note() -> None:
    result = judge(FAST, [at(1, "listening on :8080", "INFO")], None)
    assert (result.status, result.score, result.summary) == (Status.PASS, 1.0, f"no errors logged by {NEW} since 2026-11-25 10:00:00Z")
    assert result.reasons == ["no previous revision to compare with: every error signature counts as new"]
    assert ("error entries", "0 (0/min)", None, None, True) in shown(result)


def test_an_incomplete_read_without_errors_warns_with_both_notes() -> None:
    result = judge({**FAST, "max_entries": 16}, [at(1, "listening on :8080", "INFO")], [at(-1, "ready", "INFO")],
                   new_truncated=True, old_truncated=True)
    previous = "only the first 1 matching entries of the previous revision were read"
    assert (result.status, result.score, result.reasons) == (Status.WARN, 0.5, [READ_AT_LIMIT, previous])
    assert result.summary == f"{READ_AT_LIMIT}; no errors logged by {NEW} since 2026-11-25 10:00:00Z"
    assert shown(result)[-2:] == [("entries read (new revision)", "16 (limit reached)", "max_entries 16", None, False),
                                  ("entries read (previous revision)", "1 (pages left unread)", "max_entries 16", None, False)]


def test_nothing_logged_at_all_is_skipped_with_its_window() -> None:
    result = judge(FAST, [], [], presence=[])
    why = (f"no log entries at all from {NEW} between 2026-11-25 10:00:00Z and 2026-11-25 10:05:00Z: Cloud Logging has not "
           "ingested them yet (or the revision wrote none), so no errors is not a pass")
    assert (result.status, result.summary, result.reasons) == (Status.SKIPPED, why, [why])
    assert result.next_steps == ["validate again in a minute, or raise logs.settle_s"]
    assert [row[0] for row in shown(result)] == ["window", "entries.list calls"]


def test_one_failing_reason_beside_a_note_counts_no_more() -> None:
    result = judge(FAST, many("boom", 1, 2, 3), None)
    assert (result.status, result.summary) == (Status.FAIL, "new error since deploy: boom (3×, 0.6/min)")
    assert result.reasons[-1] == "no previous revision to compare with: every error signature counts as new"


def test_a_zero_error_rate_limit_fails_on_one_error() -> None:
    result = judge({**FAST, "max_error_rate_per_min": 0}, [at(1, "boom")], [])
    assert result.status is Status.FAIL
    assert "expected at most 0 errors/min, found 0.2/min (1 in 5.0 min)" in result.reasons


@pytest.mark.parametrize(("old", "status"), [([], Status.FAIL), (many("retrying upstream", *range(-9, -3), severity="WARNING"),
                                                                   Status.PASS)],
                         ids=["new-warning-counts", "known-warning-counts-on-both-sides"])
def test_count_warnings_counts_them_in_both_revisions(old: list[LogEntry], status: Status) -> None:
    result = judge({**FAST, "count_warnings": True}, many("retrying upstream", 1, 2, 3, severity="WARNING"), old)
    assert result.status is status, result.summary
    assert sum(1 for row in shown(result) if str(row[0]).endswith("signature: retrying upstream")) == 1


# ---------------------------------------------------------------- the pieces, at their boundaries


@pytest.mark.parametrize(("entry_", "count_warnings", "kind"), [
    (LogEntry(None, "ERROR", "boom"), False, "error"),
    (LogEntry(None, "INFO", "GET /x", http_status=500), False, "error"),
    (LogEntry(None, "INFO", "GET /x", http_status=499), False, ""),
    (LogEntry(None, "WARNING", "retrying"), False, ""),
    (LogEntry(None, "WARNING", "retrying"), True, "error"),
    (LogEntry(None, "INFO", "retrying"), True, ""),
    (LogEntry(None, "DEFAULT", TRACEBACK), False, "error"),
    (LogEntry(None, "WARNING", UTCNOW), True, "deprecation"),
    (LogEntry(None, "WARNING", UTCNOW, http_status=500), False, "error"),
    (LogEntry(None, "WARNING", UTCNOW, http_status=499), False, "deprecation"),
], ids=["error", "request-500", "request-499", "warning", "warning-counted", "info-never", "traceback-any-severity",
        "deprecation", "deprecation-in-a-500-is-an-error", "deprecation-in-a-499"])
def test_what_counts_as_an_error(entry_: LogEntry, count_warnings: bool, kind: str) -> None:
    assert logs._counts(entry_, count_warnings) == kind


@pytest.mark.parametrize(("entry_", "title"), [
    (LogEntry(None, "ERROR", "", http_status=503), "HTTP 503 request /"),
    (LogEntry(None, "ERROR", "GET failed", http_status=500, http_method="GET", http_url="/orders/42?x=1?y"), "HTTP 500 GET /orders/{id}"),
    (LogEntry(None, "ERROR", "bad gateway", http_status=502, http_method="GET", http_url="//orders/42"), "HTTP 502 GET //orders/{id}"),
    (LogEntry(None, "ERROR", "upstream said 499", http_status=499, http_url="/a"), "upstream said <n>"),
    (LogEntry(None, "ERROR", ""), "(empty ERROR entry)"),
    (LogEntry(None, "ERROR", "\n  \nsecond line"), "second line"),
    (LogEntry(None, "ERROR", "too   many \t spaces"), "too many spaces"),
], ids=["5xx-without-text", "5xx-path-ids-and-query", "5xx-path-is-no-host", "4xx-is-text", "empty", "first-non-blank-line",
        "whitespace-collapsed"])
def test_signature_titles_at_the_edges(entry_: LogEntry, title: str) -> None:
    assert logs.signature_of(entry_)[1] == title


@pytest.mark.parametrize(("length", "title_length"), [(160, 160), (161, 160)], ids=["at-the-cap", "over-the-cap"])
def test_titles_are_capped_at_160_characters(length: int, title_length: int) -> None:
    title = logs.signature_of(text("x" * length))[1]
    assert len(title) == title_length and title.endswith("…") is (length > 160)


@pytest.mark.parametrize(("path", "short"), [
    ("/usr/lib/python3/site-packages/httpx/_models.py", "httpx/_models.py"),
    ("/usr/lib/python3/dist-packages/yaml/composer/reader.py", "yaml/composer/reader.py"),
    ("/v/site-packages/vendored/site-packages/six.py", "six.py"),
    ("C:\\app\\orders\\api.py", "orders/api.py"),
    ("api.py", "api.py"),
    ("/", "/"),
], ids=["site-packages", "dist-packages", "innermost-site-packages", "windows", "bare-name", "no-name-at-all"])
def test_frame_paths_are_shortened(path: str, short: str) -> None:
    assert logs._short_path(path) == short


def test_the_last_traceback_decides_even_without_frames() -> None:
    chained = f"{TRACEBACK}\nDuring handling of the above exception, another exception occurred:\n\n" \
              "Traceback (most recent call last):\nRuntimeError: gave up"
    assert logs.signature_of(text(chained))[1] == "RuntimeError (traceback without frames)"


def test_tab_indented_source_lines_are_not_the_exception() -> None:
    tabbed = 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\n\tvalue = table[key]\nKeyError: \'k\''
    assert logs.signature_of(text(tabbed))[1] == "KeyError at app/x.py:3 f"


def test_frames_without_indentation_still_end_before_the_exception() -> None:
    # Some log shippers trim every line, and an image without sources prints frames without their code.
    flat = 'Traceback (most recent call last):\nFile "/app/x.py", line 3, in f\nKeyError: \'k\''
    assert logs.signature_of(text(flat))[1] == "KeyError at app/x.py:3 f"


@pytest.mark.parametrize(("limit", "expected"), [(9, "short one"), (8, "short o…")], ids=["at-the-limit", "over-it"])
def test_excerpts_cut_at_the_limit(limit: int, expected: str) -> None:
    assert logs.excerpt(text("short one"), limit) == expected


def test_a_long_traceback_keeps_its_end() -> None:
    cut = logs.excerpt(text("x" * 200 + "\n" + TRACEBACK.strip()), 60)
    assert cut == "…" + TRACEBACK.strip()[-59:]


def test_grouping_counts_in_time_order_from_the_first_occurrence() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    entries = [LogEntry(t2, "ERROR", "boom"), LogEntry(t1, "INFO", "fine"), LogEntry(t2, "ERROR", "noise: a"),
               LogEntry(t1, "ERROR", "noise: b"), LogEntry(t1, "ERROR", TRACEBACK), LogEntry(None, "ERROR", "boom"),
               LogEntry(t1, "WARNING", "slow")]
    grouped, ignored = logs.group(entries, ignore=[re.compile("ord_7Hq2xK9p|noise")])
    assert ignored == 3  # two by their signature, the traceback by its text
    assert {k: (s.count, s.first_seen) for k, s in grouped.items()} == {"boom": (2, None)}
    assert logs.group([LogEntry(t1, "ERROR", "y" * 700)])[0]["y" * 159 + "…"].excerpt == "y" * 599 + "…"


def test_classify_at_equal_rates_and_for_gone_signatures() -> None:
    new, _ = logs.group([text("B")] * 2)
    old, _ = logs.group([text("B")] * 4 + [text("D")] * 3)
    result = {s.key: s for s in logs.classify(new, old, 5.0, 10.0, 2.0)}
    assert result["B"].status == "same"  # 0.4/min then and now
    gone = result["D"]
    assert (gone.status, gone.count, gone.previous, gone.rate, gone.previous_rate, gone.excerpt) == ("gone", 0, 3, 0.0, 0.3, "D")
    lone = {s.key: s for s in logs.classify(logs.group([text("B")])[0], old, 5.0, 0.0, 2.0)}
    assert (lone["B"].previous_rate, lone["D"].previous_rate) == (0.0, 0.0)  # no previous window: no previous rate


def test_when_and_rate_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # times are shown in UTC whatever the machine's zone
    time.tzset()
    try:
        assert (logs._when(None), logs._when(T0.astimezone())) == ("?", "2026-11-25 10:00:00Z")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert [logs._rate(v) for v in (0, 0.5, 2, 1 / 3)] == ["0", "0.5", "2", "0.33"]


def test_without_a_creation_time_the_window_is_the_baseline_length() -> None:
    now = T0 + timedelta(hours=1)
    target = Target(service="orders", revision=NEW, previous_revision=OLD)
    win = logs.windows(target, logs.Config(baseline_s=600), now)
    assert (win.since, win.until) == (now - timedelta(seconds=600), now)
