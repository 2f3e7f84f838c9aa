"""health: the revision answers its health endpoint with the expected status, JSON and latency."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from core.expect import MISSING, Expectation, describe, parse_all
from core.model import CheckContext, CheckResult, Evidence, Status, Target, cannot_measure
from core.schema import CheckSettings, Expectations, UrlPath
from probe.web import Refused, audience, exchange, fetch_token, no_url, token_fix, token_may_help

NAME = "health"
CATEGORY = "Deployment"
class Config(CheckSettings):
    """Health is critical by default: a revision that is not healthy is a failed deploy."""

    critical: bool = True
    path: UrlPath = "/"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    expect_json: Expectations = Field(default_factory=list)
    tries: int = Field(3, ge=1, le=20)
    interval_s: float = Field(1.0, ge=0, le=60)
    request_timeout_s: float = Field(10.0, gt=0, le=120)
    latency_budget_ms: float = Field(1000.0, gt=0)
    max_body_bytes: int = Field(1_048_576, gt=0)
    auth: Literal["auto", "none", "id_token"] = "auto"

    @model_validator(mode="after")
    def _fits_timeout(self) -> Config:
        worst = self.tries * self.request_timeout_s + (self.tries - 1) * self.interval_s
        if worst > self.timeout_s:
            raise ValueError(f"expected tries × request_timeout_s + pauses ≤ timeout_s ({self.timeout_s:g} s), "
                             f"found {self.tries} × {self.request_timeout_s:g} s + {self.tries - 1} × {self.interval_s:g} s "
                             f"= {worst:g} s")
        return self


@dataclass
class Attempt:
    """One try: what came back and how long it took (only an answer's latency is judged)."""

    status: int | None = None
    latency_ms: float = 0.0
    error: str = ""
    body: Any = None


async def _get(ctx: CheckContext, url: str, config: Config, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = ctx.http.build_request("GET", url, headers=headers, timeout=config.request_timeout_s)
    return await exchange(ctx.http, request, config.max_body_bytes)


async def _attempt(ctx: CheckContext, url: str, config: Config, token: str | None) -> Attempt:
    started = time.perf_counter()
    try:
        status, body = await _get(ctx, url, config, token)
    except Refused as exc:
        return Attempt(error=str(exc))
    except httpx.TimeoutException:
        return Attempt(error=f"timed out after {config.request_timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Attempt(error=f"connection failed: {type(exc).__name__}: {exc}".rstrip(": "))
    attempt = Attempt(status=status, latency_ms=(time.perf_counter() - started) * 1000)
    try:
        attempt.body = json.loads(body) if body else None
    except ValueError:
        attempt.body = MISSING
    return attempt


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Probe ``target.url + path`` several times and judge status, JSON and latency."""
    if not target.url:
        return no_url(target)
    url = target.url.rstrip("/") + config.path
    expectations = parse_all(config.expect_json)
    for_audience = audience(target)
    tokens_help = token_may_help(url, target)  # elsewhere a 401/403 is the answer it is
    token, token_problem = await fetch_token(ctx, for_audience) if config.auth == "id_token" else (None, "")
    attempts: list[Attempt] = []
    for i in range(config.tries):
        if i and config.interval_s:
            await asyncio.sleep(config.interval_s)
        attempt = await _attempt(ctx, url, config, token)
        if attempt.status in (401, 403) and config.auth == "auto" and tokens_help and token is None and not token_problem:
            token, token_problem = await fetch_token(ctx, for_audience)
            if token:
                attempt = await _attempt(ctx, url, config, token)
        attempts.append(attempt)
    result = _judge(config, url, attempts, expectations)
    if token_problem and all(a.status in (401, 403) for a in attempts):
        # The revision answered; postdeploy lacked the token it asks for: not measured, not a failed deploy.
        why = f"GET {config.path} answered {attempts[-1].status} and {token_problem}"
        return cannot_measure(f"GET {config.path}", why, token_fix(for_audience), result.evidence)
    if token_problem and result.status is not Status.PASS:
        result.reasons.append(token_problem)
        result.evidence.append(Evidence("ID token", token_problem, "a token for a private service", ok=False))
    return result


def _judge(config: Config, url: str, attempts: list[Attempt], expectations: list[Expectation]) -> CheckResult:
    path = config.path
    wanted = " or ".join(str(s) for s in config.expect_status)
    statuses = [a.status for a in attempts]
    evidence = [Evidence(f"HTTP status of GET {path}", ", ".join(str(s) if s else "no response" for s in statuses),
                         wanted, ok=all(s in config.expect_status for s in statuses))]
    reasons: list[str] = []
    ok_tries = 0
    for a in attempts:
        good = a.status in config.expect_status and not a.error
        if a.error:
            reasons.append(f"GET {path}: {a.error}")
        elif not good:
            reasons.append(f"expected status {wanted} from {path}, got {a.status}")
        if good and expectations:
            if a.body is MISSING:
                reasons.append(f"expected a JSON body from {path}, got something else")
                good = False
            for exp in expectations:
                holds, found = exp.holds(a.body)  # a body that is not JSON has no fields, like no body
                if not holds:
                    good = False
                    reasons.append(f"expected {exp.text} in {path}, found {describe(found)}")
        ok_tries += good
    last_json = next((a.body for a in reversed(attempts) if a.body not in (None, MISSING)), None)
    for exp in expectations:
        holds, found = exp.holds(last_json)
        evidence.append(Evidence(f"JSON {exp.path}", "no such field" if found is MISSING else found, exp.text, ok=holds))
    latencies = [a.latency_ms for a in attempts if a.status is not None]
    slow = False
    if latencies:
        # The median is judged: the first request to a new revision often pays its cold start.
        p50, worst = statistics.median(latencies), max(latencies)
        slow = p50 > config.latency_budget_ms
        evidence.append(Evidence(f"latency of GET {path} (median / max of {len(latencies)})",
                                 f"{p50:.0f} ms / {worst:.0f} ms", f"median ≤ {config.latency_budget_ms:.0f} ms", ok=not slow))
        if slow:
            reasons.append(f"expected GET {path} within {config.latency_budget_ms:.0f} ms (median), took {p50:.0f} ms")
    evidence.append(Evidence("tries passing", f"{ok_tries}/{len(attempts)}", f"{len(attempts)}/{len(attempts)}",
                             ok=ok_tries == len(attempts)))
    unique_reasons = list(dict.fromkeys(reasons))
    score = max(0.0, ok_tries / len(attempts) - (0.25 if slow else 0.0))
    if ok_tries == 0:
        first = unique_reasons[0]  # every try that is not healthy gave its reason
        summary = f"{first} after {len(attempts)} tries" if len(attempts) > 1 else first
        return CheckResult(Status.FAIL, summary, evidence, 0.0, reasons=unique_reasons,
                           next_steps=[f"curl -i {url}", "read the revision's logs around the deploy time"])
    if ok_tries < len(attempts) or slow:
        return CheckResult(Status.WARN, f"{ok_tries}/{len(attempts)} tries of {path} healthy; {unique_reasons[0]}",
                           evidence, score, reasons=unique_reasons)
    return CheckResult(Status.PASS, f"{path} answered {statuses[0]} on {len(attempts)}/{len(attempts)} tries, "
                       f"median {statistics.median(latencies):.0f} ms", evidence, 1.0)
