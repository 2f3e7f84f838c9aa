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
from tests.checks.helpers import FAST, NEW, OLD, TRACEBACK, log_line, revision_target, run_check
from tests.servers.data import DATA, RECORDED
from tests.servers.data import recorded_entry as entry
from tests.servers.fake_logging import FakeLogging
from tests.servers.loopback import rfc3339

# A Python traceback as Cloud Run stores plain stdout: one DEFAULT entry per line.
SPLIT = json.loads((DATA / "logs" / "split_traceback.json").read_text(encoding="utf-8"))
TRACEBACK_SELECTORS = " OR ".join(f"textPayload=~{json.dumps(p)}" for p in TRACEBACK_LINE_PATTERNS)


def as_entry(name: str) -> LogEntry:
    data = RECORDED[name]
    return entry_from_parts(timestamp=None, severity=data["severity"], payload=data.get("jsonPayload", data.get("textPayload")),
                            http_request=data.get("httpRequest"))



def check(source: LogSource | None, tgt: Target, **settings: Any) -> CheckResult:
    return run_check(logs, tgt, logs.Config(**{**FAST, **settings}), log_source=source)


@pytest.fixture
def fake(fake_logging: FakeLogging) -> FakeLogging:
    return fake_logging




@pytest.mark.parametrize(("entry_", "title"), [
    pytest.param(as_entry("python_traceback"), "KeyError at orders/api.py:42 handle_checkout", id="traceback-in-textPayload"),
    pytest.param(as_entry("json_stack_trace"), "httpx.HTTPStatusError at httpx/_models.py:829 raise_for_status",
                 id="json-message-and-stack_trace"),
    pytest.param(as_entry("request_503"), "HTTP 503 POST /orders/{id}/checkout", id="request-log-503"),
    pytest.param(as_entry("deprecation"), "DeprecationWarning: datetime.datetime.utcnow() is deprecated and scheduled for "
                 "removal in a future version. Use timezone-aware objects to represent datetimes in UTC: datetime.date…",
                 id="deprecation-warning-capped"),
    pytest.param(log_line("ERROR checkout failed for user 'bob' after 3 tries\n  at line two"),
                 "ERROR checkout failed for user '<value>' after <n> tries", id="multi-line-text-first-line"),
    pytest.param(log_line(f"handled request\n{TRACEBACK}\nDuring handling of the above exception, another exception occurred:\n\n"
                      'Traceback (most recent call last):\n  File "/app/orders/api.py", line 50, in handle_checkout\n'
                      "    raise NotFound(order_id)\norders.errors.NotFound: ord_7Hq2xK9p"),
                 "orders.errors.NotFound at orders/api.py:50 handle_checkout", id="chained-traceback-last-wins"),
    pytest.param(log_line("Traceback (most recent call last):", "DEFAULT"), "exception (traceback without frames)",
                 id="traceback-header-alone"),
])
def test_signature_titles(entry_: LogEntry, title: str) -> None:
    assert logs.signature_of(entry_)[1] == title


def test_same_error_with_different_ids_is_one_signature() -> None:
    entries = [
        log_line("payment failed for order 8f14e45f-ceea-467f-a1f3-6a1a3b4c5d6e at 2026-11-25T10:04:01.5Z: 'card_declined' "
                 "(hash deadbeef42)"),
        log_line("payment failed for order 0b6d5e2c-1a77-4c1e-9a8f-4f1c9a2e7d3b at 2026-11-25T10:05:17Z: 'no_funds' (hash 9c0ffee1b)"),
        log_line(TRACEBACK), log_line(TRACEBACK.replace("ord_7Hq2xK9p", "ord_Zz91aa0q").replace("line 42", "line 43")),
    ]
    grouped, _ = logs.group(entries)
    assert {k: s.count for k, s in grouped.items()} == {
        "payment failed for order <uuid> at <time>: '<value>' (hash <hex>)": 2,
        "KeyError at orders/api.py handle_checkout": 2,
    }


