"""Where the `logs` check reads a revision's log entries in Google Cloud: Cloud Logging ``entries.list``.

``LogSource.entries`` answers one question per call: the entries of one revision in one time range,
narrowed to *signals* (severity ≥ a floor, text matches, request-log 5xx, optionally the lines of a
traceback) or, with no selector at all, any entry (used to tell "no errors" from "nothing ingested yet").

Economy: ``CloudLoggingSource`` sends each ``entries.list`` request itself through the official client's
REST connection, with a page size as large as the caller's limit and a per-request timeout, so the common
case is exactly one request per question. Cloud Logging may answer a short page with a ``nextPageToken``;
the token is followed only while fewer than ``limit`` entries were read, for at most ``MAX_PAGES`` requests
and only while a whole request still fits before the deadline. Every request sent is counted, retries
included, and a read cut by the limit or by an unread token is reported as ``truncated``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.backoff import Retryable, with_backoff
from core.errors import AccessDenied, LoggingUnavailable, RequestRejected
from core.model import stamp
from core.signals import PAGE_SIZE_MAX, LogBatch, LogEntry, RevisionScope
from sources.gcp import filter_string, revision_clauses
from sources.log_entries import TRACEBACK_LINE_PATTERNS, entry_from_json, stitch

LIST_TIMEOUT_S = 30.0
# A short page with a nextPageToken is followed, but never past this many requests per question.
MAX_PAGES = 3
# entries.list: 60 requests per minute per project, and a 429 carries no Retry-After.
BACKOFF_FIRST_S = 2.0
MAX_ATTEMPTS = 4


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
                from sources.gcp import logging_client

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
            raw += [entry_from_json(e) for e in page.get("entries") or [] if isinstance(e, dict)]
            token = str(page.get("nextPageToken") or "")
            found = stitch(raw)
            if len(found) >= limit or not token or not self._room_for_another_page(deadline):
                break
        # The limit counts entries after stitching: one traceback's lines are one entry, however many frames.
        return LogBatch(found[:limit], truncated=len(found) > limit or bool(token), calls=calls, filter=log_filter,
                        fetched=len(raw))
