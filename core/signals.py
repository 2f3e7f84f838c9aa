"""What the log and metric sources answer, and the protocols they answer through.

The checks and the model know only these; ``sources/`` implements them over Cloud Logging, a local log
file and Cloud Monitoring, so nothing here imports a Google client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
PAGE_SIZE_MAX = 1000  # entries.list refuses larger pages; the most entries one question asks for


@dataclass(frozen=True)
class RevisionScope:
    """One revision of one Cloud Run service: whose log entries or metrics a query reads."""

    service: str
    revision: str = ""
    project: str = ""
    region: str = ""


# ---------------------------------------------------------------- logs


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


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricSeries:
    """One returned series: its metric and resource labels, and its point values (newest first, as the API sends)."""

    labels: dict[str, str]
    values: tuple[float, ...]


@dataclass
class SeriesBatch:
    """What one question found, the API calls it took (retries included) and the filter it sent."""

    series: list[MetricSeries] = field(default_factory=list)
    calls: int = 0
    filter: str = ""

    def total(self) -> float:
        """Sum of every value (counts)."""
        return sum(v for s in self.series for v in s.values)

    def highest(self) -> float | None:
        """Largest value (percentiles, utilisations); None when there is no data."""
        values = [v for s in self.series for v in s.values]
        return max(values) if values else None


class MetricSource(Protocol):
    """Aligned time series of a Cloud Run revision in a time range."""

    async def series(self, metric_type: str, scope: RevisionScope, start: datetime, end: datetime, *, aligner: str,
                     reducer: str = "REDUCE_NONE", group_by: Sequence[str] = (), deadline: float = 0.0) -> SeriesBatch:
        """``metric_type`` of the revision between ``start`` and ``end`` with one alignment period covering the range;
        ``aligner``/``reducer`` are Aggregation enum names. ``deadline`` is a ``time.monotonic()`` value (0: none)."""
        ...
