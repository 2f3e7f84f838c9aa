"""metrics: new vs previous revision through the official Monitoring client against FakeMonitoring (gRPC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checks import metrics
from core.model import CheckResult, Status, Target
from core.signals import MetricSource
from sources.monitoring import CloudMonitoringSource, alignment_seconds
from tests.checks.helpers import NEW, OLD, revision_target, run_check
from tests.servers.fake_monitoring import FakeMonitoring, time_series

FAST = {"wait_for_data_s": 0, "poll_s": 0.05}
BASE: dict[str, Any] = {"total": 1000, "five": 1, "latency": 200.0, "memory": 0.5, "startup": 1500.0}


def check(source: MetricSource | None, tgt: Target, **settings: Any) -> CheckResult:
    return run_check(metrics, tgt, metrics.Config(**{**FAST, **settings}), metric_source=source)


def script(fake: FakeMonitoring, revision: str, total: int, five: int, latency: float | None, memory: float | None,
           startup: float | None) -> None:
    fake.set_series(metrics.REQUEST_COUNT, revision,
                    time_series(metrics.REQUEST_COUNT, revision, total - five, metric_labels={"response_code_class": "2xx"}),
                    *([time_series(metrics.REQUEST_COUNT, revision, five, metric_labels={"response_code_class": "5xx"})]
                      if five else []))
    for metric, value in ((metrics.REQUEST_LATENCIES, latency), (metrics.MEMORY, memory), (metrics.STARTUP, startup)):
        fake.set_series(metric, revision, *([time_series(metric, revision, value, value_type="DOUBLE", metric_kind="GAUGE")]
                                            if value is not None else []))


@pytest.fixture
def fake(fake_monitoring: FakeMonitoring) -> FakeMonitoring:
    return fake_monitoring


@pytest.fixture
def source() -> CloudMonitoringSource:
    return CloudMonitoringSource(backoff_s=0.01)


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_sends_revision_filters_explicit_windows_and_one_bucket(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    created = datetime.now(UTC) - timedelta(minutes=5)
    script(fake, NEW, **BASE)
    script(fake, OLD, **BASE)
    result = check(source, revision_target(created))
    assert result.status == Status.PASS, result.summary
    new_counts, old_counts = fake.requests_for(metrics.REQUEST_COUNT)
    assert new_counts["name"] == "projects/acme-prod"
    assert new_counts["filter"] == ('metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" '
                                    'AND resource.labels.service_name="orders" AND resource.labels.revision_name="'
                                    f'{NEW}" AND resource.labels.location="us-central1"')
    assert f'resource.labels.revision_name="{OLD}"' in old_counts["filter"]
    start, end = _stamp(new_counts["interval"]["startTime"]), _stamp(new_counts["interval"]["endTime"])
    assert start == created and timedelta(minutes=5) <= end - created < timedelta(minutes=6)
    assert new_counts["aggregation"] == {"alignmentPeriod": f"{alignment_seconds(start, end)}s",
                                         "perSeriesAligner": "ALIGN_DELTA", "crossSeriesReducer": "REDUCE_SUM",
                                         "groupByFields": ["metric.label.response_code_class"]}
    # The previous revision: a window at least baseline_s (600 s) long, ending at the new revision's creation.
    assert _stamp(old_counts["interval"]["endTime"]) == created
    assert _stamp(old_counts["interval"]["startTime"]) == created - timedelta(seconds=600)
    latency = fake.requests_for(metrics.REQUEST_LATENCIES)[0]["aggregation"]
    assert (latency["perSeriesAligner"], latency["crossSeriesReducer"]) == ("ALIGN_DELTA", "REDUCE_PERCENTILE_95")
    assert len(fake.requests) == 8 and result.score == 1.0
    shown = {e.what: (e.measured, e.threshold, e.previous) for e in result.evidence}
    assert shown["p95 latency"] == ("200.0 ms", "≤ +20 % vs previous", "200.0 ms")
    assert shown["5xx ratio"] == ("0.1 %", "≤ 1 %", "0.1 %")


@pytest.mark.parametrize(("new", "status", "reason"), [
    pytest.param({"five": 30}, Status.FAIL, "expected 5xx ratio ≤ 1 %, found 3 % (previous 0.1 %)", id="5xx-ratio-up-fail"),
    pytest.param({"latency": 300.0}, Status.FAIL, "expected p95 latency at most +20 % vs the previous revision, found +50 %",
                 id="p95-plus-50pc-fail"),
    pytest.param({"latency": 230.0}, Status.WARN, "p95 latency rose +15 % vs the previous revision", id="p95-plus-15pc-warn"),
    pytest.param({"memory": 0.95}, Status.FAIL, "expected p95 memory utilisation ≤ 90 %, found 95 % (previous 50 %)",
                 id="memory-over-absolute-fail"),
    pytest.param({"startup": 3000.0}, Status.FAIL, "expected p95 container startup latency at most +50 %",
                 id="cold-start-regression-fail"),
    pytest.param({"latency": 190.0, "memory": 0.4}, Status.PASS, "within limits", id="better-pass"),
])
def test_new_vs_previous(fake: FakeMonitoring, source: CloudMonitoringSource, new: dict[str, Any], status: Status,
                         reason: str) -> None:
    script(fake, NEW, **{**BASE, **new})
    script(fake, OLD, **BASE)
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=10)))
    assert result.status == status, result.summary
    assert reason in result.summary
    assert result.score == {Status.PASS: 1.0, Status.WARN: 0.875, Status.FAIL: 0.75}[status]


def test_no_startup_in_window_is_not_judged(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    script(fake, NEW, **{**BASE, "startup": None})
    script(fake, OLD, **BASE)
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=10)))
    assert result.status == Status.PASS and result.score == 1.0
    startup = next(e for e in result.evidence if e.what == "p95 container startup latency")
    assert (startup.measured, startup.ok) == ("no data in the window", None)


def test_below_min_requests_is_skipped_with_the_count(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    script(fake, NEW, **{**BASE, "total": 7, "five": 7})
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=2)))
    assert result.status == Status.SKIPPED
    assert "only 7 requests" in result.summary and "at least 20" in result.summary
    assert len(fake.requests) == 1  # no comparison queries on too little traffic


def test_no_data_waits_then_skips(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=1)), wait_for_data_s=0.4, poll_s=0.1)
    assert result.status == Status.SKIPPED
    assert "no request_count data" in result.summary and "wait_for_data_s 0.4" in result.summary
    polls = fake.requests_for(metrics.REQUEST_COUNT)
    assert len(polls) >= 3
    ends = [_stamp(p["interval"]["endTime"]) for p in polls]
    assert ends == sorted(ends) and ends[0] < ends[-1]  # the window grows while waiting


def test_lagging_data_arrives_while_waiting(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    script(fake, NEW, **BASE)
    script(fake, OLD, **BASE)
    fake.lag(2)
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=3)), wait_for_data_s=5, poll_s=0.05)
    assert result.status == Status.PASS
    assert len(fake.requests_for(metrics.REQUEST_COUNT)) == 4  # 3 polls for the new revision, 1 for the previous


def test_permission_denied_is_an_error_naming_the_role(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    fake.fail_next(1, 403)
    result = check(source, revision_target(datetime.now(UTC)))
    assert result.status == Status.ERROR
    assert "roles/monitoring.viewer" in result.summary and "projects/acme-prod" in result.summary


def test_quota_then_success_is_retried(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    script(fake, NEW, **BASE)
    script(fake, OLD, **BASE)
    fake.fail_next(1, 429)
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=5)))
    assert result.status == Status.PASS
    assert next(e.measured for e in result.evidence if e.what == "timeSeries.list calls") == 9


def test_unavailable_after_retries_is_an_error(fake: FakeMonitoring) -> None:
    fake.fail_next(10, 503)
    result = check(CloudMonitoringSource(backoff_s=0.01, max_attempts=3), revision_target(datetime.now(UTC)))
    assert result.status == Status.ERROR
    assert "Cloud Monitoring failed" in result.summary and "after 3 attempts" in result.summary


def test_no_previous_revision_uses_absolute_limits_only(fake: FakeMonitoring, source: CloudMonitoringSource) -> None:
    script(fake, NEW, **BASE)
    result = check(source, revision_target(datetime.now(UTC) - timedelta(minutes=5), previous=""))
    assert result.status == Status.PASS
    assert len(fake.requests) == 4
    assert "no previous revision: only absolute limits were applied" in result.reasons
    assert next(e.ok for e in result.evidence if e.what == "p95 latency") is None  # nothing to compare it with


def test_no_metric_source_is_not_configured() -> None:
    result = check(None, revision_target(datetime.now(UTC)))
    assert result.status == Status.SKIPPED and not result.assessed


@pytest.mark.parametrize(("measured", "previous", "limit", "increase", "status"), [
    pytest.param(0.02, 0.0, 0.01, None, Status.FAIL, id="absolute-broken"),
    pytest.param(0.009, 0.001, 0.01, None, Status.WARN, id="near-absolute-and-worse"),
    pytest.param(0.009, 0.0095, 0.01, None, Status.PASS, id="near-absolute-but-better"),
    pytest.param(0.5, None, 0.9, None, Status.PASS, id="far-from-absolute-no-previous"),
    pytest.param(130.0, 100.0, None, 0.2, Status.FAIL, id="relative-broken"),
    pytest.param(115.0, 100.0, None, 0.2, Status.WARN, id="relative-over-half"),
    pytest.param(105.0, 100.0, None, 0.2, Status.PASS, id="relative-small"),
    pytest.param(105.0, None, None, 0.2, None, id="nothing-to-compare"),
    pytest.param(None, 100.0, 1.0, 0.2, None, id="no-data"),
])
def test_judge(measured: float | None, previous: float | None, limit: float | None, increase: float | None,
               status: Status | None) -> None:
    c = metrics.judge(metrics.Comparison("x", measured, previous, limit, increase), warn_at=0.5, near_limit=0.8)
    assert c.status == status


def test_no_google_credentials_is_not_measured_never_a_failed_deploy(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # No endpoint override, no key file, no gcloud ADC, and the metadata server unreachable: google.auth finds nothing.
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    result = check(CloudMonitoringSource(backoff_s=0.01), revision_target(datetime.now(UTC) - timedelta(minutes=5)))
    assert result.status is Status.ERROR, result.summary
    assert result.summary.startswith("no Google credentials to read Cloud Monitoring")
    assert [n.what for n in result.not_measured] == ["Cloud Monitoring"]
    assert "gcloud auth application-default login" in result.not_measured[0].fix
