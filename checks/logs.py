"""logs: errors the new revision logged since it was created, grouped into signatures and compared with the previous revision.

Economy: per revision one ``entries.list`` request selects the signals (severity ≥ ERROR, tracebacks and
deprecation warnings by text, the frame and exception lines of tracebacks Cloud Run split one line per
entry, request-log 5xx) with a page as large as ``max_entries``; a short page is followed for at most a
few more requests. The log source stitches split tracebacks back into one entry, so a traceback is one
error with its exception type and innermost frame, not one error per line. Only when the new revision
shows no signal at all does a second, one-entry request ask whether it logged *anything* in its window:
a revision that served our own health probes has request logs, so finding none means Cloud Logging has
not ingested them yet and the check is SKIPPED, never a PASS on missing data.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from core.errors import PostdeployError, api_fix
from core.model import CheckContext, CheckResult, Evidence, Status, Target, cannot_measure, not_configured
from core.redact import redact_text
from core.schema import ENTRIES_LIST_CALLS, ENTRIES_READ, CheckSettings, signature_evidence
from core.signals import PAGE_SIZE_MAX, LogBatch, LogEntry, LogSource, RevisionScope, severity_rank
from sources.log_entries import TRACEBACK_BANNER as TRACEBACK

NAME = "logs"
CATEGORY = "Stability"
PHASE = 1  # after the observation window: its probes' errors must be in the logs read
DEPRECATION_TERMS = ("DeprecationWarning", "FutureWarning")
TITLE_CHARS = 160
# Time kept back from the check's budget for the queries after the settle wait.
QUERY_RESERVE_S = 15.0
# Rates are per minute over at least a minute: 3 errors in the first 10 s are not 18/min.
MIN_RATE_WINDOW_S = 60.0

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)', re.M)
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_WARNING = re.compile(r"(?P<category>\w*(?:DeprecationWarning|FutureWarning)):\s*(?P<message>.*)")
_NORMALISE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\""), "'<value>'"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:0x)?[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b(?:0x)?[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\d[0-9a-fA-F]*\b"),
     "<hex>"),
    (re.compile(r"\b[A-Za-z]+[_-](?=[A-Za-z0-9]*\d)[A-Za-z0-9]{6,}\b"), "<id>"),
    (re.compile(r"(?<![A-Za-z<])\d+(?:\.\d+)?"), "<n>"),
]
_PATH_ID = re.compile(r"^(?:\d+|[0-9a-fA-F-]{8,}|[A-Za-z]+[_-][A-Za-z0-9]*\d[A-Za-z0-9]*)$")


class Config(CheckSettings):
    """Thresholds, ignore patterns and the windows the revisions are compared over.

    A new error signature (none before the deploy) FAILs the check once it occurred ``fail_count`` times, more
    than ``max_new_signatures`` of them; rarer ones WARN. Critical by default when a previous revision exists to
    compare with (``critical: null``); ``true`` or ``false`` decides for every revision.
    """

    critical: bool | None = None  # type: ignore[assignment]  # None: critical when there is a baseline revision
    timeout_s: float = Field(90.0, gt=0, le=540)
    max_new_signatures: int = Field(0, ge=0)
    fail_count: int = Field(3, ge=1)  # occurrences that make a new signature a failure rather than a warning
    max_error_rate_per_min: float | None = Field(None, ge=0)
    increase_ratio: float = Field(2.0, gt=1.0)  # WARN when a known signature's rate grew by this factor
    ignore: list[str] = Field(default_factory=list)
    count_warnings: bool = False
    excerpt_chars: int = Field(600, ge=80, le=4000)
    settle_s: float = Field(10.0, ge=0, le=120)  # wait for ingestion; bounded by the check's budget
    max_window_s: float = Field(3600.0, gt=0, le=7 * 86400)  # new revision: creation → now, at most this long
    baseline_s: float = Field(600.0, gt=0, le=7 * 86400)  # previous revision: at least this long, ending at the creation
    max_entries: int = Field(PAGE_SIZE_MAX, ge=1, le=PAGE_SIZE_MAX)
    max_signatures_listed: int = Field(20, ge=1, le=200)

    @field_validator("ignore")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"expected a regular expression at [{i}], found {pattern!r} ({exc})") from None
        return value


@dataclass
class Signature:
    """Entries of one revision that are the same problem."""

    key: str
    title: str
    kind: str = "error"  # "error" or "deprecation"
    count: int = 0
    first_seen: datetime | None = None
    excerpt: str = ""
    previous: int = 0
    rate: float = 0.0
    previous_rate: float = 0.0
    status: str = ""  # new | increased | same | fewer | gone


def _normalise(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if parts else path


def _traceback(text: str) -> tuple[str, str] | None:
    """(key, title) of the last traceback in the text: exception type and innermost frame."""
    start = text.rfind(TRACEBACK)
    if start < 0:
        return None
    block = text[start:]
    frames = list(_FRAME.finditer(block))
    tail = (block[frames[-1].end():] if frames else block).splitlines()[1:]
    lines = [ln.strip() for ln in tail if ln.strip() and not ln.startswith((" ", "\t"))]
    exc_line = lines[0] if lines else ""
    m = _EXCEPTION.match(exc_line)
    exc_type = m.group("type") if m else (_normalise(exc_line) or "exception")
    if not frames:
        return f"{exc_type} (no frames)", f"{exc_type} (traceback without frames)"
    frame = frames[-1]
    where = _short_path(frame.group("file"))
    # Keyed without the line number: the same error in code that moved by a line is not a new one.
    return (f"{exc_type} at {where} {frame.group('func')}",
            f"{exc_type} at {where}:{frame.group('line')} {frame.group('func')}")


def _request_path(url: str) -> str:
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    return "/".join("{id}" if _PATH_ID.match(seg) else seg for seg in (path or "/").split("/"))


def is_deprecation(entry: LogEntry) -> bool:
    """A deprecation warning that is not part of a traceback, an error entry or a failed request."""
    if severity_rank(entry.severity) >= severity_rank("ERROR") or (entry.http_status or 0) >= 500:
        return False
    return TRACEBACK not in entry.text and any(t in entry.text for t in DEPRECATION_TERMS)


def signature_of(entry: LogEntry) -> tuple[str, str]:
    """(key, title): exception type + innermost frame for tracebacks; status + route for 5xx request logs;
    otherwise the first line with numbers, ids, hashes, quoted values and timestamps normalised."""
    entry = replace(entry, text=redact_text(entry.text))  # titles reach the report and Slack too
    found = _traceback(entry.text)
    if found:
        return found
    if is_deprecation(entry):
        m = _WARNING.search(entry.text)
        if m:
            title = f"{m.group('category')}: {_normalise(m.group('message'))}"
            return title, title
    if entry.http_status is not None and entry.http_status >= 500 and (entry.http_url or not entry.text.strip()):
        title = f"HTTP {entry.http_status} {entry.http_method or 'request'} {_request_path(entry.http_url)}".strip()
        return title, title
    first = next((ln for ln in entry.text.splitlines() if ln.strip()), f"(empty {entry.severity} entry)")
    title = _normalise(first)
    return title, title


def excerpt(entry: LogEntry, limit: int) -> str:
    """The entry's text, redacted and capped; a traceback keeps its end, where the exception is."""
    text = redact_text(entry.text.strip())
    if len(text) <= limit:
        return text
    if TRACEBACK in text:
        return "…" + text[-(limit - 1):]
    return text[: limit - 1] + "…"


