"""window: an observation window after the deploy — availability and latency percentiles over repeated probes.

Every ``interval_s`` for ``window_s`` each path is fetched (by default the health check's path) and each
chosen smoke path is run (by default those that change nothing), each on a schedule of its own.
Availability counts every probe; latency percentiles are those of the single GET requests, a smoke
path's duration being reported on its own line.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from core import golden
from core.model import CheckContext, CheckResult, Evidence, Status, Target, not_configured
from core.schema import CheckSettings, UrlPath
from core.web import audience, fetch_token

NAME = "window"
CATEGORY = "Stability"
PERCENTILES = (50, 95, 99)
CUT_SLACK_S = 0.05  # a smoke run that failed this close to the budget's end was cut by it


class Config(CheckSettings):
    """Probe ``paths`` and smoke paths every ``interval_s`` for ``window_s``; judge availability and latency."""

    timeout_s: float = 120.0
    window_s: float = Field(60.0, ge=0, le=480)
    interval_s: float = Field(5.0, gt=0, le=60)
    paths: list[UrlPath] | None = None  # None: the health check's path
    # Smoke paths repeated in each round: those that change nothing, all, none, or these by name.
    smoke: Literal["read-only", "all", "none"] | list[str] = "read-only"
    auth: Literal["auto", "none", "id_token"] = "auto"
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
    """One probe during the window: a GET of a path, or one run of a smoke path."""

    at_s: float  # seconds since the window opened
    path: str  # "GET /health" or "smoke orders"
    ok: bool
    latency_ms: float
    detail: str = ""
    ours: str = ""  # postdeploy could not send it (no ID token, a missing secret): not the revision's fault
    cut: bool = False  # the window's own time budget ended it: no verdict either way

    @property
    def is_request(self) -> bool:
        return not self.path.startswith("smoke ")


def percentile(values: list[float], p: int) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that was measured)."""
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def chosen_smoke_paths(config: Config, smoke_config: Any) -> list[golden.PathConfig]:
    """The smoke paths each round repeats (none when the smoke check is off)."""
    if smoke_config is None or not smoke_config.enabled or config.smoke == "none":
        return []
    if config.smoke == "all":
        return list(smoke_config.paths)
    if config.smoke == "read-only":
        return [p for p in smoke_config.paths if golden.read_only(p)]
    return [p for p in smoke_config.paths if p.name in config.smoke]


