"""logs, judged on fixed entries and windows: the whole verdict, its notes and limits, and each piece at its boundaries."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks import logs
from core.model import CheckResult, Status, Target
from core.signals import LogBatch, LogEntry
from tests.checks.helpers import FAST, NEW, OLD, TRACEBACK, log_line, revision_target

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


def row(status: str, title: str, count: int, rate: float, previous: int, previous_rate: float, first_seen: str | None,
        excerpt: str, kind: str = "error") -> dict[str, Any]:
    return {"status": status, "kind": kind, "title": title, "count": count, "rate": rate, "previous": previous,
            "previous_rate": previous_rate, "first_seen": first_seen, "excerpt": excerpt}


@pytest.mark.parametrize(("settings", "new", "status"), [
    pytest.param({**JUDGED, "max_signatures_listed": 4}, NEW_ENTRIES, Status.FAIL, id="fail"),
    pytest.param({**JUDGED, "max_signatures_listed": 4, "fail_count": 4}, NEW_ENTRIES, Status.WARN, id="warn"),
])
def test_the_signature_table_keeps_counts_rates_and_excerpts_of_the_listed_ones(settings: dict[str, Any],
                                                                                new: list[LogEntry], status: Status) -> None:
    result = judge(settings, new, OLD_ENTRIES)
    assert result.status == status
    assert result.data == {"signatures": [
        row("new", "checkout failed", 3, 0.6, 0, 0.0, "2026-11-25 10:01:00Z", "checkout failed"),
        row("new", REFUND, 1, 0.2, 0, 0.0, "2026-11-25 10:04:00Z", f"{REFUND[:79]}…"),
        row("increased", "db timeout", 2, 0.4, 1, 0.1, "2026-11-25 10:02:00Z", "db timeout"),
        row("same", "cache miss", 3, 0.6, 6, 0.6, "2026-11-25 10:00:30Z", "cache miss"),
        row("increased", UTCNOW, 2, 0.4, 1, 0.1, "2026-11-25 10:02:00Z", UTCNOW, kind="deprecation"),
    ]}


@pytest.mark.parametrize(("new", "truncated", "status"), [
    pytest.param(many("cache miss", 1, 2), False, Status.PASS, id="pass"),
    pytest.param(many("cache miss", 1, 2), True, Status.WARN, id="warn-on-an-incomplete-read"),
])
def test_known_errors_only_keep_their_rows(new: list[LogEntry], truncated: bool, status: Status) -> None:
    result = judge(JUDGED, new, OLD_ENTRIES, new_truncated=truncated)
    assert result.status == status
    assert [(r["status"], r["title"], r["count"]) for r in result.data["signatures"]] == [
        ("fewer", "cache miss", 2), ("gone", "slow query", 0), ("gone", "db timeout", 0), ("gone", "disk full", 0)]


def test_without_a_previous_revision_the_table_has_no_before() -> None:
    result = judge(JUDGED, many("cache miss", 1, 2), None)
    assert [(r["title"], r["previous"], r["previous_rate"]) for r in result.data["signatures"]] == [
        ("cache miss", None, None)]


def test_nothing_logged_has_no_table() -> None:
    assert judge(JUDGED, [], OLD_ENTRIES, presence=[]).data == {}


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
    title = logs.signature_of(log_line("x" * length))[1]
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
    assert logs.signature_of(log_line(chained))[1] == "RuntimeError (traceback without frames)"


def test_tab_indented_source_lines_are_not_the_exception() -> None:
    tabbed = 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\n\tvalue = table[key]\nKeyError: \'k\''
    assert logs.signature_of(log_line(tabbed))[1] == "KeyError at app/x.py:3 f"


def test_frames_without_indentation_still_end_before_the_exception() -> None:
    # Some log shippers trim every line, and an image without sources prints frames without their code.
    flat = 'Traceback (most recent call last):\nFile "/app/x.py", line 3, in f\nKeyError: \'k\''
    assert logs.signature_of(log_line(flat))[1] == "KeyError at app/x.py:3 f"


@pytest.mark.parametrize(("limit", "expected"), [(9, "short one"), (8, "short o…")], ids=["at-the-limit", "over-it"])
def test_excerpts_cut_at_the_limit(limit: int, expected: str) -> None:
    assert logs.excerpt(log_line("short one"), limit) == expected


def test_a_long_traceback_keeps_its_end() -> None:
    cut = logs.excerpt(log_line("x" * 200 + "\n" + TRACEBACK.strip()), 60)
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
    new, _ = logs.group([log_line("B")] * 2)
    old, _ = logs.group([log_line("B")] * 4 + [log_line("D")] * 3)
    result = {s.key: s for s in logs.classify(new, old, 5.0, 10.0, 2.0)}
    assert result["B"].status == "same"  # 0.4/min then and now
    gone = result["D"]
    assert (gone.status, gone.count, gone.previous, gone.rate, gone.previous_rate, gone.excerpt) == ("gone", 0, 3, 0.0, 0.3, "D")
    lone = {s.key: s for s in logs.classify(logs.group([log_line("B")])[0], old, 5.0, 0.0, 2.0)}
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