def test_classification_by_rate_new_gone_increased() -> None:
    new, _ = logs.group([log_line("A")] * 10 + [log_line("B")] * 2 + [log_line("C")] * 1)
    old, _ = logs.group([log_line("A")] * 10 + [log_line("B")] * 10 + [log_line("D")] * 3)
    # 5 minutes now vs 50 minutes before: A went from 0.2/min to 2/min, B stayed 0.2 → 0.4.
    result = {s.key: s for s in logs.classify(new, old, 5.0, 50.0, 2.0)}
    assert {k: s.status for k, s in result.items()} == {"A": "increased", "B": "increased", "C": "new", "D": "gone"}
    assert (result["A"].rate, result["A"].previous_rate) == (2.0, 0.2)
    only_b = logs.group([log_line("B")] * 2)[0]  # 0.4/min now
    assert logs.classify(only_b, logs.group([log_line("B")] * 15)[0], 5.0, 50.0, 2.0)[0].status == "same"  # was 0.3/min
    assert logs.classify(only_b, logs.group([log_line("B")] * 30)[0], 5.0, 50.0, 2.0)[0].status == "fewer"  # was 0.6/min


def test_excerpts_are_redacted_and_capped() -> None:
    secret = log_line('login failed: password=hunter2 api_key="AKIAIOSFODNN7EXAMPLE" Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.'
                  'eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl url=https://bob:s3cret@db.internal/x ' + "x" * 900)
    cut = logs.excerpt(secret, 200)
    assert len(cut) == 200 and cut.endswith("…")
    for leaked in ("hunter2", "AKIAIOSFODNN7EXAMPLE", "eyJzdWIi", "s3cret"):
        assert leaked not in cut
    assert "password=[REDACTED]" in cut and "Bearer [REDACTED]" in cut
    assert logs.excerpt(log_line(TRACEBACK + "y" * 0), 60).endswith("KeyError: 'ord_7Hq2xK9p'")


@pytest.mark.parametrize(("secret", "hidden", "marker"), [
    ("https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx", "T0123ABCD/B0456EFGH",
     "https://hooks.slack.com/services/[REDACTED]"),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c", "[REDACTED]"),
    ("xoxb-1234567890-1234567890123-AbCdEfGhIjKl", "AbCdEfGhIjKl", "[REDACTED]"),
    ("AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", "SyDdI0hCZtE6", "[REDACTED]"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWD", "[REDACTED]"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----", "MIIEvQIBADAN",
     "[REDACTED PRIVATE KEY]"),
], ids=["slack-webhook", "github-token", "slack-token", "gcp-api-key", "stripe-key", "pem-private-key"])
def test_titles_and_excerpts_use_the_shared_redactor(secret: str, hidden: str, marker: str) -> None:
    entry = log_line(f"upstream call failed with {secret} (attempt 3)")
    title, excerpt = logs.signature_of(entry)[1], logs.excerpt(entry, 600)
    assert hidden not in title and hidden not in excerpt
    assert excerpt == f"upstream call failed with {marker} (attempt 3)"


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
    pytest.param(log_line('  File "/app/x.py", line 3, in f', "DEFAULT"), id="frame-line-default"),
    pytest.param(log_line("ValueError: boom", "DEFAULT"), id="exception-line-default"),
    pytest.param(log_line("ValueError: boom", "INFO"), id="exception-line-info"),
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
    key, title = logs.signature_of(log_line("login failed for admin password=hunter2 Authorization: Bearer sk-proj-abcdef123456"))
    assert "hunter2" not in title + key and "sk-proj-abcdef123456" not in title + key


def test_an_error_that_mentions_a_deprecation_is_still_an_error() -> None:
    entry_ = log_line("payment failed; see FutureWarning in the gateway client", severity="ERROR")
    assert not logs.is_deprecation(entry_)
    assert logs.is_deprecation(log_line("FutureWarning: pandas will change the default", severity="WARNING"))


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