@dataclass
class _Observer:
    """What the probes share: the base URL, an ID token once one proved necessary, the smoke session, the budget."""

    ctx: CheckContext
    config: Config
    url: str
    audience: str
    opened: float
    hard_end: float  # nothing may run past this
    session: golden.Session | None = None
    token: str | None = None
    token_problem: str = ""
    _token_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _fetch_token(self) -> None:
        async with self._token_lock:
            if self.token is None and not self.token_problem:
                self.token, self.token_problem = await fetch_token(self.ctx, self.audience)

    async def get(self, path: str) -> Probe:
        if self.config.auth == "id_token":
            await self._fetch_token()
        probe, status = await self._get_once(path)
        if status in (401, 403) and self.config.auth == "auto" and self.token is None:
            await self._fetch_token()  # a private service: from now on every probe carries a token
            if self.token:
                probe, status = await self._get_once(path)
        if status in (401, 403) and self.token is None and self.config.auth != "none" and self.token_problem:
            probe.ours = f"{probe.detail} and {self.token_problem}"  # our missing token, not an outage
        return probe

    async def _get_once(self, path: str) -> tuple[Probe, int | None]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        started = time.perf_counter()
        status = None
        try:
            response = await self.ctx.http.get(self.url + path, headers=headers, timeout=self.config.request_timeout_s,
                                               follow_redirects=False)
            status = response.status_code
            ok = status in self.config.expect_status
            detail = "" if ok else f"status {status}"
        except httpx.TimeoutException:
            ok, detail = False, f"timed out after {self.config.request_timeout_s:g} s"
        except httpx.HTTPError as exc:
            ok, detail = False, f"{type(exc).__name__}"
        return Probe(time.monotonic() - self.opened, f"GET {path}", ok, (time.perf_counter() - started) * 1000, detail), status

    async def flow(self, path: golden.PathConfig) -> Probe:
        """One run of a smoke path (``cut`` when the window's own budget ended it)."""
        assert self.session is not None
        started = time.perf_counter()
        own_end = time.monotonic() + (path.timeout_s or self.session.config.timeout_s)
        outcome = await golden.run_path(self.session, path, min(own_end, self.hard_end))
        problem = self.session.scrub(outcome.problem)
        return Probe(time.monotonic() - self.opened, f"smoke {path.name}", outcome.ok,
                     (time.perf_counter() - started) * 1000, problem,
                     ours=problem if any(s.setup_failed for s in outcome.steps) else "",
                     cut=not outcome.ok and own_end > self.hard_end and time.monotonic() >= self.hard_end - CUT_SLACK_S)


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Probe the revision for the whole window; availability % and latency p50/p95/p99 with their trend.

    The GETs and each smoke path repeat on schedules of their own, so a slow smoke path does not thin out
    the health probes; a smoke path starts again only when its longest run so far still fits the budget.
    """
    health_config: Any = ctx.peers.get("health")
    smoke_config: Any = ctx.peers.get("smoke")
    paths = config.paths if config.paths is not None else [health_config.path if health_config else "/"]
    flows = chosen_smoke_paths(config, smoke_config)
    if config.window_s <= 0 or not (paths or flows):
        return not_configured("no observation window configured (window_s is 0)" if config.window_s <= 0
                              else "nothing to repeat: no paths and no smoke path chosen")
    if not target.url:
        return CheckResult(Status.SKIPPED, "nothing to observe: no URL reaches the revision")
    opened = time.monotonic()
    margin = golden.BUDGET_MARGIN_S + (golden.CLOSE_TIMEOUT_S if flows else 0.0)  # a WebSocket may take that long to close
    hard_end = ctx.budget_end(config.timeout_s, margin)
    end = min(opened + config.window_s, hard_end - config.request_timeout_s)  # the last start of a round of GETs
    observer = _Observer(ctx, config, target.url.rstrip("/"), audience(target), opened, hard_end)
    if flows:
        observer.session = golden.Session(target, smoke_config, ctx)
    probes: list[Probe] = []
    dropped: dict[str, str] = {}  # what postdeploy could not send, and why
    cut: dict[str, int] = {}  # smoke runs the window's budget ended, by path

    def record(found: list[Probe]) -> None:
        for probe in found:
            if probe.cut:
                cut[probe.path] = cut.get(probe.path, 0) + 1
            elif probe.ours:
                dropped.setdefault(probe.path, probe.ours)
            else:
                probes.append(probe)
        if ctx.progress:
            elapsed = time.monotonic() - opened
            ctx.progress(f"window: {len(probes)} probes, {sum(p.ok for p in probes)} ok", min(elapsed / config.window_s, 0.99))

    async def gets() -> None:
        next_at = time.monotonic()
        while live := [p for p in paths if f"GET {p}" not in dropped]:
            record(list(await asyncio.gather(*(observer.get(p) for p in live))))
            next_at = max(next_at + config.interval_s, time.monotonic())
            if next_at > end:
                return
            await asyncio.sleep(next_at - time.monotonic())

    async def repeat(path: golden.PathConfig) -> None:
        next_at, longest = time.monotonic(), 0.0
        while f"smoke {path.name}" not in dropped and time.monotonic() + longest <= hard_end:
            started = time.monotonic()
            record([await observer.flow(path)])
            longest = max(longest, time.monotonic() - started)
            next_at = max(next_at + config.interval_s, time.monotonic())
            if next_at > opened + config.window_s:
                return
            await asyncio.sleep(next_at - time.monotonic())

    await asyncio.gather(gets(), *(repeat(f) for f in flows))
    if ctx.progress:
        ctx.progress(f"window: done, {len(probes)} probes, {sum(p.ok for p in probes)} ok", 1.0)
    result = _judge(config, probes, time.monotonic() - opened, dropped)
    result.evidence += [Evidence(f"cut short: {what}", f"{n} run(s) ended by the window's time budget, not counted",
                                 ok=None) for what, n in cut.items()]
    return observer.session.scrubbed_result(result) if observer.session else result


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


def _per_target(probes: list[Probe]) -> list[Evidence]:
    """One line per probed path or smoke path: how many answered well and how fast."""
    lines = []
    for name in dict.fromkeys(p.path for p in probes):
        mine = [p for p in probes if p.path == name]
        good = [p.latency_ms for p in mine if p.ok]
        what = "latency" if mine[0].is_request else "duration"
        figures = f", {what} p50 {percentile(good, 50):.0f} ms / p95 {percentile(good, 95):.0f} ms" if good else ""
        lines.append(Evidence(name, f"{len(good)}/{len(mine)} ok{figures}", ok=len(good) == len(mine)))
    return lines


def _judge(config: Config, probes: list[Probe], seconds: float, dropped: dict[str, str]) -> CheckResult:
    # postdeploy's own missing token or secret: said (health and smoke say it too), not held against the revision.
    evidence = [Evidence(f"not repeated: {what}", why, "postdeploy can send it", ok=False) for what, why in dropped.items()]
    reasons = [f"{what} was not repeated: {why}" for what, why in dropped.items()]
    if not probes:
        return CheckResult(Status.ERROR, reasons[0] if reasons else "no probe ran during the window", evidence,
                           reasons=reasons)
    ok = [p for p in probes if p.ok]
    availability = len(ok) / len(probes)
    targets = list(dict.fromkeys(p.path for p in probes))
    evidence[:0] = [
        Evidence("window", f"{seconds:.0f} s, {len(probes)} probes of {', '.join(targets)} every {config.interval_s:g} s",
                 f"{config.window_s:g} s", ok=None),
        Evidence("availability", f"{availability:.1%} ({len(ok)}/{len(probes)})", f"≥ {config.min_availability:.0%}",
                 ok=availability >= config.min_availability),
    ]
    failures = [p for p in probes if not p.ok]
    if failures:
        first = failures[0]
        reasons.insert(0, f"{len(failures)}/{len(probes)} probes failed during the window; first at +{first.at_s:.0f} s: "
                          f"{first.path}: {first.detail}")
    requests = [p for p in probes if p.is_request]
    latencies = [p.latency_ms for p in requests if p.ok]
    p95 = None
    if latencies:
        figures = {p: percentile(latencies, p) for p in PERCENTILES}
        p95 = figures[95]
        evidence.append(Evidence("latency p50 / p95 / p99", " / ".join(f"{figures[p]:.0f} ms" for p in PERCENTILES),
                                 f"p95 ≤ {config.max_p95_ms:.0f} ms", ok=p95 <= config.max_p95_ms))
        evidence.append(Evidence("latency trend", _trend(requests), ok=None))
        if p95 > config.max_p95_ms:
            reasons.insert(1 if failures else 0,
                           f"expected p95 latency ≤ {config.max_p95_ms:.0f} ms during the window, found {p95:.0f} ms")
    if len(targets) > 1 or not requests:
        evidence += _per_target(probes)
    head = f"availability {availability:.1%} over {seconds:.0f} s ({len(probes)} probes)"
    if p95 is not None:
        head += f", p95 {p95:.0f} ms"
    if availability < config.warn_availability:
        return CheckResult(Status.FAIL, f"{head}; {reasons[0]}", evidence, availability, reasons=reasons)
    if availability < config.min_availability or (p95 is not None and p95 > config.max_p95_ms):
        return CheckResult(Status.WARN, f"{head}; {reasons[0]}", evidence, min(availability, 0.5), reasons=reasons)
    return CheckResult(Status.PASS, head, evidence, 1.0, reasons=reasons)
