"""CloudMonitoringSource: filters, one alignment bucket, values as plain numbers, retries and errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import AccessDenied, Transient
from core.signals import RevisionScope, SeriesBatch
from sources.monitoring import CloudMonitoringSource, alignment_seconds, build_filter
from tests.servers.fake_monitoring import FakeMonitoring, time_series

COUNT = "run.googleapis.com/request_count"
SCOPE = RevisionScope("orders", "orders-00042-new", "acme-prod", "us-central1")
END = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


@pytest.fixture
def fake(fake_monitoring: FakeMonitoring) -> FakeMonitoring:
    return fake_monitoring


def ask(source: CloudMonitoringSource, start: datetime = END - timedelta(minutes=10)) -> SeriesBatch:
    return asyncio.run(source.series(COUNT, SCOPE, start, END, aligner="ALIGN_DELTA", reducer="REDUCE_SUM",
                                     group_by=["metric.label.response_code_class"]))


@pytest.mark.parametrize(("scope", "expected"), [
    pytest.param(SCOPE, 'metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" AND '
                 'resource.labels.service_name="orders" AND resource.labels.revision_name="orders-00042-new" AND '
                 'resource.labels.location="us-central1"', id="with-region"),
    pytest.param(RevisionScope("a\"b", "r"), 'metric.type="run.googleapis.com/request_count" AND '
                 'resource.type="cloud_run_revision" AND resource.labels.service_name="a\\"b" AND '
                 'resource.labels.revision_name="r"', id="quoted-no-region"),
])
def test_filter(scope: RevisionScope, expected: str) -> None:
    assert build_filter(COUNT, scope) == expected


@pytest.mark.parametrize(("seconds", "period"), [(5, 60), (60, 60), (600.2, 601), (3600, 3600)])
def test_one_alignment_bucket_of_at_least_a_minute(seconds: float, period: int) -> None:
    assert alignment_seconds(END - timedelta(seconds=seconds), END) == period


def test_values_and_labels_come_back_as_plain_data(fake: FakeMonitoring) -> None:
    fake.set_series(COUNT, SCOPE.revision,
                    time_series(COUNT, SCOPE.revision, 95, metric_labels={"response_code_class": "2xx"}),
                    time_series(COUNT, SCOPE.revision, 5, metric_labels={"response_code_class": "5xx"}))
    batch = ask(CloudMonitoringSource())
    assert [(s.labels["response_code_class"], s.values) for s in batch.series] == [("2xx", (95.0,)), ("5xx", (5.0,))]
    assert batch.series[0].labels["revision_name"] == SCOPE.revision
    assert (batch.total(), batch.highest(), batch.calls) == (100.0, 95.0, 1)
    sent = fake.requests[0]
    assert sent["interval"] == {"startTime": "2026-11-25T10:20:00Z", "endTime": "2026-11-25T10:30:00Z"}
    assert sent["aggregation"]["alignmentPeriod"] == "600s"


def test_empty_answer_has_no_highest(fake: FakeMonitoring) -> None:
    batch = ask(CloudMonitoringSource())
    assert (batch.series, batch.total(), batch.highest()) == ([], 0, None)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_failures_are_retried(fake: FakeMonitoring, status: int) -> None:
    fake.fail_next(2, status)
    batch = ask(CloudMonitoringSource(backoff_s=0.01))
    assert batch.calls == 3 and len(fake.requests) == 3


def test_retries_are_bounded(fake: FakeMonitoring) -> None:
    fake.fail_next(5, 503)
    with pytest.raises(Transient, match="after 2 attempts"):
        ask(CloudMonitoringSource(backoff_s=0.01, max_attempts=2))
    assert len(fake.requests) == 2


def test_retries_stop_at_the_deadline(fake: FakeMonitoring) -> None:
    import time

    fake.fail_next(5, 429)
    source = CloudMonitoringSource(backoff_s=5)
    with pytest.raises(Transient, match="quota exceeded"):
        asyncio.run(source.series(COUNT, SCOPE, END - timedelta(minutes=1), END, aligner="ALIGN_DELTA",
                                  deadline=time.monotonic() + 1))
    assert len(fake.requests) == 1


def test_permission_denied_names_the_role(fake: FakeMonitoring) -> None:
    fake.fail_next(1, 403)
    with pytest.raises(AccessDenied, match=r"roles/monitoring\.viewer"):
        ask(CloudMonitoringSource())
    assert len(fake.requests) == 1  # permanent: never retried
