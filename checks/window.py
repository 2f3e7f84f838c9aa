"""window: an observation window after the deploy — availability and latency percentiles over repeated probes.

Every ``interval_s`` for ``window_s`` each path is fetched (by default the health check's path) and each
chosen smoke path is run (by default those that change nothing), each on a schedule of its own.
Availability counts every probe; latency percentiles are those of the single GET requests, a smoke
path's duration being reported on its own line.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from core.model import CheckContext, CheckResult, Evidence, NotMeasured, Status, Target, cannot_measure, not_configured
from core.schema import CheckSettings, UrlPath
from probe.golden.paths import PathConfig, read_only
from probe.golden.run import BUDGET_MARGIN_S, run_path
from probe.golden.session import Session
from probe.golden.websocket_step import CLOSE_TIMEOUT_S
from probe.web import audience, fetch_token, no_url, token_may_help

NAME = "window"
CATEGORY = "Stability"
PERCENTILES = (50, 95, 99)
CUT_SLACK_S = 0.05  # a smoke run that failed this close to the budget's end was cut by it
# After the window, answers still on their way get this long; a probe unanswered then failed to answer in time.
CLOSE_GRACE_S = 1.0
MAX_SAMPLES = 2000  # probes report.json keeps for the timeline (a 480 s window at 0.2 s holds 2,400)
RENAMED = {"min_availability": "warn_below", "warn_availability": "fail_below"}


class Config(CheckSettings):
    """Probe ``paths`` and smoke paths every ``interval_s`` for ``window_s``; judge availability and latency.

    Critical by default: a revision that stops answering, or answers 5xx, during the window is a failed deploy.
    """

    critical: bool = True
    timeout_s: float = 120.0
    window_s: float = Field(60.0, ge=0, le=480)
    interval_s: float = Field(5.0, gt=0, le=60)
    paths: list[UrlPath] | None = None  # None: the health check's path
    # Smoke paths repeated in each round: those that change nothing, all, none, or these by name.
    smoke: Literal["read-only", "all", "none"] | list[str] = "read-only"
    auth: Literal["auto", "none", "id_token"] = "auto"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    request_timeout_s: float = Field(10.0, gt=0, le=60)
    fail_below: float = Field(0.95, ge=0, le=1)  # availability below this FAILs
    warn_below: float = Field(0.99, ge=0, le=1)  # availability below this WARNs
    max_p95_ms: float = Field(1000.0, gt=0)
    abort_after: int = Field(5, ge=0)  # consecutive failed probes that end the window early; 0: never

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [key for key in RENAMED if key in data]
            if old:
                raise ValueError("; ".join(f"{key} was renamed to {RENAMED[key]} (availability below it "
                                           f"{'WARNs' if RENAMED[key] == 'warn_below' else 'FAILs'})" for key in old))
        return data

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.window_s + self.request_timeout_s > self.timeout_s:
            raise ValueError(f"expected window_s + request_timeout_s ≤ timeout_s ({self.timeout_s:g} s), "
                             f"found {self.window_s:g} + {self.request_timeout_s:g} s")
        if self.fail_below > self.warn_below:
            raise ValueError(f"expected fail_below ≤ warn_below, found {self.fail_below:g} > {self.warn_below:g}")
        return self

    @property
    def rounds(self) -> int:
        """How many times each path is probed when the window runs to its end."""
        return int(self.window_s / self.interval_s + 1e-9) + 1


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
    critical: bool = True  # a GET, or a critical smoke path: its failure fails the deploy and may end the window

    @property
    def is_request(self) -> bool:
        return not self.path.startswith("smoke ")


def percentile(values: list[float], p: int) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that was measured)."""
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def chosen_smoke_paths(config: Config, smoke_config: Any) -> list[PathConfig]:
    """The smoke paths each round repeats (none when the smoke check is off)."""
    if smoke_config is None or not smoke_config.enabled or config.smoke == "none":
        return []
    if config.smoke == "all":
        return list(smoke_config.paths)
    if config.smoke == "read-only":
        return [p for p in smoke_config.paths if read_only(p)]
    return [p for p in smoke_config.paths if p.name in config.smoke]


def abort_reason(config: Config, probes: list[Probe], planned: int, streak: int) -> str:
    """Why the window should stop now, or "": its floor can no longer be met, or ``abort_after`` probes failed in a row.

    ``probes`` and ``planned`` count the probes whose failure fails the deploy: GETs and critical smoke paths."""
    failed = sum(1 for p in probes if not p.ok)
    if not failed:
        return ""
    planned = max(planned, len(probes))
    best = (planned - failed) / planned
    if best < config.fail_below:
        return (f"availability can no longer reach {config.fail_below:.0%}: {failed} of at most {planned} probes failed "
                f"(best case {best:.1%})")
    if config.abort_after and streak >= config.abort_after:
        return f"{streak} probes failed in a row (abort_after {config.abort_after})"
    return ""


