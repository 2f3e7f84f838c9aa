"""A hand-written fake of the Cloud Logging API v2 `entries.list` call (REST), for the official client.

Entries are stored in the real LogEntry JSON shape (camelCase: ``logName``, ``resource{type, labels}``,
``timestamp``, ``severity``, ``textPayload`` | ``jsonPayload``, ``labels``, ``httpRequest``, ...).
The filter is applied loosely: comparisons joined by ``AND`` are honoured (``=``, ``!=``, ``:``, ``>=``,
``<=``, ``>``, ``<`` on dotted paths, quoted path segments, severities and timestamps, and the regular
expression operators ``=~`` / ``!~``, evaluated with Python's ``re.search`` as a stand-in for RE2), and so
is one parenthesised group of comparisons joined by ``OR``; anything else (``NOT``, nesting, bare text) is
ignored, i.e. matches. Quoted values may hold ``\\"`` and ``\\\\`` escapes. Tests should assert the filter
they sent from ``.requests`` rather than rely on the fake's evaluation.

Like the real API, the fake can answer a short page that still carries a ``nextPageToken``
(`short_pages`), fail (`fail_next`), find nothing yet (`lag`) or answer slowly (``delay_s``).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from tests.servers.loopback import LoopbackHandler, LoopbackServer, QueryFaults, error_body, rfc3339

Json = dict[str, Any]
SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
_CLAUSE = re.compile(r'^\s*(?P<path>[A-Za-z_][\w.]*(?:\."[^"]*")?[\w.]*)\s*(?P<op>>=|<=|!=|=~|!~|=|:|>|<)\s*(?P<value>.+?)\s*$')
_QUOTED = re.compile(r'("(?:\\.|[^"\\])*")')
_MISSING = object()


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _split(expression: str, separator: str) -> list[str]:
    """Pieces of ``expression`` between ``separator`` matches outside quoted strings (escapes respected)."""
    pieces, current = [], ""
    for i, token in enumerate(_QUOTED.split(expression)):
        if i % 2:  # a quoted string, kept whole
            current += token
            continue
        parts = re.split(separator, token)
        current += parts[0]
        for part in parts[1:]:
            pieces.append(current)
            current = part
    pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _split_and(expression: str) -> list[str]:
    """Top-level clauses of ``a AND b AND c``; newlines count as AND, like the API."""
    return _split(expression, r"\s+AND\s+|\n")


def _unquote(raw: str) -> str:
    """The value of a comparison: a quoted string without its quotes and escapes, or the bare word."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _path_parts(path: str) -> list[str]:
    return [p.strip('"') for p in re.findall(r'"[^"]*"|[^.]+', path)]


def _lookup(entry: Json, path: str) -> Any:
    current: Any = entry
    for part in _path_parts(path):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return _MISSING
    return current


def _compare(found: Any, op: str, wanted: str, path: str) -> bool:
    if op in ("=~", "!~"):
        hit = re.search(wanted, json.dumps(found) if isinstance(found, dict | list) else str(found)) is not None
        return hit if op == "=~" else not hit
    if op == ":":
        return wanted.lower() in (json.dumps(found) if isinstance(found, dict | list) else str(found)).lower()
    if path == "severity":
        have = SEVERITIES.index(str(found)) if str(found) in SEVERITIES else 0
        want = SEVERITIES.index(wanted.upper()) if wanted.upper() in SEVERITIES else 0
        left, right = have, want
    elif path in ("timestamp", "receiveTimestamp"):
        left_t, right_t = _parse_time(str(found)), _parse_time(wanted)
        if left_t is None or right_t is None:
            return True
        left, right = left_t.timestamp(), right_t.timestamp()  # type: ignore[assignment]
    else:
        try:
            left, right = float(found), float(wanted)  # type: ignore[assignment]
        except (TypeError, ValueError):
            left, right = str(found), wanted  # type: ignore[assignment]
    return {
        "=": left == right, "!=": left != right, ">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right,
    }[op]


def _split_or(group: str) -> list[str]:
    """Alternatives of ``a OR b OR c`` (quotes respected)."""
    return _split(group, r"\s+OR\s+")


def _clause(entry: Json, clause: str) -> bool:
    """One comparison; syntax the fake does not understand matches."""
    if clause.startswith("(") and clause.endswith(")") and " OR " in clause:
        return any(_clause(entry, part) for part in _split_or(clause[1:-1]))
    if clause.startswith(("(", "NOT ", "-")) or " OR " in clause:
        return True
    m = _CLAUSE.match(clause)
    if not m:
        return True
    wanted = _unquote(m.group("value"))
    found = _lookup(entry, m.group("path"))
    if found is _MISSING:
        return m.group("op") in ("!=", "!~")
    return _compare(found, m.group("op"), wanted, m.group("path"))


def matches(entry: Json, expression: str) -> bool:
    """Loose evaluation of a Logging filter: AND-joined comparisons and one level of ``(a OR b)``; unknown syntax matches."""
    return all(_clause(entry, clause) for clause in _split_and(expression or ""))