def _counts(entry: LogEntry, count_warnings: bool) -> str:
    """"error", "deprecation" or "" (selected by the query but not judged, e.g. a warning)."""
    if is_deprecation(entry):
        return "deprecation"
    if (TRACEBACK in entry.text or severity_rank(entry.severity) >= severity_rank("ERROR")
            or (entry.http_status or 0) >= 500):
        return "error"
    return "error" if count_warnings and severity_rank(entry.severity) >= severity_rank("WARNING") else ""


def group(entries: list[LogEntry], *, count_warnings: bool = False, ignore: list[re.Pattern[str]] | None = None,
          excerpt_chars: int = 600) -> tuple[dict[str, Signature], int]:
    """Signatures of the entries (first seen = earliest), and how many entries ``ignore`` dropped."""
    out: dict[str, Signature] = {}
    ignored = 0
    for entry in sorted(entries, key=lambda e: (e.timestamp or datetime.min.replace(tzinfo=UTC))):
        kind = _counts(entry, count_warnings)
        if not kind:
            continue
        key, title = signature_of(entry)
        if ignore and any(p.search(key) or p.search(entry.text) for p in ignore):
            ignored += 1
            continue
        sig = out.get(key)
        if sig is None:
            sig = out[key] = Signature(key, title, kind, first_seen=entry.timestamp,
                                       excerpt=excerpt(entry, excerpt_chars))
        sig.count += 1
    return out, ignored