@dataclass
class _Observer:
    """What the probes share: the base URL, an ID token once one proved necessary, the smoke session, the budget."""

    ctx: CheckContext
    config: Config
    url: str
    audience: str
    opened: float
    hard_end: float  # nothing may run past this
    tokens_help: bool = True  # the URL is Cloud Run's: under `auth: auto` a 401/403 may want an ID token
    session: Session | None = None
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
        if status in (401, 403) and self.config.auth == "auto" and self.tokens_help and self.token is None:
            await self._fetch_token()  # a private service: from now on every probe carries a token
            if self.token:
                probe, status = await self._get_once(path)
        if status in (401, 403) and self.token is None and self.config.auth != "none" and self.token_problem:
            probe.ours = f"{probe.detail} and {self.token_problem}"  # our missing token, not an outage
        return probe

    async def _get_once(self, path: str) -> tuple[Probe, int | None]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        started = time.perf_counter()
        at = time.monotonic() - self.opened
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
        return Probe(at, f"GET {path}", ok, (time.perf_counter() - started) * 1000, detail), status

    async def flow(self, path: PathConfig) -> Probe:
        """One run of a smoke path (``cut`` when the window's own budget ended it)."""
        assert self.session is not None
        started = time.perf_counter()
        at = time.monotonic() - self.opened
        own_end = time.monotonic() + (path.timeout_s or self.session.config.timeout_s)
        outcome = await run_path(self.session, path, min(own_end, self.hard_end))
        problem = self.session.scrub(outcome.problem)
        return Probe(at, f"smoke {path.name}", outcome.ok, (time.perf_counter() - started) * 1000, problem,
                     ours=problem if any(s.setup_failed for s in outcome.steps) else "",
                     cut=not outcome.ok and own_end > self.hard_end and time.monotonic() >= self.hard_end - CUT_SLACK_S,
                     critical=path.critical)


