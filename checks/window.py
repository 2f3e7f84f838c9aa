"""window: an observation window after the deploy — availability and latency percentiles over repeated probes."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx
from pydantic import Field, model_validator

from core.model import CheckContext, CheckResult, Evidence, Status, Target, not_configured
from core.schema import CheckSettings, UrlPath

NAME = "window"
CATEGORY = "Stability"
PERCENTILES = (50, 95, 99)


class Config(CheckSettings):
    """Probe ``paths`` every ``interval_s`` for ``window_s``; judge availability and latency."""

    timeout_s: float = 120.0
    window_s: float = Field(60.0, ge=0, le=480)
    interval_s: float = Field(5.0, gt=0, le=60)
    paths: list[UrlPath] = Field(default_factory=lambda: ["/"])
    expect_status: list[int] = Field(default_factory=lambda: [200])
    request_timeout_s: float = Field(10.0, gt=0, le=60)
    min_availability: float = Field(0.99, ge=0, le=1)
    warn_availability: float = Field(0.95, ge=0, le=1)
    max_p95_ms: float = Field(1000.0, gt=0)

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.window_s + self.request_timeout_s > self.timeout_s:
            raise ValueError(f"expected window_s + request_timeout_s ≤ timeout_s ({self.timeout_s:g} s), "
                             f"found {self.window_s:g} + {self.request_timeout_s:g} s")
        if self.warn_availability > self.min_availability:
            raise ValueError("expected warn_availability ≤ min_availability")
        return self


@dataclass
class Probe:
    """One probe of one path during the window."""

    at_s: float  # seconds since the window opened
    path: str
    ok: bool
    latency_ms: float
    detail: str = ""


def percentile(values: list[float], p: int) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that was measured)."""
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]


async def _probe(ctx: CheckContext, url: str, path: str, config: Config, opened: float) -> Probe:
    started = time.perf_counter()
    try:
        response = await ctx.http.get(url + path, timeout=config.request_timeout_s, follow_redirects=False)
        ok = response.status_code in config.expect_status
        detail = "" if ok else f"status {response.status_code}"
    except httpx.TimeoutException:
        ok, detail = False, f"timed out after {config.request_timeout_s:g} s"
    except httpx.HTTPError as exc:
        ok, detail = False, f"{type(exc).__name__}"
    return Probe(time.monotonic() - opened, path, ok, (time.perf_counter() - started) * 1000, detail)


def _trend(probes: list[Probe]) -> str:
    """Median latency of the first half vs the second half of the window."""
    ok = [p for p in probes if p.ok]
    if len(ok) < 4:
        return "too few answers for a trend"
    half = len(ok) // 2
    first, second = statistics.median(p.latency_ms for p in ok[:half]), statistics.median(p.latency_ms for p in ok[half:])
    change = (second - first) / first if first else 0.0
    word = "rising" if change > 0.2 else "falling" if change < -0.2 else "steady"
    return f"{word}: median {first:.0f} ms → {second:.0f} ms ({change:+.0%})"


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Probe the revision for the whole window; availability % and latency p50/p95/p99 with their trend."""
    if config.window_s <= 0 or not config.paths:
        return not_configured("no observation window configured (window_s is 0)")
    if not target.url:
        return CheckResult(Status.SKIPPED, "nothing to observe: no URL reaches the revision")
    url = target.url.rstrip("/")
    opened = time.monotonic()
    end = opened + config.window_s
    if ctx.deadline:
        end = min(end, ctx.deadline - config.request_timeout_s)
    probes: list[Probe] = []
    rounds = 0
    while True:
        rounds += 1
        probes += await asyncio.gather(*(_probe(ctx, url, p, config, opened) for p in config.paths))
        elapsed = time.monotonic() - opened
        if ctx.progress:
            ctx.progress(f"window: {len(probes)} probes, {sum(p.ok for p in probes)} ok", min(elapsed / config.window_s, 0.99))
        if time.monotonic() + config.interval_s > end:
            break
        await asyncio.sleep(config.interval_s)
    if ctx.progress:
        ctx.progress(f"window: done, {len(probes)} probes, {sum(p.ok for p in probes)} ok", 1.0)
    return _judge(config, probes, time.monotonic() - opened)


def _judge(config: Config, probes: list[Probe], seconds: float) -> CheckResult:
    ok = [p for p in probes if p.ok]
    availability = len(ok) / len(probes)
    latencies = [p.latency_ms for p in ok]
    evidence = [
        Evidence("window", f"{seconds:.0f} s, {len(probes)} probes of {', '.join(config.paths)} every {config.interval_s:g} s",
                 f"{config.window_s:g} s", ok=None),
        Evidence("availability", f"{availability:.1%} ({len(ok)}/{len(probes)})", f"≥ {config.min_availability:.0%}",
                 ok=availability >= config.min_availability),
    ]
    reasons = []
    failures = [p for p in probes if not p.ok]
    if failures:
        first = failures[0]
        reasons.append(f"{len(failures)}/{len(probes)} probes failed during the window; first at +{first.at_s:.0f} s: "
                       f"GET {first.path} {first.detail}")
    p95 = None
    if latencies:
        figures = {p: percentile(latencies, p) for p in PERCENTILES}
        p95 = figures[95]
        evidence.append(Evidence("latency p50 / p95 / p99", " / ".join(f"{figures[p]:.0f} ms" for p in PERCENTILES),
                                 f"p95 ≤ {config.max_p95_ms:.0f} ms", ok=p95 <= config.max_p95_ms))
        evidence.append(Evidence("latency trend", _trend(probes), ok=None))
        if p95 > config.max_p95_ms:
            reasons.append(f"expected p95 latency ≤ {config.max_p95_ms:.0f} ms during the window, found {p95:.0f} ms")
    head = f"availability {availability:.1%} over {seconds:.0f} s ({len(probes)} probes)"
    if p95 is not None:
        head += f", p95 {p95:.0f} ms"
    if availability < config.warn_availability:
        return CheckResult(Status.FAIL, f"{head}; {reasons[0]}", evidence, availability, reasons=reasons)
    if availability < config.min_availability or (p95 is not None and p95 > config.max_p95_ms):
        return CheckResult(Status.WARN, f"{head}; {reasons[0]}", evidence, min(availability, 0.5), reasons=reasons)
    return CheckResult(Status.PASS, head, evidence, 1.0, reasons=reasons)
