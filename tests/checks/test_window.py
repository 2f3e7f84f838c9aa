"""window: availability and latency percentiles over repeated probes of the real sample service."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from checks import window
from core.config import Config
from core.errors import ConfigError
from core.model import CheckContext, CheckResult, Status, Target
from core.sample_service import SampleService


def observe(url: str, progress: list[tuple[str, float]] | None = None, **settings: Any) -> CheckResult:
    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            ctx = CheckContext(http=http, progress=(lambda what, done: progress.append((what, done))) if progress is not None else None)
            return await window.run(Target(service="sample", url=url), window.Config(**settings), ctx)

    return asyncio.run(go())


def test_a_healthy_window_reports_availability_and_percentiles(sample: SampleService) -> None:
    progress: list[tuple[str, float]] = []
    result = observe(sample.url, progress, window_s=1.0, interval_s=0.2, paths=["/ok"])
    assert result.status is Status.PASS
    assert result.summary.startswith("availability 100.0% over 1 s")
    figures = next(e for e in result.evidence if e.what == "latency p50 / p95 / p99")
    assert figures.measured.count("ms") == 3
    assert progress and progress[-1][1] == 1.0 and [d for _, d in progress] == sorted(d for _, d in progress)
    assert sum(1 for _, path in sample.requests if path == "/ok") >= 5


def test_intermittent_500s_lower_availability(sample: SampleService) -> None:
    # every 3rd request fails: about 67 % available, below the 95 % warn floor
    result = observe(sample.url, window_s=1.0, interval_s=0.1, paths=["/flaky?every=3"])
    assert result.status is Status.FAIL
    assert "probes failed during the window" in result.summary and "status 500" in result.summary
    assert result.score is not None and 0.5 < result.score < 0.8


def test_a_slow_route_breaks_the_latency_budget(sample: SampleService) -> None:
    result = observe(sample.url, window_s=0.6, interval_s=0.2, paths=["/slow?ms=150"], max_p95_ms=100)
    assert result.status is Status.WARN
    assert "expected p95 latency ≤ 100 ms during the window" in result.summary


@pytest.mark.parametrize(("values", "p", "expected"), [([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 95, 4), ([5], 99, 5),
                                                       (list(range(1, 101)), 95, 95)])
def test_nearest_rank_percentile(values: list[float], p: int, expected: float) -> None:
    assert window.percentile(values, p) == expected


def test_no_window_is_not_configured(sample: SampleService) -> None:
    result = observe(sample.url, window_s=0)
    assert result.status is Status.SKIPPED and result.assessed is False


def test_a_window_that_cannot_fit_the_deadline_is_rejected() -> None:
    text = "version: 1\ndefaults:\n  deadline_s: 100\n  checks:\n    window: {window_s: 90, timeout_s: 120}\n    logs: {settle_s: 10}\n"
    with pytest.raises(ConfigError) as caught:
        Config.parse(text, "t.yaml")
    assert any("window_s + checks.logs.settle_s + 15 s of log queries ≤ deadline_s (100 s), found 90 + 10 + 15 = 115 s" in p
               for p in caught.value.problems)