class _Handler(LoopbackHandler["FakeLogging"]):
    def do_POST(self) -> None:
        """`entries:list` (the client reads with POST), answered after ``delay_s``."""
        answer = self.owner._handle("POST", urlsplit(self.path).path, self.read_json())
        if self.owner.delay_s:
            time.sleep(self.owner.delay_s)  # outside the lock: other requests are not held up
        self.send_json(*answer)

    def do_GET(self) -> None:
        """Nothing else is served."""
        self.read_body()
        self.send_json(*self.owner._handle("GET", urlsplit(self.path).path, {}))


class FakeLogging(QueryFaults, LoopbackServer):
    """Serves ``POST /v2/entries:list`` from entries that tests (or other fakes) add; an injected 429 carries no
    Retry-After, like the API's."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(_Handler, "fake Logging")
        self.entries: list[Json] = []
        self.requests: list[Json] = []  # every entries:list body, in order
        self.delay_s = delay_s  # before every answer, to exercise the client's timeout
        self._short = 0
        self._ids = itertools.count(1)

    def add_entry(
        self,
        *,
        project: str = "test",
        log: str = "run.googleapis.com/stdout",
        text: str | None = None,
        json_payload: Json | None = None,
        resource_type: str = "global",
        resource_labels: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        severity: str = "DEFAULT",
        timestamp: str | datetime | None = None,
        http_request: Json | None = None,
        trace: str = "",
    ) -> Json:
        """Store one LogEntry (real JSON shape) and return it; ``log`` is the unescaped log id."""
        stamp = timestamp if isinstance(timestamp, str) else rfc3339(timestamp)
        entry: Json = {
            "logName": f"projects/{project}/logs/{quote(log, safe='')}",
            "resource": {"type": resource_type, "labels": dict(resource_labels or {})},
            "timestamp": stamp,
            "receiveTimestamp": stamp,
            "severity": severity,
            "insertId": f"{next(self._ids):012x}",
        }
        if text is not None:
            entry["textPayload"] = text
        if json_payload is not None:
            entry["jsonPayload"] = json_payload
        if labels:
            entry["labels"] = dict(labels)
        if http_request:
            entry["httpRequest"] = http_request
        if trace:
            entry["trace"] = trace
        with self._lock:
            self.entries.append(entry)
        return entry

    def add_revision_entry(self, service: str, revision: str, *, region: str = "us-central1", project: str = "test",
                           log: str = "run.googleapis.com/stderr", **fields: Any) -> Json:
        """One entry of a Cloud Run revision (resource ``cloud_run_revision`` with its labels)."""
        labels = {"service_name": service, "revision_name": revision, "location": region,
                  "configuration_name": service, "project_id": project}
        return self.add_entry(project=project, log=log, resource_type="cloud_run_revision", resource_labels=labels,
                              **fields)

    def add_request(self, service: str, revision: str, *, project: str = "test", path: str = "/health", status: int = 200,
                    ago_s: float = 30.0) -> Json:
        """The request log of one request the revision answered ``ago_s`` seconds ago: Cloud Logging has its entries."""
        return self.add_revision_entry(service, revision, project=project, log="run.googleapis.com/requests", severity="INFO",
                                       timestamp=datetime.now(UTC) - timedelta(seconds=ago_s),
                                       http_request={"requestMethod": "GET", "requestUrl": f"https://{service}.a.run.app{path}",
                                                     "status": status})

    def short_pages(self, per_page: int) -> None:
        """Answer at most `per_page` entries per page, with a nextPageToken while more match: Cloud Logging
        returns such partial pages when a search runs long (0: pages as large as pageSize again)."""
        with self._lock:
            self._short = per_page

    def _handle(self, method: str, path: str, body: Json) -> tuple[int, Json]:
        with self._lock:
            if method == "POST" and path == "/v2/entries:list":
                self.requests.append(body)
            if (status := self._take_failure()) is not None:
                return status, error_body(status, f"injected failure {status}")
            if method != "POST" or path != "/v2/entries:list":
                return 404, error_body(404, f"Method not found: {method} {path}")
            if self._take_lag():
                return 200, {}
            projects = {n.split("/", 1)[1] for n in body.get("resourceNames", []) if n.startswith("projects/")}
            try:
                found = [
                    e for e in self.entries
                    if (not projects or e["logName"].split("/")[1] in projects) and matches(e, body.get("filter", ""))
                ]
            except re.error as exc:  # the API, too, refuses a filter whose regular expression does not compile
                return 400, error_body(400, f"invalid regular expression in filter: {exc}")
        found.sort(key=lambda e: _parse_time(e["timestamp"]) or datetime.min.replace(tzinfo=UTC),
                   reverse="desc" in str(body.get("orderBy", "")).lower())
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 50)
        if self._short:
            size = min(size, self._short)
        answer: Json = {}
        if found[start:start + size]:
            answer["entries"] = copy.deepcopy(found[start:start + size])
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return 200, answer