@dataclass
class _Tally:
    """The probes counted so far, what was dropped or cut, and whether the window should stop early."""

    config: Config
    opened: float
    planned: int
    progress: Any = None
    probes: list[Probe] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # what postdeploy could not send, and why
    cut: dict[str, int] = field(default_factory=dict)  # smoke runs the window's budget ended, by path
    streak: int = 0
    aborted: str = ""
    aborted_at: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, probe: Probe) -> None:
        if probe.cut:
            self.cut[probe.path] = self.cut.get(probe.path, 0) + 1
        elif probe.ours:
            self.dropped.setdefault(probe.path, probe.ours)
        elif not self.aborted:
            self.probes.append(probe)
            if probe.critical:  # a failing non-critical smoke path is reported, but ends nothing
                self.streak = 0 if probe.ok else self.streak + 1
            why = abort_reason(self.config, [p for p in self.probes if p.critical], self.planned, self.streak)
            if why:
                self.aborted, self.aborted_at = why, time.monotonic() - self.opened
                self.stop.set()
        if self.progress:
            elapsed = time.monotonic() - self.opened
            ok = sum(p.ok for p in self.probes)
            self.progress(f"window: {len(self.probes)} probes, {ok} ok", min(elapsed / self.config.window_s, 0.99))

    async def pause_until(self, when: float) -> bool:
        """Sleep until ``when``; False when the window was stopped meanwhile."""
        try:
            await asyncio.wait_for(self.stop.wait(), max(when - time.monotonic(), 0))
        except TimeoutError:
            return True
        return False


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Probe the revision for the whole window; availability % and latency p50/p95/p99 with their trend.

    Every GET starts on its schedule whatever earlier ones are doing: a hung request counts as failed at its
    timeout (or when the window closes) while later probes go on. Each smoke path repeats on a schedule of its own.
    The window stops early once its ``fail_below`` floor can no longer be met or after ``abort_after`` failures in a
    row, as a canary's failure limit does; the checks after it then run at once.
    """
    health_config: Any = ctx.peers.get("health")
    smoke_config: Any = ctx.peers.get("smoke")
    paths = config.paths if config.paths is not None else [health_config.path if health_config else "/"]
    flows = chosen_smoke_paths(config, smoke_config)
    if config.window_s <= 0 or not (paths or flows):
        return not_configured("no observation window configured (window_s is 0)" if config.window_s <= 0
                              else "nothing to repeat: no paths and no smoke path chosen")
    if not target.url:
        return no_url(target)
    opened = time.monotonic()
    margin = BUDGET_MARGIN_S + (CLOSE_TIMEOUT_S if flows else 0.0)  # a WebSocket may take that long to close
    hard_end = ctx.budget_end(config.timeout_s, margin)
    end = min(opened + config.window_s, hard_end - config.request_timeout_s)  # the last start of a round of GETs
    observer = _Observer(ctx, config, target.url.rstrip("/"), audience(target), opened, hard_end,
                         tokens_help=token_may_help(target.url, target))
    if flows:
        observer.session = Session(target, smoke_config, ctx)
    tally = _Tally(config, opened, config.rounds * (len(paths) + sum(1 for f in flows if f.critical)), ctx.progress)
    in_flight: dict[asyncio.Task[None], tuple[str, float]] = {}  # GETs on their way: what, and when they started

    async def one_get(path: str) -> None:
        tally.record(await _guarded(observer.get(path), f"GET {path}"))

    async def gets() -> None:
        for i in range(config.rounds):
            at = opened + i * config.interval_s
            if (i and at > end) or not await tally.pause_until(at):
                return
            for path in paths:
                if f"GET {path}" not in tally.dropped:
                    in_flight[asyncio.create_task(one_get(path))] = (f"GET {path}", time.monotonic())

    async def repeat(path: PathConfig) -> None:
        slot, longest = 0, 0.0
        while slot < config.rounds and f"smoke {path.name}" not in tally.dropped:
            if not await tally.pause_until(opened + slot * config.interval_s) or time.monotonic() + longest > hard_end:
                return
            started = time.monotonic()
            tally.record(await _guarded(observer.flow(path), f"smoke {path.name}"))
            longest = max(longest, time.monotonic() - started)
            # A run longer than the interval gives up the slots it overran: runs of one path never overlap.
            slot = max(slot + 1, math.ceil((time.monotonic() - opened) / config.interval_s))

    schedules: asyncio.Future[Any] = asyncio.gather(asyncio.create_task(gets()), *(asyncio.create_task(repeat(f)) for f in flows))
    stopped: asyncio.Future[Any] = asyncio.create_task(tally.stop.wait())
    await asyncio.wait([schedules, stopped], return_when=asyncio.FIRST_COMPLETED)
    pending = [t for t in in_flight if not t.done()]
    if pending and not tally.aborted:
        # Answers on their way get a short grace; a probe still unanswered then has failed to answer in time.
        close_at = min(max(opened + config.window_s, time.monotonic()) + min(config.request_timeout_s, CLOSE_GRACE_S), hard_end)
        await asyncio.wait(pending, timeout=max(close_at - time.monotonic(), 0))
        now = time.monotonic()
        for task in (t for t in pending if not t.done()):
            task.cancel()
            what, started = in_flight[task]
            tally.record(Probe(started - opened, what, False, (now - started) * 1000,
                               f"no answer after {now - started:.1f} s, when the window closed"))
    leftovers: list[asyncio.Future[Any]] = [schedules, stopped, *in_flight]
    for future in leftovers:
        future.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    if ctx.progress:
        ctx.progress(f"window: done, {len(tally.probes)} probes, {sum(p.ok for p in tally.probes)} ok", 1.0)
    result = _judge(config, tally, time.monotonic() - opened)
    result.data["timeline"] = timeline(tally.probes, config.window_s, tally.aborted_at if tally.aborted else None)
    result.evidence += [Evidence(f"cut short: {what}", f"{n} run(s) ended by the window's time budget, not counted",
                                 ok=None) for what, n in tally.cut.items()]
    return observer.session.scrubbed_result(result) if observer.session else result


async def _guarded(probe: Awaitable[Probe], what: str) -> Probe:
    """The probe, or, when postdeploy itself broke sending it, a probe that is ours and not counted against the revision."""
    try:
        return await probe
    except Exception as exc:  # our bug, not the revision's answer
        return Probe(0.0, what, False, 0.0, ours=f"postdeploy failed: {type(exc).__name__}: {exc}")


def timeline(probes: list[Probe], window_s: float, aborted_at_s: float | None) -> dict[str, Any]:
    """The window as report.json keeps it for the report's chart: each probe's time, target, outcome and latency
    (a failure's detail too), at most ``MAX_SAMPLES`` of them: every failure first, then answers evenly spread."""
    kept = probes
    if len(probes) > MAX_SAMPLES:
        failed = [p for p in probes if not p.ok][:MAX_SAMPLES]
        good = [p for p in probes if p.ok]
        room = MAX_SAMPLES - len(failed)
        spread = [good[i * len(good) // room] for i in range(room)] if room and good else []
        chosen = {id(p) for p in failed + spread}
        kept = [p for p in probes if id(p) in chosen]
    return {"window_s": window_s, "aborted_at_s": None if aborted_at_s is None else round(aborted_at_s, 3),
            "probes": len(probes), "samples": [
                {"at_s": round(p.at_s, 3), "path": p.path, "ok": p.ok, "ms": round(p.latency_ms, 1),
                 **({"detail": p.detail} if not p.ok and p.detail else {})} for p in kept]}


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


DROPPED_FIX = ("let postdeploy send it: an identity that can mint ID tokens and holds roles/run.invoker on the service, "
               "or the variable or secret the path names")


def _judge(config: Config, tally: _Tally, seconds: float) -> CheckResult:
    probes = tally.probes
    # postdeploy's own missing token or secret: said (health and smoke say it too), not held against the revision.
    evidence = [Evidence(f"not repeated: {what}", why, "postdeploy can send it", ok=False) for what, why in tally.dropped.items()]
    reasons = [f"{what} was not repeated: {why}" for what, why in tally.dropped.items()]
    dropped = [NotMeasured(what, why, DROPPED_FIX) for what, why in tally.dropped.items()]
    if not probes:
        if dropped:
            return CheckResult(Status.ERROR, reasons[0], evidence, reasons=reasons, not_measured=dropped)
        return cannot_measure("window", "no probe ran during the window", "raise checks.window.timeout_s or deadline_s")
    # Availability is that of the probes whose failure fails the deploy: the GETs and the critical smoke paths. A
    # non-critical smoke path repeated here is listed, and its failures WARN, but the smoke check judges it.
    counted = [p for p in probes if p.critical] or probes
    ok = [p for p in counted if p.ok]
    availability = len(ok) / len(counted)
    targets = list(dict.fromkeys(p.path for p in probes))
    evidence[:0] = [
        Evidence("window", f"{seconds:.0f} s, {len(probes)} probes of {', '.join(targets)} every {config.interval_s:g} s",
                 f"{config.window_s:g} s", ok=None),
        Evidence("availability", f"{availability:.1%} ({len(ok)}/{len(counted)})",
                 f"≥ {config.warn_below:.0%} (FAIL below {config.fail_below:.0%})", ok=availability >= config.warn_below),
    ]
    failures = [p for p in counted if not p.ok]
    # A non-critical smoke path that failed now and then WARNs (the smoke check's single run may have missed it); one
    # that failed every run is the smoke check's finding, listed here but not counted twice.
    side = [p for p in probes if not p.ok and p not in counted and any(q.ok for q in probes if q.path == p.path)]
    broken = list(dict.fromkeys(p.path for p in probes if p not in counted and not p.ok and p not in side))
    if failures:
        first = failures[0]
        reasons.insert(0, f"{len(failures)}/{len(counted)} probes failed during the window; first at +{first.at_s:.0f} s: "
                          f"{first.path}: {first.detail}")
    if side:
        reasons.insert(len(failures) > 0, f"non-critical {side[0].path} failed {sum(p.path == side[0].path for p in side)}× "
                                          f"during the window, passing otherwise: {side[0].detail}")
    reasons += [f"non-critical {path} failed every run during the window (the smoke check judges it)" for path in broken]
    if tally.aborted:
        evidence.insert(1, Evidence("window aborted", f"at +{tally.aborted_at:.0f} s: {tally.aborted}",
                                    f"{config.window_s:g} s unless the floor is lost or {config.abort_after} fail in a row",
                                    ok=False))
        first = failures[0]
        reasons[0] = (f"window aborted at +{tally.aborted_at:.0f} s: {tally.aborted}; first failure at +{first.at_s:.0f} s: "
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
    head = f"availability {availability:.1%} over {seconds:.0f} s ({len(counted)} probe{'' if len(counted) == 1 else 's'})"
    if p95 is not None:
        head += f", p95 {p95:.0f} ms"
    steps = ["read the revision's logs from the first failed probe on"] if failures or side else []
    # Only non-critical items failed: the check says so, and the verdict is capped at WARN, not failed.
    critical = False if (failures or side) and not any(p.critical for p in failures) else None
    if tally.aborted or availability < config.fail_below:
        return CheckResult(Status.FAIL, f"{head}; {reasons[0]}", evidence, availability, reasons=reasons,
                           next_steps=steps, not_measured=dropped, critical=critical)
    if side or availability < config.warn_below or (p95 is not None and p95 > config.max_p95_ms):
        return CheckResult(Status.WARN, f"{head}; {reasons[0]}", evidence, availability, reasons=reasons,
                           next_steps=steps, not_measured=dropped, critical=critical)
    return CheckResult(Status.PASS, head, evidence, availability, reasons=reasons, not_measured=dropped)
