"""Run one golden path: its steps in order until one fails, inside the path's own time bound and the check's."""

from __future__ import annotations

import asyncio
import time

from core.model import Evidence
from probe.golden.http_step import http_step
from probe.golden.paths import HttpStep, PathConfig, WebSocketStep
from probe.golden.session import PathOutcome, Session, SetupFailed, StepFailed, StepOutcome, StepOutput
from probe.golden.websocket_step import websocket_step

BUDGET_MARGIN_S = 0.5  # kept back from a check's time budget, so that a path cut at its end is still reported


async def run_step(session: Session, step: HttpStep | WebSocketStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    """One step's outcome; a step whose references cannot be resolved fails unsent (a setup failure when it was postdeploy's)."""
    try:
        if isinstance(step, HttpStep):
            return await http_step(session, step, prefix, outputs)
        return await websocket_step(session, step, prefix, outputs)
    except StepFailed as exc:
        return StepOutcome(step.name, step.label(), [f"{step.label()}: {exc}"],
                           [Evidence(f"{prefix}: {step.label()}", "not sent", "every reference resolves", ok=False)],
                           setup_failed=isinstance(exc, SetupFailed))


async def run_path(session: Session, path: PathConfig, budget_end: float) -> PathOutcome:
    """The path's steps in order until one fails, each bounded by the path's own timeout and ``budget_end``."""
    own_end = time.monotonic() + path.timeout_s if path.timeout_s else budget_end
    end = min(own_end, budget_end)
    why = f"path {path.name} did not finish within {path.timeout_s:g} s" if own_end <= budget_end and path.timeout_s \
        else f"the check's time budget ran out (timeout_s {session.config.timeout_s:g} s or the run's deadline)"
    outputs: dict[str, StepOutput] = {}
    done: list[StepOutcome] = []
    for step in path.steps:
        prefix = f"{path.name}/{step.name}"
        try:
            async with asyncio.timeout(max(end - time.monotonic(), 0)):
                outcome = await run_step(session, step, prefix, outputs)
        except TimeoutError:
            outcome = StepOutcome(step.name, step.label(), [f"{step.label()}: {why}"],
                                  [Evidence(f"{prefix}: {step.label()}", "unfinished", "finishes in time", ok=False)])
        done.append(outcome)
        if not outcome.ok:
            break
        outputs[step.name] = outcome.output
    return PathOutcome(path, done)
