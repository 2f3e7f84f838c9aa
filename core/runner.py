"""Run the enabled checks concurrently, each under its own timeout, all inside one deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from core.model import CheckContext, CheckResult, Evidence, Outcome, Status, Target


async def _one(name: str, module: ModuleType, target: Target, config: Any, ctx: CheckContext,
               timeout_s: float) -> tuple[CheckResult, int]:
    started = time.perf_counter()
    try:
        result: CheckResult = await asyncio.wait_for(module.run(target, config, ctx), timeout=max(timeout_s, 0.001))
    except TimeoutError:
        result = CheckResult(Status.ERROR, f"check '{name}' did not finish within {timeout_s:.1f} s",
                             [Evidence("duration", f"> {timeout_s:.1f} s", f"≤ {timeout_s:.1f} s", ok=False)])
    except Exception as exc:  # a crashing check is a result, not a crashed function
        result = CheckResult(Status.ERROR, f"check '{name}' crashed: {type(exc).__name__}: {exc}",
                             [Evidence("exception", f"{type(exc).__name__}: {exc}", ok=False)])
    return result, int((time.perf_counter() - started) * 1000)


async def run_checks(target: Target, settings: Any, registry: Mapping[str, ModuleType], ctx: CheckContext) -> list[Outcome]:
    """Every enabled check, in registry order; timeouts and crashes become ERROR results."""
    remaining = max(ctx.deadline - time.monotonic(), 0.0)
    jobs = []
    for name, module in registry.items():
        config = getattr(settings.checks, name)
        if not config.enabled:
            continue
        budget = min(config.timeout_s, remaining)
        jobs.append((name, module, config, _one(name, module, target, config, ctx, budget)))
    results = await asyncio.gather(*(job[3] for job in jobs))
    return [
        Outcome(name, config.category or module.CATEGORY, config.critical, result, duration)
        for (name, module, config, _), (result, duration) in zip(jobs, results, strict=False)
    ]
