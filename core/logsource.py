"""Where the `logs` check reads a revision's log entries: Cloud Logging, or a local log file.

``LogSource.entries`` answers one question per call: the entries of one revision in one time range,
narrowed to *signals* (severity ≥ a floor, text matches, request-log 5xx, optionally the lines of a
traceback) or, with no selector at all, any entry (used to tell "no errors" from "nothing ingested yet").

Economy: ``CloudLoggingSource`` sends each ``entries.list`` request itself through the official client's
REST connection, with a page size as large as the caller's limit and a per-request timeout, so the common
case is exactly one request per question. Cloud Logging may answer a short page with a ``nextPageToken``;
the token is followed only while fewer than ``limit`` entries were read, for at most ``MAX_PAGES`` requests
and only while a whole request still fits before the deadline. Every request sent is counted, retries
included, and a read cut by the limit or by an unread token is reported as ``truncated``.

Plain text a Cloud Run container writes to stdout/stderr arrives one entry per line, so ``stitch`` joins
the lines of a Python traceback (same revision, instance and log, in order, without a long pause) back
into one entry, with the same state machine that keeps a traceback whole in a plain-text log file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from core.backoff import Retryable, with_backoff
from core.errors import AccessDenied, LoggingUnavailable, RequestRejected
from core.events import parse_time
from core.gcp import filter_string, revision_clauses
from core.model import RevisionScope

SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
PAGE_SIZE_MAX = 1000  # entries.list refuses larger pages
LIST_TIMEOUT_S = 30.0
# A short page with a nextPageToken is followed, but never past this many requests per question.
MAX_PAGES = 3
# entries.list: 60 requests per minute per project, and a 429 carries no Retry-After.
BACKOFF_FIRST_S = 2.0
MAX_ATTEMPTS = 4
# Lines of one traceback are written at once; a longer pause means the next line belongs to something else.
STITCH_GAP_S = 2.0
# Keys under which structured loggers put the stack of an exception next to the message.
STACK_KEYS = ("stack_trace", "stackTrace", "exception", "exc_info", "traceback", "error.stack")
MESSAGE_KEYS = ("message", "msg", "textPayload", "error", "event")
TRACEBACK_BANNER = "Traceback (most recent call last)"
CHAINED_BANNERS = ("During handling of the above exception", "The above exception was the direct cause")
# The lines of a traceback, for `=~` in the Logging query language (RE2) and for `re` alike: a frame; the
# exception line, as traceback prints it; a banner, the opening one or a chained exception's.
TRACEBACK_LINE_PATTERNS = (
    r'^\s+File "',
    # "Name: message" with a (dotted) CapWords class name (not a level such as "INFO: "); or, without a message,
    # a built-in-like name or a dotted CapWords one ("orders.errors.NotFound").
    r"^(?:(?:[A-Za-z_]\w*\.)*[A-Z]\w*[a-z]\w*: |(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Exit|Interrupt|Iteration|Warning)$"
    r"|(?:[A-Za-z_]\w*\.)+[A-Z]\w*$)",
    r"^(?:Traceback \(most recent call last\)|" + "|".join(CHAINED_BANNERS) + ")",
)
_TRACEBACK_LINES = tuple(re.compile(p) for p in TRACEBACK_LINE_PATTERNS)
_STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?\s*")
_LEVEL = re.compile(r"^\[?(DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL|ALERT|EMERGENCY)\]?[:\s]", re.I)


@dataclass(frozen=True)
class LogEntry:
    """One log entry reduced to what signatures and evidence need."""

    timestamp: datetime | None
    severity: str = "DEFAULT"
    text: str = ""  # textPayload, or the JSON message with its stack trace appended
    payload: dict[str, Any] | None = None  # jsonPayload as sent
    http_status: int | None = None
    http_method: str = ""
    http_url: str = ""
    revision: str = ""
    insert_id: str = ""
    trace: str = ""
    log_name: str = ""
    instance: str = ""  # labels.instanceId: the container instance that wrote it


@dataclass
class LogBatch:
    """The entries one question found (oldest first, tracebacks stitched), whether the read was cut short
    (the limit reached or a page left unread), how many raw entries were read and the API requests it took."""

    entries: list[LogEntry] = field(default_factory=list)
    truncated: bool = False
    calls: int = 0
    filter: str = ""
    fetched: int = 0  # raw entries read, before stitching


class LogSource(Protocol):
    """Log entries of a revision in a time range: Cloud Logging, or a local file."""

    async def entries(self, scope: RevisionScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, traceback_lines: bool = False,
                      limit: int = PAGE_SIZE_MAX, deadline: float = 0.0) -> LogBatch:
        """Entries matching ANY selector (severity ≥ ``min_severity``, a text term, a 5xx request log, with
        ``traceback_lines`` a line of a traceback); with no selector at all, any entry. Tracebacks split one
        line per entry come back stitched. ``deadline`` is a ``time.monotonic()`` value (0: none)."""
        ...


def severity_rank(severity: str) -> int:
    """Position in Cloud Logging's order; unknown names rank as DEFAULT."""
    name = (severity or "DEFAULT").upper()
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    return SEVERITIES.index(name) if name in SEVERITIES else 0


