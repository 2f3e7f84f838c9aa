"""Run the enabled checks concurrently, each under its own timeout, all inside one deadline."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from core.errors import NoCredentials, PostdeployError
from core.model import CheckContext, CheckResult, Evidence, Outcome, Target, cannot_measure

BUG_FIX = "a postdeploy bug: report it with this report and the function's logs"


def fix_for(exc: BaseException) -> str:
    """What would let postdeploy measure after ``exc``: its own fix, credentials, else a bug report."""
    if isinstance(exc, PostdeployError) and exc.fix:
        return exc.fix
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(exc, auth.DefaultCredentialsError):
        return NoCredentials.fix
    return BUG_FIX


async def _one(name: str, module: ModuleType, target: Target, config: Any, ctx: CheckContext,
               timeout_s: float) -> tuple[CheckResult, int]:
    started = time.perf_counter()
    try:
        result: CheckResult = await asyncio.wait_for(module.run(target, config, ctx), timeout=max(timeout_s, 0.001))
    except TimeoutError:
        # Checks bound their own requests; running out of the check's budget is postdeploy's budget, not the revision.
        result = cannot_measure(f"check {name}", f"check '{name}' did not finish within {timeout_s:.1f} s",
                                f"raise checks.{name}.timeout_s (or deadline_s)",
                                [Evidence("duration", f"> {timeout_s:.1f} s", f"≤ {timeout_s:.1f} s", ok=False)])
    except Exception as exc:  # a crashing check is a result, not a crashed function, and never the revision's fault
        result = cannot_measure(f"check {name}", f"check '{name}' crashed: {type(exc).__name__}: {exc}", fix_for(exc),
                                [Evidence("exception", f"{type(exc).__name__}: {exc}", ok=False)])
    return result, int((time.perf_counter() - started) * 1000)


async def run_checks(target: Target, settings: Any, registry: Mapping[str, ModuleType], ctx: CheckContext) -> list[Outcome]:
    """Every enabled check, in registry order; timeouts and crashes become ERROR results.

    Checks run concurrently within a phase; a check with ``PHASE = 1`` (logs, metrics) starts once
    phase 0 is done, so what the observation window's probes caused is in what it reads.
    """
    enabled = [(n, m, getattr(settings.checks, n)) for n, m in registry.items() if getattr(settings.checks, n).enabled]
    outcomes: dict[str, Outcome] = {}
    for phase in sorted({getattr(m, "PHASE", 0) for _, m, _ in enabled}):
        jobs = [(n, m, c) for n, m, c in enabled if getattr(m, "PHASE", 0) == phase]
        remaining = max(ctx.deadline - time.monotonic(), 0.0)
        results = await asyncio.gather(*(_one(n, m, target, c, ctx, min(c.timeout_s, remaining)) for n, m, c in jobs))
        for (name, module, config), (result, duration) in zip(jobs, results, strict=True):
            critical = bool(config.critical) if result.critical is None else result.critical
            outcomes[name] = Outcome(name, config.category or module.CATEGORY, critical, result, duration)
    return [outcomes[n] for n, _, _ in enabled]
