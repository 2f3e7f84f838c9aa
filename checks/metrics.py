"""metrics: the new revision's 5xx ratio, p95 latency, memory and startup latency against the previous revision.

Windows: the new revision from its creation to now (growing while the check waits for data); the previous
revision over a window at least ``baseline_s`` long ending at that creation. Each metric is asked once per
revision with one alignment period covering the window, so every answer is a single number.

Cloud Monitoring lags up to ~3 minutes: the new revision's request count is polled until it reaches
``min_requests`` or ``wait_for_data_s`` (bounded by the check's budget) runs out. Without data, or with fewer
requests than ``min_requests``, the check is SKIPPED with the count: too little traffic is not a verdict.

Judging one metric: FAIL when it breaks its absolute limit, or rose against the previous revision by more
than its relative limit. WARN for a smaller regression: a rise beyond ``warn_at`` × the relative limit, or a
value beyond ``near_limit`` × the absolute limit that is also worse than before (or has no before). Score: the mean over the
judged metrics of PASS 1, WARN 0.5, FAIL 0.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import Field

from core.errors import PostdeployError, api_fix
from core.model import CheckContext, CheckResult, Evidence, Status, Target, cannot_measure, not_configured
from core.schema import CheckSettings
from core.signals import MetricSource, RevisionScope, SeriesBatch

NAME = "metrics"
CATEGORY = "Stability"
PHASE = 1  # after the observation window: its traffic counts toward the figures
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY = "run.googleapis.com/container/memory/utilizations"
STARTUP = "run.googleapis.com/container/startup_latencies"
CODE_CLASS = "response_code_class"
# Time kept back from the check's budget for the comparison queries after the wait for data.
QUERY_RESERVE_S = 15.0


class Config(CheckSettings):
    """Thresholds (absolute and relative to the previous revision), traffic floor, data wait and windows."""

    timeout_s: float = Field(180.0, gt=0, le=540)
    min_requests: int = Field(20, ge=1)
    max_5xx_ratio: float = Field(0.01, ge=0, le=1)
    max_p95_latency_ms: float | None = Field(None, gt=0)
    max_p95_latency_increase: float | None = Field(0.2, ge=0)  # 0.2 = at most +20 % vs the previous revision
    max_memory_utilization: float | None = Field(0.9, gt=0, le=1)
    max_memory_increase: float | None = Field(None, ge=0)
    max_startup_latency_ms: float | None = Field(None, gt=0)
    max_startup_latency_increase: float | None = Field(0.5, ge=0)
    warn_at: float = Field(0.5, gt=0, le=1)  # share of a relative limit from which a rise WARNs
    near_limit: float = Field(0.8, gt=0, le=1)  # share of an absolute limit from which a worse value WARNs
    wait_for_data_s: float = Field(120.0, ge=0, le=540)
    poll_s: float = Field(15.0, gt=0, le=120)
    max_window_s: float = Field(3600.0, gt=0, le=7 * 86400)
    baseline_s: float = Field(600.0, gt=0, le=7 * 86400)


@dataclass
class Comparison:
    """One metric of the new revision judged against its limits and the previous revision."""

    what: str
    measured: float | None
    previous: float | None
    limit: float | None
    increase: float | None
    unit: str = ""
    status: Status | None = None  # None: not judged (no data, or nothing to compare with)
    reason: str = ""

    def show(self, value: float | None) -> str | None:
        """A value in the metric's unit."""
        if value is None:
            return None
        if self.unit == "%":
            return f"{value * 100:.2f}".rstrip("0").rstrip(".") + " %"
        return f"{value:.1f} {self.unit}".strip()

    def threshold(self) -> str | None:
        """The limits as a reader sees them."""
        parts = []
        if self.limit is not None:
            parts.append(f"≤ {self.show(self.limit)}")
        if self.increase is not None:
            parts.append(f"≤ +{self.increase * 100:g} % vs previous")
        return " and ".join(parts) or None