def stamp(when: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``, as Cloud Logging writes a timestamp and its filters take one."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_filter(scope: RevisionScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                 text_search: Sequence[str] = (), include_requests: bool = True, traceback_lines: bool = False) -> str:
    """The Logging filter for one question; both timestamp bounds are always explicit, so the window read is
    exactly the one asked for, whatever a client or console would default to."""
    clauses = [*revision_clauses(scope), f'timestamp>="{stamp(since)}"', f'timestamp<="{stamp(until)}"']
    selectors = [f"severity>={min_severity.upper()}"] if min_severity else []
    if include_requests:
        selectors.append("httpRequest.status>=500")
    for term in text_search:
        # Plain text on stdout/stderr often arrives as DEFAULT: a traceback is only found by its words.
        selectors += [f"textPayload:{filter_string(term)}", f"jsonPayload.message:{filter_string(term)}"]
    if traceback_lines:
        # Cloud Run splits plain text into one entry per line: the frames and the exception line of a
        # traceback are separate DEFAULT entries that no other selector finds.
        selectors += [f"textPayload=~{filter_string(pattern)}" for pattern in TRACEBACK_LINE_PATTERNS]
    if selectors:
        clauses.append("(" + " OR ".join(selectors) + ")")
    return " AND ".join(clauses)


def is_traceback_line(text: str) -> bool:
    """A frame, an exception line or a banner (opening or chained), by the patterns the Logging filter uses."""
    return any(p.search(text) for p in _TRACEBACK_LINES)


def _json_text(payload: dict[str, Any]) -> str:
    message = next((payload[k] for k in MESSAGE_KEYS if isinstance(payload.get(k), str) and payload[k]), "")
    stack = next((payload[k] for k in STACK_KEYS if isinstance(payload.get(k), str) and payload[k]), "")
    if not message and not stack:
        return json.dumps(payload, sort_keys=True)[:2000]
    if stack and stack.strip() not in message:
        return f"{message}\n{stack}" if message else stack
    return message


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(value)


def _status(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def entry_from_parts(*, timestamp: Any, severity: Any, payload: Any, http_request: Any, revision: str = "",
                     insert_id: str = "", trace: str = "", log_name: str = "", instance: str = "") -> LogEntry:
    """A LogEntry from the fields of an API entry or a JSON line."""
    request = http_request if isinstance(http_request, dict) else {}
    if isinstance(payload, dict):
        json_payload: dict[str, Any] | None = payload
        text = _json_text(payload)
    else:
        json_payload, text = None, "" if payload is None else str(payload)
    status = _status(request.get("status"))
    method = str(request.get("requestMethod") or "")
    url = str(request.get("requestUrl") or "")
    if not text and status is not None:
        text = f"{method} {url} {status}".strip()
    return LogEntry(timestamp=_time(timestamp), severity=str(severity or "DEFAULT").upper(), text=text,
                    payload=json_payload, http_status=status, http_method=method, http_url=url, revision=revision,
                    insert_id=insert_id or "", trace=trace or "", log_name=log_name or "", instance=instance or "")


def list_entries_page(client: Any, project: str, body: dict[str, Any], timeout_s: float, *,
                      what: str = "logs") -> dict[str, Any]:
    """One entries.list request of ``project`` (the client's own when empty) through the client's REST connection:
    exactly one HTTP call, the raw JSON answer. 403 → AccessDenied naming the role, 400 → RequestRejected,
    429/5xx/unreachable → Retryable; ``what`` names what was being read in the AccessDenied message."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    name = f"projects/{project or client.project}"
    try:
        # The client's own list_entries pages on by itself whenever a page comes back short, without a timeout;
        # sending the request through its connection keeps every request counted and bounded.
        answer = client._connection.api_request(method="POST", path="/entries:list",
                                                data={"resourceNames": [name], **body}, timeout=timeout_s)
    except gexc.Forbidden as exc:
        raise AccessDenied(f"permission denied reading {what} in {name}; grant the function's service account "
                           f"roles/logging.viewer ({exc.message})") from exc
    except gexc.TooManyRequests as exc:
        raise Retryable(f"Cloud Logging quota exceeded (429: {exc.message})") from exc
    except gexc.BadRequest as exc:
        raise RequestRejected(f"Cloud Logging rejected the query ({exc.code}: {exc.message})") from exc
    except gexc.ServerError as exc:
        raise Retryable(f"Cloud Logging failed: {exc}") from exc
    except (ConnectionError, TimeoutError, OSError, auth_exc.TransportError) as exc:  # requests' errors are OSErrors
        raise Retryable(f"Cloud Logging unreachable: {exc}") from exc
    return answer if isinstance(answer, dict) else {}


class CloudLoggingSource:
    """LogSource over the official google-cloud-logging client's REST connection (a fake when the endpoint env is set)."""

    def __init__(self, backoff_s: float = BACKOFF_FIRST_S, max_attempts: int = MAX_ATTEMPTS,
                 timeout_s: float = LIST_TIMEOUT_S) -> None:
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s  # per request
        self.calls = 0  # entries.list requests sent, retries included, for evidence and the bench
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()  # questions asked at once share the first one's client

    def _client(self, project: str) -> Any:
        with self._clients_lock:
            if project not in self._clients:
                from core.gcp import logging_client

                self._clients[project] = logging_client(project)
            return self._clients[project]

    def _request(self, project: str, body: dict[str, Any], deadline: float = 0.0) -> dict[str, Any]:
        """One entries.list request: exactly one HTTP call, no retry of its own, the raw JSON answer."""
        client = self._client(project)
        self.calls += 1
        return list_entries_page(client, project, body, self._timeout(deadline))

    def _timeout(self, deadline: float) -> float:
        """The per-request timeout, never past the caller's deadline (a second at least: a request needs one)."""
        return min(self.timeout_s, max(deadline - time.monotonic(), 1.0)) if deadline else self.timeout_s

    def _room_for_another_page(self, deadline: float) -> bool:
        """A further page is asked for only when a whole request timeout still fits before the deadline."""
        return not deadline or deadline - time.monotonic() >= self.timeout_s

    async def entries(self, scope: RevisionScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, traceback_lines: bool = False,
                      limit: int = PAGE_SIZE_MAX, deadline: float = 0.0) -> LogBatch:
        """One entries.list request in the common case, a short page's token followed up to ``MAX_PAGES``;
        429/5xx/timeouts retried with doubling pauses while the deadline allows."""
        limit = max(1, min(limit, PAGE_SIZE_MAX))
        log_filter = build_filter(scope, since, until, min_severity=min_severity, text_search=text_search,
                                  include_requests=include_requests, traceback_lines=traceback_lines)
        raw: list[LogEntry] = []
        found: list[LogEntry] = []
        token, calls = "", 0
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"filter": log_filter, "orderBy": "timestamp asc", "pageSize": PAGE_SIZE_MAX if raw else limit}
            if token:
                body["pageToken"] = token
            page, attempts = await with_backoff(functools.partial(self._request, scope.project, body, deadline),
                                                attempts=self.max_attempts, first_pause_s=self.backoff_s,
                                                deadline=deadline, unavailable=LoggingUnavailable)
            calls += attempts
            raw += [_json_line(e) for e in page.get("entries") or [] if isinstance(e, dict)]
            token = str(page.get("nextPageToken") or "")
            found = stitch(raw)
            if len(found) >= limit or not token or not self._room_for_another_page(deadline):
                break
        # The limit counts entries after stitching: one traceback's lines are one entry, however many frames.
        return LogBatch(found[:limit], truncated=len(found) > limit or bool(token), calls=calls, filter=log_filter,
                        fetched=len(raw))


class FileLogSource:
    """LogSource over a local file: JSON lines (Cloud Logging-like) or plain text, for `validate --url` and the demo.

    Entries without a timestamp match every time range; entries without a revision belong to
    ``default_revision`` (every revision when it is empty), so a local log file counts for the new revision.
    """

    def __init__(self, path: str | Path, default_revision: str = "") -> None:
        self.path = Path(path)
        self.default_revision = default_revision
        self.calls = 0  # questions answered
        self._parsed: tuple[tuple[int, int], list[LogEntry]] | None = None  # (mtime ns, size) → entries

    def read(self) -> list[LogEntry]:
        """Every entry of the file, in file order (a missing file has none); parsed again only once it changed."""
        try:
            stat = self.path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            if self._parsed is None or self._parsed[0] != version:
                # Stat before reading: a line appended in between makes the next question read the file again.
                self._parsed = (version, parse_log_text(self.path.read_text(encoding="utf-8", errors="replace")))
        except FileNotFoundError:
            return []
        return list(self._parsed[1])

    async def entries(self, scope: RevisionScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, traceback_lines: bool = False,
                      limit: int = PAGE_SIZE_MAX, deadline: float = 0.0) -> LogBatch:
        """The file's entries that the same filter would select, stitched like Cloud Logging's."""
        self.calls += 1
        floor = severity_rank(min_severity) if min_severity else None
        terms = [t.lower() for t in text_search]
        any_entry = floor is None and not terms and not include_requests and not traceback_lines
        found = []
        for entry in await asyncio.to_thread(self.read):
            revision = entry.revision or self.default_revision
            if scope.revision and revision and revision != scope.revision:
                continue
            if entry.timestamp is not None and not since <= entry.timestamp <= until:
                continue
            selected = any_entry or (floor is not None and severity_rank(entry.severity) >= floor) \
                or (include_requests and (entry.http_status or 0) >= 500) \
                or any(t in entry.text.lower() for t in terms) \
                or (traceback_lines and entry.payload is None and is_traceback_line(entry.text))
            if selected:
                found.append(entry)
        read = found[:limit]
        return LogBatch(stitch(read), truncated=len(found) > limit, calls=1, filter=f"file {self.path}",
                        fetched=len(read))


def _json_line(data: dict[str, Any]) -> LogEntry:
    """An entry as the API returns it, or a structured line as a container writes it to stdout."""
    resource: dict[str, Any] = data["resource"] if isinstance(data.get("resource"), dict) else {}
    labels = {**(resource.get("labels") or {}), **(data.get("labels") or {}),
              **(data.get("logging.googleapis.com/labels") or {})}
    if "textPayload" in data or "jsonPayload" in data:
        payload: Any = data.get("jsonPayload", data.get("textPayload"))
    elif "logName" in data or resource:  # an API entry without a payload: a request log
        payload = None
    else:  # a structured line as written to stdout: the special fields sit beside the payload
        payload = {k: v for k, v in data.items()
                   if k not in ("severity", "timestamp", "time", "httpRequest", "logging.googleapis.com/labels",
                                "logging.googleapis.com/trace", "logging.googleapis.com/insertId")}
    return entry_from_parts(
        timestamp=data.get("timestamp") or data.get("time"), severity=data.get("severity") or data.get("level"),
        payload=payload, http_request=data.get("httpRequest"),
        revision=str(labels.get("revision_name") or data.get("revision") or ""),
        insert_id=str(data.get("insertId") or data.get("logging.googleapis.com/insertId") or ""),
        trace=str(data.get("trace") or data.get("logging.googleapis.com/trace") or ""),
        log_name=str(data.get("logName") or ""), instance=str(labels.get("instanceId") or ""))


def _traceback_step(mode: str, line: str, strict: bool = False) -> str:
    """The state of a traceback block after ``line``, or "" when the line is not part of it.

    "tb": inside the frames (indented frame and code lines, blank lines, banners), until the exception
    line, the first other line (``strict``: the first that looks like one, for lines of several writers
    interleaved); "end": after it, where only blank lines and a chained-exception banner continue the
    block, so a fresh traceback that follows starts a block of its own.
    """
    stripped = line.strip()
    if mode == "tb":
        if not stripped or line.startswith((" ", "\t")) or stripped.startswith((TRACEBACK_BANNER, *CHAINED_BANNERS)):
            return "tb"
        return "end" if not strict or _TRACEBACK_LINES[1].search(line) else ""
    if mode == "end":
        if stripped.startswith(CHAINED_BANNERS):
            return "tb"
        return "end" if not stripped else ""
    return ""


def _single_line(entry: LogEntry) -> bool:
    return entry.payload is None and entry.http_status is None and "\n" not in entry.text.rstrip("\n")


def _gap_s(before: LogEntry, after: LogEntry) -> float:
    if before.timestamp is None or after.timestamp is None:
        return 0.0
    return abs((after.timestamp - before.timestamp).total_seconds())


def _joined(lines: list[LogEntry]) -> LogEntry:
    severity = max((e.severity for e in lines), key=severity_rank)
    return replace(lines[0], text="\n".join(e.text.rstrip("\n") for e in lines).rstrip(), severity=severity,
                   payload=None)


def stitch(entries: list[LogEntry]) -> list[LogEntry]:
    """Tracebacks that arrived one line per entry joined back into one entry each; everything else unchanged.

    Lines belong together when they share revision, instance and log, follow each other (oldest first, as
    fetched) within ``STITCH_GAP_S`` and continue the block a banner line opened; entries of other
    instances in between do not interrupt it, nor does an unrelated line of the same instance among the
    frames (it stays an entry of its own). A stitched entry keeps the first line's identity and time
    and the highest severity of its lines.
    """
    slots: list[list[LogEntry]] = []
    blocks: dict[tuple[str, str, str], tuple[list[LogEntry], str]] = {}
    for entry in entries:
        key = (entry.revision, entry.instance, entry.log_name)
        if key in blocks:
            lines, mode = blocks.pop(key)
            in_time = _gap_s(lines[-1], entry) <= STITCH_GAP_S
            step = _traceback_step(mode, entry.text, strict=True) if _single_line(entry) else ""
            if step and in_time:
                lines.append(entry)
                blocks[key] = (lines, step)
                continue
            if mode == "tb" and in_time and TRACEBACK_BANNER not in entry.text:
                blocks[key] = (lines, mode)  # another line of the same writer in between: the frames go on
        slots.append([entry])
        if _single_line(entry) and TRACEBACK_BANNER in entry.text:
            blocks[key] = (slots[-1], "tb")
    return [_joined(lines) if len(lines) > 1 else lines[0] for lines in slots]


def _text_entry(lines: list[str]) -> LogEntry:
    first = lines[0]
    leading = _STAMP.match(first)
    rest = first[leading.end():] if leading else first
    level = _LEVEL.match(rest)
    text = "\n".join([rest, *lines[1:]]).rstrip()
    severity = level.group(1).upper() if level else "DEFAULT"  # like Cloud Logging: plain text has no severity
    return entry_from_parts(timestamp=leading.group(1) if leading else None, severity=severity, payload=text,
                            http_request=None)


def parse_log_text(raw: str) -> list[LogEntry]:
    """JSON lines become entries one by one; plain text is split into entries, a (chained) traceback staying whole."""
    entries: list[LogEntry] = []
    block: list[str] = []
    mode = ""  # a traceback block's state (see _traceback_step); "" outside one

    def flush() -> None:
        nonlocal block, mode
        if block:
            entries.append(_text_entry(block))
        block, mode = [], ""

    for line in raw.splitlines():
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                flush()
                entries.append(_json_line(data))
                continue
        step = _traceback_step(mode, line)
        if step:
            block.append(line)
            mode = step
            continue
        if block and not mode and line.startswith((" ", "\t")) and stripped:
            block.append(line)  # a continuation line (the source line under a warning, a wrapped message)
            continue
        if block and not mode and stripped.startswith(TRACEBACK_BANNER):
            block.append(line)  # a logger's message line followed by the traceback it printed
            mode = "tb"
            continue
        flush()
        if stripped:
            block = [line]
            mode = "tb" if TRACEBACK_BANNER in line else ""
    flush()
    return entries
