"""Where the `logs` check reads a revision's log entries: Cloud Logging, or a local log file.

``LogSource.entries`` answers one question per call: the entries of one revision in one time range,
narrowed to *signals* (severity ≥ a floor, text matches, request-log 5xx) or, with no selector at all,
any entry (used to tell "no errors" from "nothing ingested yet"). ``CloudLoggingSource`` turns a call
into exactly one ``entries.list`` request in the common case: the filter and a page size as large as
the caller's limit do the work, and a full page is reported as ``truncated`` instead of paging on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from core.backoff import Retryable, with_backoff
from core.errors import AccessDenied, LoggingUnavailable

SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
PAGE_SIZE_MAX = 1000  # entries.list refuses larger pages
LIST_TIMEOUT_S = 30.0
# entries.list: 60 requests per minute per project, and a 429 carries no Retry-After.
BACKOFF_FIRST_S = 2.0
MAX_ATTEMPTS = 4
# Keys under which structured loggers put the stack of an exception next to the message.
STACK_KEYS = ("stack_trace", "stackTrace", "exception", "exc_info", "traceback", "error.stack")
MESSAGE_KEYS = ("message", "msg", "textPayload", "error", "event")
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


@dataclass(frozen=True)
class LogScope:
    """Whose entries: one revision of one Cloud Run service."""

    service: str
    revision: str = ""
    project: str = ""
    region: str = ""


@dataclass
class LogBatch:
    """The entries one question found (oldest first), whether the limit cut them, and the API calls it took."""

    entries: list[LogEntry] = field(default_factory=list)
    truncated: bool = False
    calls: int = 0
    filter: str = ""


class LogSource(Protocol):
    """Log entries of a revision in a time range: Cloud Logging, or a local file."""

    async def entries(self, scope: LogScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, limit: int = PAGE_SIZE_MAX,
                      deadline: float = 0.0) -> LogBatch:
        """Entries matching ANY selector (severity ≥ ``min_severity``, a text term, a 5xx request log);
        with no selector at all, any entry. ``deadline`` is a ``time.monotonic()`` value (0: none)."""
        ...


def severity_rank(severity: str) -> int:
    """Position in Cloud Logging's order; unknown names rank as DEFAULT."""
    name = (severity or "DEFAULT").upper()
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    return SEVERITIES.index(name) if name in SEVERITIES else 0


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_filter(scope: LogScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                 text_search: Sequence[str] = (), include_requests: bool = True) -> str:
    """The Logging filter for one question; both timestamp bounds are always explicit.

    An explicit ``timestamp`` also stops the Python client from appending its own ``timestamp >= now-24h``.
    """
    clauses = ['resource.type="cloud_run_revision"', f"resource.labels.service_name={_quote(scope.service)}"]
    if scope.revision:
        clauses.append(f"resource.labels.revision_name={_quote(scope.revision)}")
    if scope.region:
        clauses.append(f"resource.labels.location={_quote(scope.region)}")
    clauses += [f'timestamp>="{_stamp(since)}"', f'timestamp<="{_stamp(until)}"']
    selectors = [f"severity>={min_severity.upper()}"] if min_severity else []
    if include_requests:
        selectors.append("httpRequest.status>=500")
    for term in text_search:
        # Plain text on stdout/stderr often arrives as DEFAULT: a traceback is only found by its words.
        selectors += [f"textPayload:{_quote(term)}", f"jsonPayload.message:{_quote(term)}"]
    if selectors:
        clauses.append("(" + " OR ".join(selectors) + ")")
    return " AND ".join(clauses)


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
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(",", "."))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _status(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def entry_from_parts(*, timestamp: Any, severity: Any, payload: Any, http_request: Any, revision: str = "",
                     insert_id: str = "", trace: str = "", log_name: str = "") -> LogEntry:
    """A LogEntry from the fields of an API entry (client object or JSON line)."""
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
                    insert_id=insert_id or "", trace=trace or "", log_name=log_name or "")


def _from_client(entry: Any) -> LogEntry:
    labels = getattr(getattr(entry, "resource", None), "labels", None) or {}
    return entry_from_parts(timestamp=entry.timestamp, severity=entry.severity, payload=entry.payload,
                            http_request=entry.http_request, revision=str(labels.get("revision_name", "")),
                            insert_id=entry.insert_id or "", trace=entry.trace or "", log_name=entry.log_name or "")