def judge(c: Comparison, warn_at: float, near_limit: float) -> Comparison:
    """Set ``status`` and ``reason`` of one comparison (see the module docstring)."""
    if c.measured is None:
        return c
    change = c.measured / c.previous - 1 if c.previous else None
    relative = c.increase is not None and change is not None
    if c.limit is None and not relative:
        return c
    was = f" (previous {c.show(c.previous)})" if c.previous is not None else ""
    if c.limit is not None and c.measured > c.limit:
        c.status, c.reason = Status.FAIL, f"expected {c.what} ≤ {c.show(c.limit)}, found {c.show(c.measured)}{was}"
    elif relative and change is not None and c.increase is not None and change > c.increase:
        c.status, c.reason = Status.FAIL, (f"expected {c.what} at most +{c.increase * 100:g} % vs the previous revision, "
                                           f"found +{change * 100:.0f} % ({c.show(c.measured)}{was})")
    elif relative and change is not None and c.increase is not None and change > c.increase * warn_at:
        c.status, c.reason = Status.WARN, (f"{c.what} rose +{change * 100:.0f} % vs the previous revision "
                                           f"({c.show(c.measured)}{was}), limit +{c.increase * 100:g} %")
    elif (c.limit is not None and c.measured > c.limit * near_limit
          and (c.previous is None or c.measured > c.previous)):
        c.status, c.reason = Status.WARN, f"{c.what} {c.show(c.measured)} is near its limit {c.show(c.limit)}{was}"
    else:
        c.status = Status.PASS
    return c


@dataclass
class _Windows:
    since: datetime
    until: datetime

    def previous(self, baseline_s: float) -> tuple[datetime, datetime]:
        length = max((self.until - self.since).total_seconds(), baseline_s)
        return self.since - timedelta(seconds=length), self.since


