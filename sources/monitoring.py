"""Where the `metrics` check reads a revision's Cloud Run metrics: Cloud Monitoring ``timeSeries.list``.

``MetricSource.series`` answers one question per call: one metric of one revision over one explicit time
range, aligned into a single bucket as long as the range (so every series carries one value) and optionally
reduced across series. Values come back as plain numbers; the check never sees a client object.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.backoff import Retryable, with_backoff
from core.errors import AccessDenied, MonitoringUnavailable
from core.signals import MetricSeries, RevisionScope, SeriesBatch
from sources.gcp import filter_string, revision_clauses

LIST_TIMEOUT_S = 30.0
MIN_ALIGNMENT_S = 60  # the API refuses shorter alignment periods
BACKOFF_FIRST_S = 1.0
MAX_ATTEMPTS = 4
VIEWER_ROLE = "roles/monitoring.viewer"


def build_filter(metric_type: str, scope: RevisionScope) -> str:
    """The Monitoring filter for one metric of one revision."""
    return " AND ".join([f"metric.type={filter_string(metric_type)}", *revision_clauses(scope)])


def alignment_seconds(start: datetime, end: datetime) -> int:
    """One alignment period covering the whole range (at least the API's minimum)."""
    return max(MIN_ALIGNMENT_S, math.ceil((end - start).total_seconds()))


def _value(point: Any) -> float | None:
    kind = point.value._pb.WhichOneof("value")
    if kind == "int64_value":
        return float(point.value.int64_value)
    if kind == "double_value":
        return float(point.value.double_value)
    if kind == "distribution_value":  # only when asked without a percentile: the mean is the honest number
        return float(point.value.distribution_value.mean)
    if kind == "bool_value":
        return 1.0 if point.value.bool_value else 0.0
    return None


def _from_client(ts: Any) -> MetricSeries:
    labels = {**dict(ts.resource.labels), **dict(ts.metric.labels)}
    values = tuple(v for v in (_value(p) for p in ts.points) if v is not None)
    return MetricSeries(labels, values)


class CloudMonitoringSource:
    """MetricSource over the official google-cloud-monitoring client (a local gRPC fake when the endpoint env is set)."""

    def __init__(self, backoff_s: float = BACKOFF_FIRST_S, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self._client: Any = None
        self._client_lock = threading.Lock()  # questions asked at once share the first one's client

    def _list(self, name: str, metric_filter: str, start: datetime, end: datetime, aligner: str, reducer: str,
              group_by: Sequence[str]) -> list[MetricSeries]:
        """One timeSeries.list call, every page read here so a later page's error is wrapped too."""
        from google.api_core import exceptions as gexc
        from google.cloud import monitoring_v3

        with self._client_lock:
            if self._client is None:
                from sources.gcp import monitoring_client

                self._client = monitoring_client()
        aggregation = monitoring_v3.Aggregation(
            alignment_period={"seconds": alignment_seconds(start, end)},
            per_series_aligner=getattr(monitoring_v3.Aggregation.Aligner, aligner),
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, reducer),
            group_by_fields=list(group_by))
        request = monitoring_v3.ListTimeSeriesRequest(
            name=name, filter=metric_filter, interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=aggregation, view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL)
        try:
            # retry=None: the client's own retry (ServiceUnavailable for up to 90 s) would ignore our deadline.
            pager = self._client.list_time_series(request=request, retry=None, timeout=LIST_TIMEOUT_S)
            return [_from_client(ts) for ts in pager]
        except gexc.Forbidden as exc:  # gRPC answers PermissionDenied, a subclass
            raise AccessDenied(f"permission denied reading metrics of {name}; grant the function's service account "
                               f"{VIEWER_ROLE} ({exc.message})") from exc
        except gexc.TooManyRequests as exc:
            raise Retryable(f"Cloud Monitoring quota exceeded (429: {exc.message})") from exc
        except (gexc.ServerError, gexc.RetryError, gexc.DeadlineExceeded) as exc:
            raise Retryable(f"Cloud Monitoring failed: {exc}") from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Retryable(f"Cloud Monitoring unreachable: {exc}") from exc

    async def series(self, metric_type: str, scope: RevisionScope, start: datetime, end: datetime, *, aligner: str,
                     reducer: str = "REDUCE_NONE", group_by: Sequence[str] = (), deadline: float = 0.0) -> SeriesBatch:
        """One timeSeries.list call; 429/5xx retried with doubling pauses while the deadline allows."""
        project = scope.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
        name = f"projects/{project}"
        metric_filter = build_filter(metric_type, scope)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        found, calls = await with_backoff(lambda: self._list(name, metric_filter, start, end, aligner, reducer, group_by),
                                          attempts=self.max_attempts, first_pause_s=self.backoff_s, deadline=deadline,
                                          unavailable=MonitoringUnavailable)
        return SeriesBatch(found, calls=calls, filter=metric_filter)
