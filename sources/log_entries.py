"""Log entries from what Cloud Run writes: API entries, structured JSON lines and plain text, with the lines
of a Python traceback stitched back into one entry; and ``FileLogSource``, the LogSource over a local file.

Plain text a Cloud Run container writes to stdout/stderr arrives one entry per line, so ``stitch`` joins
the lines of a Python traceback (same revision, instance and log, in order, without a long pause) back
into one entry, with the same state machine that keeps a traceback whole in a plain-text log file.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.model import parse_time
from core.signals import PAGE_SIZE_MAX, LogBatch, LogEntry, RevisionScope, severity_rank

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


def entry_from_json(data: dict[str, Any]) -> LogEntry:
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
                entries.append(entry_from_json(data))
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