class CloudLoggingSource:
    """LogSource over the official google-cloud-logging client (REST to a fake when the endpoint env is set)."""

    def __init__(self, backoff_s: float = BACKOFF_FIRST_S, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self.calls = 0  # entries.list requests sent, for evidence and the bench
        self._clients: dict[str, Any] = {}

    def _client(self, project: str) -> Any:
        if project not in self._clients:
            from core.gcp import logging_client

            self._clients[project] = logging_client(project)
        return self._clients[project]

    def _list(self, project: str, log_filter: str, limit: int) -> list[LogEntry]:
        """One entries.list call (never a second page: ``islice`` stops before the pager asks for one)."""
        from google.api_core import exceptions as gexc

        client = self._client(project)
        names = [f"projects/{project or client.project}"]
        self.calls += 1
        try:
            pager = client.list_entries(resource_names=names, filter_=log_filter, order_by="timestamp asc",
                                        page_size=limit)
            return [_from_client(e) for e in itertools.islice(pager, limit)]
        except gexc.Forbidden as exc:  # REST answers Forbidden; gRPC its subclass PermissionDenied
            raise AccessDenied(f"permission denied reading logs in {names[0]}; grant the function's service account "
                               f"roles/logging.viewer ({exc.message})") from exc
        except gexc.TooManyRequests as exc:
            raise Retryable(f"Cloud Logging quota exceeded (429: {exc.message})") from exc
        except (gexc.ServerError, gexc.RetryError) as exc:
            raise Retryable(f"Cloud Logging failed: {exc}") from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retryable(f"Cloud Logging unreachable: {exc}") from exc

    async def entries(self, scope: LogScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, limit: int = PAGE_SIZE_MAX,
                      deadline: float = 0.0) -> LogBatch:
        """One entries.list call; 429/5xx retried with doubling pauses while the deadline allows."""
        limit = max(1, min(limit, PAGE_SIZE_MAX))
        log_filter = build_filter(scope, since, until, min_severity=min_severity, text_search=text_search,
                                  include_requests=include_requests)
        found, calls = await with_backoff(lambda: self._list(scope.project, log_filter, limit), attempts=self.max_attempts,
                                          first_pause_s=self.backoff_s, deadline=deadline, unavailable=LoggingUnavailable)
        return LogBatch(found, truncated=len(found) >= limit, calls=calls, filter=log_filter)


class FileLogSource:
    """LogSource over a local file: JSON lines (Cloud Logging-like) or plain text, for `validate --url` and the demo.

    Entries without a timestamp match every time range; entries without a revision belong to
    ``default_revision`` (every revision when it is empty), so a local log file counts for the new revision.
    """

    def __init__(self, path: str | Path, default_revision: str = "") -> None:
        self.path = Path(path)
        self.default_revision = default_revision
        self.calls = 0

    def read(self) -> list[LogEntry]:
        """Every entry of the file, in file order (a missing file has none)."""
        try:
            raw = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return parse_log_text(raw)

    async def entries(self, scope: LogScope, since: datetime, until: datetime, *, min_severity: str | None = "ERROR",
                      text_search: Sequence[str] = (), include_requests: bool = True, limit: int = PAGE_SIZE_MAX,
                      deadline: float = 0.0) -> LogBatch:
        """The file's entries that the same filter would select."""
        self.calls += 1
        floor = severity_rank(min_severity) if min_severity else None
        terms = [t.lower() for t in text_search]
        any_entry = floor is None and not terms and not include_requests
        found = []
        for entry in await asyncio.to_thread(self.read):
            revision = entry.revision or self.default_revision
            if scope.revision and revision and revision != scope.revision:
                continue
            if entry.timestamp is not None and not since <= entry.timestamp <= until:
                continue
            selected = any_entry or (floor is not None and severity_rank(entry.severity) >= floor) \
                or (include_requests and (entry.http_status or 0) >= 500) \
                or any(t in entry.text.lower() for t in terms)
            if selected:
                found.append(entry)
        return LogBatch(found[:limit], truncated=len(found) > limit, calls=1, filter=f"file {self.path}")


def _json_line(data: dict[str, Any]) -> LogEntry:
    resource: dict[str, Any] = data["resource"] if isinstance(data.get("resource"), dict) else {}
    labels = {**(resource.get("labels") or {}), **(data.get("labels") or {}),
              **(data.get("logging.googleapis.com/labels") or {})}
    if "textPayload" in data or "jsonPayload" in data:
        payload: Any = data.get("jsonPayload", data.get("textPayload"))
    else:  # a structured line as written to stdout: the special fields sit beside the payload
        payload = {k: v for k, v in data.items()
                   if k not in ("severity", "timestamp", "time", "httpRequest", "logging.googleapis.com/labels",
                                "logging.googleapis.com/trace", "logging.googleapis.com/insertId")}
    return entry_from_parts(
        timestamp=data.get("timestamp") or data.get("time"), severity=data.get("severity") or data.get("level"),
        payload=payload, http_request=data.get("httpRequest"),
        revision=str(labels.get("revision_name") or data.get("revision") or ""),
        insert_id=str(data.get("insertId") or data.get("logging.googleapis.com/insertId") or ""),
        trace=str(data.get("trace") or data.get("logging.googleapis.com/trace") or ""))


_BANNERS = ("Traceback (most recent call last)", "During handling of the above exception",
            "The above exception was the direct cause")


def _text_entry(lines: list[str]) -> LogEntry:
    first = lines[0]
    stamp = _STAMP.match(first)
    rest = first[stamp.end():] if stamp else first
    level = _LEVEL.match(rest)
    text = "\n".join([rest, *lines[1:]]).rstrip()
    severity = level.group(1).upper() if level else "DEFAULT"  # like Cloud Logging: plain text has no severity
    return entry_from_parts(timestamp=stamp.group(1) if stamp else None, severity=severity, payload=text,
                            http_request=None)


def parse_log_text(raw: str) -> list[LogEntry]:
    """JSON lines become entries one by one; plain text is split into entries, a (chained) traceback staying whole."""
    entries: list[LogEntry] = []
    block: list[str] = []
    mode = ""  # "tb": inside frames; "end": after the exception line, where a chained traceback may follow

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
        if mode == "tb":
            block.append(line)
            if not (line.startswith((" ", "\t")) or stripped.startswith(_BANNERS) or not stripped):
                mode = "end"  # the exception line
            continue
        if mode == "end" and (not stripped or stripped.startswith(_BANNERS)):
            block.append(line)
            mode = "tb" if stripped.startswith(_BANNERS) else "end"
            continue
        if block and mode == "" and line.startswith((" ", "\t")) and stripped:
            block.append(line)  # a continuation line (the source line under a warning, a wrapped message)
            continue
        if block and mode == "" and stripped.startswith(_BANNERS[0]):
            block.append(line)  # a logger's message line followed by the traceback it printed
            mode = "tb"
            continue
        flush()
        if stripped:
            block = [line]
            mode = "tb" if _BANNERS[0] in line else ""
    flush()
    return entries
