"""smoke: the golden paths still work — HTTP sequences and WebSocket exchanges against the new revision.

Paths run concurrently, each inside its own time bound (probe.golden runs them); the check judges them:
the share of paths passing is the score, and a failing critical path fails the check.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field, model_validator

from core.model import CheckContext, CheckResult, NotMeasured, Status, Target, not_configured
from core.schema import CheckSettings
from probe.golden.paths import DEFAULT_MAX_BODY_BYTES, METHODS, PathConfig
from probe.golden.run import BUDGET_MARGIN_S, run_path
from probe.golden.session import PathOutcome, Session
from probe.golden.websocket_step import CLOSE_TIMEOUT_S
from probe.web import no_url

NAME = "smoke"
CATEGORY = "Business"


class Config(CheckSettings):
    """Golden paths. A failing path fails the check; a failing path marked critical (or ``critical`` on the check) fails the deploy."""

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


SETUP_FIX = ("let postdeploy send the path: set the variable or grant roles/secretmanager.secretAccessor on the secret it "
             "names, or credentials that can mint an ID token and roles/run.invoker")


def _judge(session: Session, paths: list[PathOutcome]) -> CheckResult:
    """Every failing path fails the check; ``critical`` is set when a critical path failed (or could not be sent)."""
    evidence = [e for p in paths for e in p.evidence()]
    passed = [p for p in paths if p.ok]
    failed = sorted((p for p in paths if not p.ok), key=lambda p: not p.config.critical)
    head = f"{len(passed)}/{len(paths)} golden paths pass"
    if not failed:
        return CheckResult(Status.PASS, f"{head} ({', '.join(p.config.name for p in paths)})", evidence, 1.0)
    # Our own missing secret or token must not read as a broken deploy (nor suggest a rollback).
    unsent = [p for p in failed if any(s.setup_failed for s in p.steps)]
    judged = [p for p in failed if p not in unsent]
    not_measured = [NotMeasured(f"golden path {p.config.name}", p.problem, SETUP_FIX) for p in unsent]
    reasons = [f"{p.config.name}{' (critical)' if p.config.critical else ''}: {p.problem}" for p in [*judged, *unsent]]
    reasons += [f"{p.config.name}: {r}" for p in failed for s in p.steps for r in s.reasons if r != p.problem]
    steps = _next_steps(session, judged)
    critical_unsent = any(p.config.critical for p in unsent)
    if not judged or (critical_unsent and not any(p.config.critical for p in judged)):
        return CheckResult(Status.ERROR, f"{head}; not measured: {reasons[len(judged)]}", evidence, reasons=reasons,
                           next_steps=steps, critical=True if critical_unsent else None, not_measured=not_measured)
    more = f" (+{len(judged) - 1} more failing)" if len(judged) > 1 else ""
    score = len(passed) / (len(paths) - len(unsent))
    return CheckResult(Status.FAIL, f"{head}; {reasons[0]}{more}", evidence, score, reasons=reasons, next_steps=steps,
                       critical=True if any(p.config.critical for p in judged) else None, not_measured=not_measured)