def classify(new: dict[str, Signature], old: dict[str, Signature], minutes: float, previous_minutes: float,
             increase_ratio: float) -> list[Signature]:
    """Rates per minute and new / increased / same / fewer / gone for every signature of either revision."""
    result = []
    for key, sig in new.items():
        before = old.get(key)
        sig.rate = sig.count / minutes
        sig.previous = before.count if before else 0
        sig.previous_rate = sig.previous / previous_minutes if previous_minutes else 0.0
        if not sig.previous:
            sig.status = "new"
        elif sig.rate >= sig.previous_rate * increase_ratio:
            sig.status = "increased"
        else:
            sig.status = "same" if sig.rate >= sig.previous_rate else "fewer"
        result.append(sig)
    for key, before in old.items():
        if key not in new:
            result.append(Signature(key, before.title, before.kind, 0, None, before.excerpt, before.count, 0.0,
                                    before.count / previous_minutes if previous_minutes else 0.0, "gone"))
    return result


@dataclass
class _Windows:
    since: datetime
    until: datetime
    previous_since: datetime
    previous_until: datetime

    @property
    def minutes(self) -> float:
        return max((self.until - self.since).total_seconds(), MIN_RATE_WINDOW_S) / 60

    @property
    def previous_minutes(self) -> float:
        return max((self.previous_until - self.previous_since).total_seconds(), MIN_RATE_WINDOW_S) / 60


def windows(target: Target, config: Config, now: datetime) -> _Windows:
    """New revision: creation → now (capped); previous: a window at least ``baseline_s`` long ending at the creation."""
    created = target.revision_info.create_time if target.revision_info else None
    # The latest max_window_s of the revision's life: a revision validated long after its creation
    # (a --no-traffic rollout, a second run) is judged on what it does now.
    since = max(min(created, now), now - timedelta(seconds=config.max_window_s)) if created \
        else now - timedelta(seconds=config.baseline_s)
    until = now
    length = max((until - since).total_seconds(), config.baseline_s)
    previous_until = since - timedelta(microseconds=1)  # the filter bounds are inclusive
    return _Windows(since, until, previous_until - timedelta(seconds=length), previous_until)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "?"


