"""A hand-written fake of Cloud Monitoring's `timeSeries.list` for the official client, over gRPC.

google-cloud-monitoring ships gRPC transports only (no ``transport="rest"``), so unlike the Run and
Logging fakes this one is a real gRPC server on loopback (``google.monitoring.v3.MetricService/ListTimeSeries``),
not a `LoopbackServer`. Requests are recorded as the REST/JSON shape of ``ListTimeSeriesRequest``
(``name``, ``filter``, ``interval.startTime|endTime``, ``aggregation.alignmentPeriod|perSeriesAligner|
crossSeriesReducer|groupByFields``) so tests assert what the check sent. The fake does not aggregate:
tests script, per (metric type, revision), the already-aligned TimeSeries the real API would answer.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from tests.servers.loopback import ERROR_STATUS, QueryFaults, rfc3339

Json = dict[str, Any]
SERVICE = "google.monitoring.v3.MetricService"
_LABEL = re.compile(r'(?P<key>metric\.type|resource\.labels\.revision_name)\s*=\s*"(?P<value>[^"]*)"')


def time_series(metric_type: str, revision: str, value: float, *, service: str = "orders", region: str = "us-central1",
                project: str = "test", metric_labels: dict[str, str] | None = None, value_type: str = "INT64",
                metric_kind: str = "DELTA", start: datetime | None = None, end: datetime | None = None) -> Json:
    """One aligned TimeSeries in the API's JSON shape with a single point."""
    end = end or datetime.now(UTC)
    key = {"INT64": "int64Value", "DOUBLE": "doubleValue"}[value_type]
    return {
        "metric": {"type": metric_type, "labels": dict(metric_labels or {})},
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": project, "service_name": service, "revision_name": revision, "location": region,
            "configuration_name": service}},
        "metricKind": metric_kind,
        "valueType": value_type,
        "points": [{"interval": {"startTime": rfc3339(start or end), "endTime": rfc3339(end)},
                    "value": {key: str(int(value)) if value_type == "INT64" else value}}],
    }


class FakeMonitoring(QueryFaults):
    """Serves ``ListTimeSeries`` from series that tests script per (metric type, revision); an injected failure
    is the gRPC code of its HTTP status, as Google's front ends map them."""

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[tuple[str, str], list[Json]] = {}
        self.requests: list[Json] = []  # every ListTimeSeriesRequest as JSON, in order
        self._server: Any = None
        self._port = 0

    def set_series(self, metric_type: str, revision: str, *series: Json) -> None:
        """What a query for the metric of the revision answers (replaces earlier series)."""
        with self._lock:
            self.series[(metric_type, revision)] = list(series)

    def requests_for(self, metric_type: str) -> list[Json]:
        """Recorded requests whose filter names the metric type."""
        return [r for r in self.requests if f'metric.type="{metric_type}"' in r.get("filter", "")]

    def _list(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud import monitoring_v3
        from google.protobuf import json_format

        body = json_format.MessageToDict(monitoring_v3.ListTimeSeriesRequest.pb(request))
        with self._lock:
            self.requests.append(body)
            failure = self._take_failure()
            lagging = self._take_lag()
            wanted = {m.group("key"): m.group("value") for m in _LABEL.finditer(body.get("filter", ""))}
            found = [] if lagging else list(self.series.get(
                (wanted.get("metric.type", ""), wanted.get("resource.labels.revision_name", "")), []))
        if failure is not None:
            context.abort(getattr(grpc.StatusCode, ERROR_STATUS.get(failure, "UNKNOWN")), f"injected failure {failure}")
        answer = monitoring_v3.ListTimeSeriesResponse()
        for data in found:
            pb = json_format.ParseDict(data, monitoring_v3.TimeSeries.pb(monitoring_v3.TimeSeries()))
            answer.time_series.append(monitoring_v3.TimeSeries(pb))
        return answer

    @property
    def endpoint(self) -> str:
        """What to put in POSTDEPLOY_MONITORING_API_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("fake Monitoring is not running")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> str:
        """Start serving and return the endpoint."""
        if self._server is None:
            import grpc
            from google.cloud import monitoring_v3

            handler = grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
                response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize)
            server = grpc.server(ThreadPoolExecutor(max_workers=8))
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"ListTimeSeries": handler})])
            self._port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self._server = server
        return self.endpoint

    def stop(self) -> None:
        """Stop serving."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
