"""An HTTP step: one request, its status, JSON expectations, captures and latency budget."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from core.expect import MISSING, describe, parse_all
from core.model import Evidence
from probe.golden.paths import HttpStep
from probe.golden.session import Session, StepOutcome, StepOutput, authorized, capture, json_doc, step_url
from probe.web import Refused, exchange


async def http_step(session: Session, step: HttpStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    url, path = await step_url(session, step, outputs)
    headers, shown = await session.headers(step, outputs)
    body: dict[str, Any] = {}
    if step.json_ is not None:
        body["json"] = await session.render_value(step.json_, outputs)
    elif step.text is not None:
        body["content"] = (await session.render(step.text, outputs)).encode()
        if not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
    label = f"{step.method} {path}"
    outcome = StepOutcome(step.name, label)
    token_problem = ""
    if session.config.auth == "id_token":
        headers, shown, token_problem = await authorized(session, headers, shown)

    async def attempt(headers: dict[str, str]) -> tuple[int | None, bytes, str, float]:
        request = session.ctx.http.build_request(step.method, url, headers=headers, timeout=step.timeout_s, **body)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.timeout_s):
                status, data = await exchange(session.ctx.http, request, session.config.max_body_bytes)
        except Refused as exc:
            return None, b"", str(exc), time.perf_counter() - started
        except (TimeoutError, httpx.TimeoutException):
            return None, b"", f"timed out after {step.timeout_s:g} s", time.perf_counter() - started
        except httpx.HTTPError as exc:
            return None, b"", f"connection failed: {type(exc).__name__}: {exc}".rstrip(": "), time.perf_counter() - started
        return status, data, "", time.perf_counter() - started

    status, data, error, seconds = await attempt(headers)
    if status in (401, 403) and session.config.auth == "auto" and session.tokens_help:
        headers, shown, token_problem = await authorized(session, headers, shown)
        if not token_problem:
            status, data, error, seconds = await attempt(headers)

    wanted = " or ".join(map(str, step.expect_status)) if step.expect_status else "2xx"
    status_ok = status is not None and (status in step.expect_status if step.expect_status else 200 <= status < 300)
    outcome.evidence.append(Evidence(f"{prefix}: status of {label}", status if status is not None else error, wanted, ok=status_ok))
    if shown:
        outcome.evidence.append(Evidence(f"{prefix}: request headers", ", ".join(shown)))
    if error:
        outcome.reasons.append(f"{label}: {error}")
        return outcome
    if not status_ok:
        # Answered 401/403 while postdeploy could not get the ID token it needed: not measured, not the revision's fault.
        outcome.setup_failed = bool(token_problem) and status in (401, 403)
        outcome.reasons.append(f"expected status {wanted} from {label}, got {status}"
                               + (f" ({token_problem})" if outcome.setup_failed else ""))
    doc = json_doc(data)
    outcome.output = StepOutput(status, doc)
    if (step.expect_json or step.capture) and doc is MISSING:
        outcome.reasons.append(f"expected a JSON body from {label}, got {'nothing' if not data else 'something else'}")
    for exp in parse_all(step.expect_json):
        holds, found = exp.holds(doc)
        outcome.evidence.append(Evidence(f"{prefix}: JSON {exp.path} of {label}", describe(found), exp.text, ok=holds))
        if not holds and doc is not MISSING:
            outcome.reasons.append(f"expected {exp.text} in {label}, found {describe(found)}")
    if doc is not MISSING:
        capture(step, prefix, doc, label, outcome)
    ms = seconds * 1000
    budget = step.latency_budget_ms
    outcome.evidence.append(Evidence(f"{prefix}: latency of {label}", f"{ms:.0f} ms", f"≤ {budget:.0f} ms" if budget else None,
                                     ok=ms <= budget if budget else None))
    if budget and ms > budget:
        outcome.reasons.append(f"expected {label} within {budget:.0f} ms, took {ms:.0f} ms")
    return outcome