def _since(target: Target, config: Config, now: datetime) -> datetime:
    created = target.revision_info.create_time if target.revision_info else None
    return min(created, now) if created else now - timedelta(seconds=config.baseline_s)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _counts(batch: SeriesBatch) -> tuple[float, float]:
    """(all requests, 5xx requests) from request_count grouped by response_code_class."""
    five = sum(v for s in batch.series if s.labels.get(CODE_CLASS) == "5xx" for v in s.values)
    return batch.total(), five


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Wait for the new revision's request count, then compare its metrics with the previous revision's."""
    source: MetricSource | None = ctx.metric_source
    if source is None:
        return not_configured("no metric source: Cloud Monitoring needs a Cloud Run revision and its project")
    if not target.revision:
        return not_configured("no revision to read metrics for (URL-only validation)")
    started = time.monotonic()
    budget_end = ctx.budget_end(config.timeout_s)
    wait_end = min(started + config.wait_for_data_s, budget_end - QUERY_RESERVE_S)
    since = _since(target, config, datetime.now(UTC))
    new = target.scope()
    old = target.scope(target.previous_revision)
    calls = 0

    def window() -> _Windows:
        return _Windows(since, max(since, min(datetime.now(UTC), since + timedelta(seconds=config.max_window_s))))

    def counts(scope: RevisionScope, start: datetime, end: datetime) -> asyncio.Future[SeriesBatch]:
        return asyncio.ensure_future(source.series(REQUEST_COUNT, scope, start, end, aligner="ALIGN_DELTA",
                                                   reducer="REDUCE_SUM", group_by=[f"metric.label.{CODE_CLASS}"],
                                                   deadline=budget_end))

    def p95(metric: str, scope: RevisionScope, start: datetime, end: datetime) -> asyncio.Future[SeriesBatch]:
        # ALIGN_DELTA keeps each series a distribution; REDUCE_PERCENTILE_95 takes p95 of them merged.
        return asyncio.ensure_future(source.series(metric, scope, start, end, aligner="ALIGN_DELTA",
                                                   reducer="REDUCE_PERCENTILE_95", deadline=budget_end))

    try:
        while True:
            win = window()
            batch = await counts(new, win.since, win.until)
            calls += batch.calls
            total, five = _counts(batch)
            left = wait_end - time.monotonic()
            if total >= config.min_requests or left <= 0:
                break
            await asyncio.sleep(min(config.poll_s, left))
        if total < config.min_requests:
            return _too_little(target, config, win, total, time.monotonic() - started, calls)
        prev_since, prev_until = win.previous(config.baseline_s)
        new_q = [p95(m, new, win.since, win.until) for m in (REQUEST_LATENCIES, MEMORY, STARTUP)]
        old_q = ([counts(old, prev_since, prev_until)]
                 + [p95(m, old, prev_since, prev_until) for m in (REQUEST_LATENCIES, MEMORY, STARTUP)]
                 if target.previous_revision else [])
        answers = await asyncio.gather(*new_q, *old_q)
    except PostdeployError as exc:  # AccessDenied names the role; Transient after the source's retries
        return cannot_measure("Cloud Monitoring", str(exc), api_fix(exc, "roles/monitoring.viewer"))
    calls += sum(a.calls for a in answers)
    latency, memory, startup = (a.highest() for a in answers[:3])
    prev_total = prev_five = 0.0
    prev_latency = prev_memory = prev_startup = None
    if old_q:
        prev_total, prev_five = _counts(answers[3])
        prev_latency, prev_memory, prev_startup = (a.highest() for a in answers[4:])
    enough_before = prev_total >= config.min_requests
    comparisons = [
        Comparison("5xx ratio", five / total, prev_five / prev_total if enough_before else None,
                   config.max_5xx_ratio, None, "%"),
        Comparison("p95 latency", latency, prev_latency if enough_before else None,
                   config.max_p95_latency_ms, config.max_p95_latency_increase, "ms"),
        Comparison("p95 memory utilisation", memory, prev_memory, config.max_memory_utilization,
                   config.max_memory_increase, "%"),
        Comparison("p95 container startup latency", startup, prev_startup, config.max_startup_latency_ms,
                   config.max_startup_latency_increase, "ms"),
    ]
    for c in comparisons:
        judge(c, config.warn_at, config.near_limit)
    evidence = [
        Evidence("window", f"{_when(win.since)} → {_when(win.until)} ({target.revision})",
                 previous=f"{_when(prev_since)} → {_when(prev_until)} ({target.previous_revision})" if old_q else None),
        Evidence("requests", int(total), f"≥ {config.min_requests} to compare",
                 f"{int(prev_total)}" if old_q else None, ok=True),
        Evidence("timeSeries.list calls", calls, ok=None),
    ]
    for c in comparisons:
        measured = c.show(c.measured) if c.measured is not None else "no data in the window"
        evidence.append(Evidence(c.what, measured, c.threshold(), c.show(c.previous),
                                 ok=None if c.status is None else c.status == Status.PASS))
    return _verdict(target, comparisons, evidence, bool(old_q), enough_before)


def _too_little(target: Target, config: Config, win: _Windows, total: float, waited: float, calls: int) -> CheckResult:
    evidence = [Evidence("window", f"{_when(win.since)} → {_when(win.until)} ({target.revision})"),
                Evidence("requests", int(total), f"≥ {config.min_requests} to compare", ok=None),
                Evidence("timeSeries.list calls", calls, ok=None)]
    if total == 0:
        why = (f"no request_count data for {target.revision} after waiting {waited:.0f} s "
               f"(wait_for_data_s {config.wait_for_data_s:g}): Cloud Monitoring lags up to ~3 min, or nothing called it")
    else:
        why = (f"only {int(total)} requests to {target.revision} since {_when(win.since)}, expected at least "
               f"{config.min_requests} to compare metrics (waited {waited:.0f} s)")
    return CheckResult(Status.SKIPPED, why, evidence, reasons=[why],
                       next_steps=["validate again once the revision has served traffic, or lower metrics.min_requests"])


def _verdict(target: Target, comparisons: list[Comparison], evidence: list[Evidence], has_previous: bool,
             enough_before: bool) -> CheckResult:
    judged = [c for c in comparisons if c.status is not None]
    notes = []
    if not has_previous:
        notes.append("no previous revision: only absolute limits were applied")
    elif not enough_before:
        notes.append(f"previous revision {target.previous_revision} served too few requests: "
                     "request metrics were judged on absolute limits only")
    if not judged:
        why = "no metric could be judged: no data and no limit that applies"
        return CheckResult(Status.SKIPPED, why, evidence, reasons=[why, *notes])
    points = {Status.PASS: 1.0, Status.WARN: 0.5, Status.FAIL: 0.0}
    score = sum(points[c.status] for c in judged if c.status) / len(judged)
    fails = [c.reason for c in judged if c.status == Status.FAIL]
    warns = [c.reason for c in judged if c.status == Status.WARN]
    reasons = fails + warns + notes
    if fails:
        more = f" (+{len(fails) + len(warns) - 1} more)" if len(fails) + len(warns) > 1 else ""
        return CheckResult(Status.FAIL, fails[0] + more, evidence, score, reasons=reasons,
                           next_steps=[f"compare {target.revision} with {target.previous_revision or 'its predecessor'} "
                                       "in Cloud Monitoring (Cloud Run → Metrics)"])
    if warns:
        return CheckResult(Status.WARN, warns[0], evidence, score, reasons=reasons)
    names = ", ".join(c.what for c in judged)
    return CheckResult(Status.PASS, f"{names} within limits for {target.revision}", evidence, score, reasons=notes)