def _rate(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _line(sig: Signature) -> str:
    return f"{sig.title} ({sig.count}×, {_rate(sig.rate)}/min)"


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Query the new and previous revision's signals, group them into signatures and judge what is new."""
    source: LogSource | None = ctx.log_source
    if source is None:
        return not_configured("no log source: Cloud Logging in the cloud, or a log file in local mode")
    budget_end = ctx.budget_end(config.timeout_s)
    win = windows(target, config, datetime.now(UTC))
    settle = min(config.settle_s, max(budget_end - time.monotonic() - QUERY_RESERVE_S, 0.0))
    if settle > 0:
        await asyncio.sleep(settle)  # entries written just before `until` need a moment to become queryable

    scope = target.scope()
    min_severity = "WARNING" if config.count_warnings else "ERROR"
    terms = (TRACEBACK.split(" (")[0], *DEPRECATION_TERMS)

    def signals(revision: RevisionScope, since: datetime, until: datetime) -> Awaitable[LogBatch]:
        return source.entries(revision, since, until, min_severity=min_severity, text_search=terms, include_requests=True,
                              traceback_lines=True, limit=config.max_entries, deadline=budget_end)

    calls: dict[str, int] = {}
    try:
        if target.previous_revision:
            new_batch, old_batch = await asyncio.gather(
                signals(scope, win.since, win.until),
                signals(target.scope(target.previous_revision), win.previous_since, win.previous_until))
            calls["previous"] = old_batch.calls
        else:
            new_batch, old_batch = await signals(scope, win.since, win.until), None
        calls["new"] = new_batch.calls
        presence: LogBatch | None = None
        if not new_batch.entries:
            presence = await source.entries(scope, win.since, win.until, min_severity=None, text_search=(),
                                            include_requests=False, limit=1, deadline=budget_end)
            calls["new"] += presence.calls
    except PostdeployError as exc:  # AccessDenied names the role; LoggingUnavailable after its retries
        return _critical(cannot_measure("Cloud Logging", str(exc), api_fix(exc, "roles/logging.viewer")), target, config)
    return _critical(_judge(target, config, win, new_batch, old_batch, presence, calls), target, config)


def _critical(result: CheckResult, target: Target, config: Config) -> CheckResult:
    """New errors are critical when there is a revision to compare with, unless ``critical`` says otherwise."""
    if config.critical is None:
        result.critical = bool(target.previous_revision)
    return result


def _row(sig: Signature, baseline: bool) -> dict[str, Any]:
    """One signature as the report's table shows it: before (None without a previous revision read) and after, and
    the excerpt with its line breaks."""
    return {"status": sig.status, "kind": sig.kind, "title": sig.title, "count": sig.count, "rate": round(sig.rate, 3),
            "previous": sig.previous if baseline else None,
            "previous_rate": round(sig.previous_rate, 3) if baseline else None,
            "first_seen": _when(sig.first_seen) if sig.first_seen else None, "excerpt": sig.excerpt}


def _judge(target: Target, config: Config, win: _Windows, new_batch: LogBatch, old_batch: LogBatch | None,
           presence: LogBatch | None, calls: dict[str, int]) -> CheckResult:
    revision = target.revision or target.service
    evidence = [Evidence("window", f"{_when(win.since)} → {_when(win.until)} ({revision})", ok=None,
                         previous=f"{_when(win.previous_since)} → {_when(win.previous_until)} ({target.previous_revision})"
                         if old_batch is not None else None),
                Evidence(ENTRIES_LIST_CALLS, f"{calls['new']} for {revision}"
                         + (f", {calls['previous']} for {target.previous_revision}" if old_batch is not None else ""),
                         "≤ 2 per revision, more only when paged or retried", ok=None)]
    if presence is not None and not presence.entries:
        why = (f"no log entries at all from {revision} between {_when(win.since)} and {_when(win.until)}: "
               f"Cloud Logging has not ingested them yet (or the revision wrote none), so no errors is not a pass")
        return CheckResult(Status.SKIPPED, why, evidence, reasons=[why],
                           next_steps=["validate again in a minute, or raise logs.settle_s"])

    ignore = [re.compile(p) for p in config.ignore]
    new, ignored = group(new_batch.entries, count_warnings=config.count_warnings, ignore=ignore,
                         excerpt_chars=config.excerpt_chars)
    # Only the new revision's excerpts are shown: a gone signature reads "0× since deploy".
    old, _ = group(old_batch.entries if old_batch else [], count_warnings=config.count_warnings, ignore=ignore)
    signatures = classify(new, old, win.minutes, win.previous_minutes, config.increase_ratio)
    errors = [s for s in signatures if s.kind == "error" and s.status != "gone"]
    fresh = [s for s in errors if s.status == "new"]
    recurring = [s for s in fresh if s.count >= config.fail_count]
    increased = [s for s in errors if s.status == "increased"]
    total = sum(s.count for s in errors)
    rate = total / win.minutes
    old_total = sum(s.count for s in old.values() if s.kind == "error")
    evidence.append(Evidence("error entries", f"{total} ({_rate(rate)}/min)",
                             f"≤ {_rate(config.max_error_rate_per_min)}/min" if config.max_error_rate_per_min is not None else None,
                             f"{old_total} ({_rate(old_total / win.previous_minutes)}/min)" if old_batch is not None else None,
                             ok=config.max_error_rate_per_min is None or rate <= config.max_error_rate_per_min))
    evidence.append(Evidence(f"new error signatures (≥ {config.fail_count}×)", f"{len(recurring)} of {len(fresh)} new",
                             f"≤ {config.max_new_signatures}", ok=len(recurring) <= config.max_new_signatures))
    order = {"new": 0, "increased": 1, "same": 2, "fewer": 3, "gone": 4}
    listed = sorted((s for s in signatures if s.kind == "error"), key=lambda s: (order[s.status], -s.count))
    for sig in listed[: config.max_signatures_listed]:
        measured = (f"{sig.count}× ({_rate(sig.rate)}/min), first seen {_when(sig.first_seen)}: {sig.excerpt}"
                    if sig.status != "gone" else "0× since deploy")
        evidence.append(Evidence(signature_evidence(sig.kind, sig.status, sig.title), measured,
                                 previous=f"{sig.previous}× ({_rate(sig.previous_rate)}/min)" if old_batch is not None else None,
                                 ok=None if sig.status in ("gone", "fewer") else sig.status == "same"))
    baseline = old_batch is not None
    data = {"signatures": [_row(s, baseline) for s in listed[: config.max_signatures_listed]]
                          + [_row(s, baseline) for s in signatures if s.kind == "deprecation" and s.status != "gone"]}
    if len(listed) > config.max_signatures_listed:
        evidence.append(Evidence("signatures not listed", len(listed) - config.max_signatures_listed,
                                 f"max_signatures_listed {config.max_signatures_listed}", ok=None))
    for sig in (s for s in signatures if s.kind == "deprecation" and s.status != "gone"):
        evidence.append(Evidence(signature_evidence(sig.kind, sig.status, sig.title),
                                 f"{sig.count}×, first seen {_when(sig.first_seen)}: {sig.excerpt}",
                                 previous=f"{sig.previous}×" if old_batch is not None else None, ok=None))
    if ignored:
        evidence.append(Evidence("entries ignored (logs.ignore)", ignored, ok=None))
    notes = []
    for name, batch in (("new", new_batch), ("previous", old_batch)):
        if batch is not None and batch.truncated:
            notes.append(f"only the first {batch.fetched} matching entries of the {name} revision were read")
            cut = "limit reached" if batch.fetched >= config.max_entries else "pages left unread"
            evidence.append(Evidence(f"{ENTRIES_READ} ({name} revision)", f"{batch.fetched} ({cut})",
                                     f"max_entries {config.max_entries}", ok=False))
    if old_batch is None:
        notes.append("no previous revision to compare with: every error signature counts as new")

    reasons = [f"new error since deploy: {_line(s)}" for s in recurring]
    reasons += [f"new error since deploy, seen {s.count}× (fewer than fail_count {config.fail_count}): {_line(s)}"
                for s in fresh if s not in recurring]
    too_fast = config.max_error_rate_per_min is not None and rate > config.max_error_rate_per_min
    if too_fast:
        reasons.append(f"expected at most {_rate(config.max_error_rate_per_min or 0)} errors/min, found {_rate(rate)}/min "
                       f"({total} in {win.minutes:.1f} min)")
    reasons += [f"error increased: {_line(s)}, was {_rate(s.previous_rate)}/min" for s in increased]
    reasons += notes
    if len(recurring) > config.max_new_signatures or too_fast:
        more = f" (+{len(reasons) - len(notes) - 1} more)" if len(reasons) - len(notes) > 1 else ""
        return CheckResult(Status.FAIL, reasons[0] + more, evidence, 0.0, reasons=reasons, data=data,
                           next_steps=[f"read the logs of {revision} around {_when(fresh[0].first_seen if fresh else win.since)}",
                                       "add a logs.ignore pattern if the error is expected"])
    if fresh or increased:
        return CheckResult(Status.WARN, reasons[0], evidence, 0.5, reasons=reasons, data=data)
    summary = (f"no new error signature in {revision} since {_when(win.since)}: {total} error entries in "
               f"{len(errors)} known signatures" if errors else f"no errors logged by {revision} since {_when(win.since)}")
    if any(batch is not None and batch.truncated for batch in (new_batch, old_batch)):
        # Unread entries may hold the new error: an incomplete read cannot vouch for the revision.
        return CheckResult(Status.WARN, f"{notes[0]}; {summary}", evidence, 0.5, reasons=notes, data=data)
    return CheckResult(Status.PASS, summary, evidence, 1.0, reasons=notes, data=data)

