"""smoke: the golden paths still work — HTTP sequences and WebSocket exchanges against the new revision.

Paths run concurrently, each inside its own time bound (core.golden runs them); the check judges them:
the share of paths passing is the score, and a failing critical path fails the check.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field, model_validator

from core.golden import BUDGET_MARGIN_S, CLOSE_TIMEOUT_S, DEFAULT_MAX_BODY_BYTES, METHODS, PathConfig, PathOutcome, Session, run_path
from core.model import CheckContext, CheckResult, Status, Target, not_configured
from core.schema import CheckSettings
from core.web import no_url

NAME = "smoke"
CATEGORY = "Business"


class Config(CheckSettings):
    """Golden paths. The check is critical when any path is, unless ``critical`` is set explicitly."""

    paths: list[PathConfig] = Field(default_factory=list)
    auth: Literal["auto", "none", "id_token"] = "auto"
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)

    @model_validator(mode="after")
    def _paths(self) -> Config:
        names = [p.name for p in self.paths]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"expected unique path names, found {', '.join(duplicates)} more than once")
        too_long = [f"{p.name} ({p.timeout_s:g} s)" for p in self.paths if p.timeout_s and p.timeout_s > self.timeout_s]
        too_long += [f"{p.name}/{s.name or s.label()} ({s.timeout_s:g} s)" for p in self.paths for s in p.steps
                     if "timeout_s" in s.model_fields_set and s.timeout_s > (p.timeout_s or self.timeout_s)]
        if too_long:
            raise ValueError(f"expected each path's and step's timeout_s ≤ the enclosing timeout_s ({self.timeout_s:g} s), "
                             f"found {', '.join(too_long)}")
        if "critical" not in self.model_fields_set and any(p.critical for p in self.paths):
            # A failing critical path must be able to fail the verdict, which only critical checks do.
            self.critical = True
        return self


def _next_steps(session: Session, failed: list[PathOutcome]) -> list[str]:
    hints = []
    for p in failed:
        step = p.steps[-1]
        if step.label.startswith(METHODS):
            method, _, path = step.label.partition(" ")
            hints.append(f"curl -i -X {method} '{session.base}{path}'")
    return [*dict.fromkeys(hints), "read the revision's logs around the deploy time"]


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Run every golden path against ``target.url``; score = share of paths passing, a failing critical path fails."""
    if not config.paths:
        return not_configured("no golden paths configured")
    if not target.url:
        return no_url(target)
    margin = min(BUDGET_MARGIN_S + CLOSE_TIMEOUT_S, config.timeout_s / 4)  # room to close sockets and report
    budget_end = ctx.budget_end(config.timeout_s, margin)
    session = Session(target, config, ctx)
    paths = await asyncio.gather(*(run_path(session, p, budget_end) for p in config.paths))
    return session.scrubbed_result(_judge(session, paths))


def _judge(session: Session, paths: list[PathOutcome]) -> CheckResult:
    evidence = [e for p in paths for e in p.evidence()]
    passed = [p for p in paths if p.ok]
    failed = sorted((p for p in paths if not p.ok), key=lambda p: not p.config.critical)
    head = f"{len(passed)}/{len(paths)} golden paths pass"
    score = len(passed) / len(paths)
    if not failed:
        return CheckResult(Status.PASS, f"{head} ({', '.join(p.config.name for p in paths)})", evidence, 1.0)
    reasons = [f"{p.config.name}{' (critical)' if p.config.critical else ''}: {p.problem}" for p in failed]
    reasons += [f"{p.config.name}: {r}" for p in failed for s in p.steps for r in s.reasons if r != p.problem]
    more = f" (+{len(failed) - 1} more failing)" if len(failed) > 1 else ""
    status = Status.FAIL if failed[0].config.critical else Status.WARN
    if all(any(s.setup_failed for s in p.steps) for p in failed if p.config.critical or p is failed[0]):
        # Our own missing secret or token must not read as a broken deploy (nor suggest a rollback).
        status = Status.ERROR
    return CheckResult(status, f"{head}; {reasons[0]}{more}", evidence, score, reasons=reasons, next_steps=_next_steps(session, failed))
