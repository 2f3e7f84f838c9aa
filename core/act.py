"""What postdeploy does about a verdict, and what it schedules: a rollback on FAIL, a promotion in steps on PASS,
each step's decision, and follow-ups; every attempt is an entry of the report's ``actions`` with its outcome.

Every move of traffic toward a promoted revision is watched: its check is scheduled (Cloud Tasks) before the move is
made, so a Tasks outage leaves the traffic where it was instead of unwatched. A redelivered validation or step
schedules the same task id again ("already done") and finds the traffic already moved ("already done"): nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.config import Settings, duration_s
from core.errors import PostdeployError
from core.logs import log
from core.model import Build, Target
from report.publish import folder
from report.rollback import MOVED, PROMOTE, Action, Plan, act, moved_back, plan
from report.rollout import Rollout, promote_plan, resumed_plan, step_plan
from sources.tasks import QUEUE_ENV as TASKS_ENV
from sources.tasks import SCHEDULE_TIMEOUT_S, CloudTasksScheduler, TaskSpec, task_id

SCHEDULE = "schedule"


class Services(Protocol):
    """What acting needs of the pipeline's adapters: ``revisions``, ``scheduler`` and ``store`` by name."""

    def get(self, name: str) -> Any: ...


async def act_on_verdict(verdict: str, target: Target, settings: Settings, adapters: Services, build: Build,
                         deadline: float, storage_problem: str = "") -> list[dict[str, Any]]:
    """What the service opted into doing about its verdict, done, with the outcome of each (the report's actions).

    The first validation of a deploy may roll back, start a promotion and schedule follow-ups; a step of a
    promotion continues, holds or rolls back; a follow-up and an on-demand rerun only roll back (when opted in).
    ``storage_problem``: the report cannot be stored, so nothing is scheduled that would read it (no promotion,
    no follow-up); a rollback needs no report and still happens.
    """
    rerun = target.rerun
    if rerun is not None and rerun.kind == "step":
        return await _step(verdict, target, adapters, build, deadline)
    actions = await _rollback(verdict, target, settings, adapters, deadline)
    if rerun is not None:
        return actions
    if storage_problem:
        return actions + _unscheduled(settings, storage_problem)
    actions += await _promote(verdict, target, settings, adapters, build, deadline)
    if moved_back(actions):
        return actions  # traffic went back: nothing left to look at later
    return actions + await _follow_ups(target, settings, adapters, build, deadline)


def _unscheduled(settings: Settings, storage_problem: str) -> list[dict[str, Any]]:
    """What is not started when the report cannot be stored: every later check reads it, so none could run."""
    why = f"the report cannot be stored ({storage_problem}), and every later check starts from it"
    out = []
    if settings.on_pass == PROMOTE:
        out.append(Action(PROMOTE, "skipped", f"no promotion: {why}; traffic unchanged").to_dict())
    if settings.follow_up:
        out.append(_no_follow_ups(settings, why))
    return out


async def _rollback(verdict: str, target: Target, settings: Settings, adapters: Services,
                    deadline: float) -> list[dict[str, Any]]:
    decided = plan(verdict, target, settings.on_fail)
    if not decided.wanted:
        return []
    return [(await _carry_out(decided, target, adapters, deadline)).to_dict()]


async def _carry_out(decided: Plan, target: Target, adapters: Services, deadline: float) -> Action:
    """``act`` on a plan, reading the traffic source only when something moves; never raises for a lost client."""
    try:
        source = adapters.get("revisions") if decided.acts else None
    except Exception as exc:  # no client, no move: said in the report, never a lost report
        return Action(decided.kind, "failed", f"could not reach the Cloud Run Admin API to {decided.move}: "
                                              f"{type(exc).__name__}: {exc}", before=decided.before,
                      after=decided.before)
    action = await act(decided, target, source, deadline)
    severity = "INFO" if action.outcome in (*MOVED, "skipped", "held") else "ERROR"
    log(severity, f"{action.kind} {action.outcome}: {action.detail}", service=target.service)
    return action


async def _promote(verdict: str, target: Target, settings: Settings, adapters: Services, build: Build,
                   deadline: float) -> list[dict[str, Any]]:
    """Start a promotion, recorded before anything moves: a redelivery (a report lost after the move) resumes the
    recorded one, from the split it recorded, instead of finding the revision serving and refusing."""
    decided = promote_plan(verdict, target, settings.on_pass, settings.steps)
    if not decided.wanted:
        return []
    record = f"{folder(target.service, build.id)}/rollout.json"
    try:
        earlier = await asyncio.to_thread(_recorded, adapters.get("store"), record)
    except PostdeployError as exc:
        return [decided.unmoved("failed", f"could not read whether an earlier delivery started the promotion ({exc}): "
                                          "traffic unchanged", exc.fix).to_dict()]
    if earlier is not None and verdict != "FAIL":  # a FAIL never carries a promotion on
        return await _move(resumed_plan(target, earlier), earlier, 1, target, adapters, build, deadline)
    rollout = Rollout(tuple(settings.steps), decided.before, settings.step_wait_s)
    return await _move(decided, rollout, 1, target, adapters, build, deadline, record)


def _recorded(store: Any, name: str) -> Rollout | None:
    """The promotion an earlier delivery recorded at ``name``; None when there is none (or none readable)."""
    text = store.read(name)
    try:
        return Rollout.from_dict(json.loads(text)) if text else None
    except ValueError:
        return None


async def _step(verdict: str, target: Target, adapters: Services, build: Build, deadline: float) -> list[dict[str, Any]]:
    """The decision of a step's check: the next move (its check scheduled first), the rollback, or a hold."""
    rerun = target.rerun
    assert rerun is not None and rerun.rollout is not None
    rollout = Rollout.from_dict(rerun.rollout)
    if rollout is None:  # entry.scheduled only makes a step of a readable rollout
        raise ValueError(f"step {rerun.step} of {target.service} has no readable rollout")
    decided = step_plan(verdict, target, rollout, rerun.step)
    if decided.kind == PROMOTE and decided.acts:
        return await _move(decided, rollout, rerun.step + 1, target, adapters, build, deadline)
    action = (await _carry_out(decided, target, adapters, deadline)).to_dict()
    return [{**action, "rollout": rollout.to_dict(rerun.step)}] if decided.kind == PROMOTE else [action]


async def _move(decided: Plan, rollout: Rollout, step: int, target: Target, adapters: Services, build: Build,
                deadline: float, record: str = "") -> list[dict[str, Any]]:
    """A promotion's move to the traffic of ``step``, its check scheduled first; without Tasks only an all-at-once
    promotion moves (unwatched, and said so). ``record``: where the rollout is written, create-only, just before the
    first move, so a redelivery resumes it."""
    recorded = {"rollout": rollout.to_dict(step)}
    if not decided.acts:
        return [{**(await _carry_out(decided, target, adapters, deadline)).to_dict(), **recorded}]
    scheduler, why = _scheduler(adapters)
    if scheduler is None:
        if len(rollout.steps) > 1:
            return [{**decided.unmoved("skipped", f"a promotion in steps needs Cloud Tasks to schedule each step's "
                                                  f"check, and {why}: traffic unchanged", _TASKS_FIX).to_dict(), **recorded}]
        if (failed := await _record(record, rollout, decided, adapters)) is not None:
            return [{**failed, **recorded}]
        moved = await _carry_out(decided, target, adapters, deadline)
        return [{**moved.to_dict(), **recorded},
                _skipped(f"no check after the promotion: {why}", f"step-{step}")]
    at = datetime.now(UTC) + timedelta(seconds=rollout.wait_s)
    scheduled = await _schedule(scheduler, target, build, f"step-{step}", {"kind": "step", "step": step}, at,
                                f"the check of step {step} ({decided.after_percent(target.revision)} %)", adapters,
                                deadline)
    if scheduled["outcome"] not in MOVED:
        return [{**decided.unmoved("failed", f"traffic unchanged: nothing moves unwatched, and {scheduled['detail']}",
                                   scheduled.get("fix", "")).to_dict(), **recorded}, scheduled]
    if (failed := await _record(record, rollout, decided, adapters)) is not None:
        return [{**failed, **recorded}, scheduled]
    moved = await _carry_out(decided, target, adapters, deadline)
    return [{**moved.to_dict(), **recorded}, scheduled]


async def _record(name: str, rollout: Rollout, decided: Plan, adapters: Services) -> dict[str, Any] | None:
    """Write the rollout at ``name`` (create-only: a resumed one is already there) before the first move; the
    failed action when it cannot be written, so nothing moves that a redelivery could not resume."""
    if not name:
        return None
    try:
        await asyncio.to_thread(adapters.get("store").claim, name, json.dumps(rollout.to_dict(1)))
    except PostdeployError as exc:
        return decided.unmoved("failed", f"could not record the promotion before moving traffic ({exc}): traffic "
                                         "unchanged", exc.fix).to_dict()
    return None


async def _follow_ups(target: Target, settings: Settings, adapters: Services, build: Build,
                      deadline: float) -> list[dict[str, Any]]:
    if not settings.follow_up or target.problem or not target.revision:
        return []
    scheduler, why = _scheduler(adapters)
    if scheduler is None:
        return [_no_follow_ups(settings, why)]
    now = datetime.now(UTC)
    return [await _schedule(scheduler, target, build, f"follow-up-{after}", {"kind": "follow-up", "after": after},
                            now + timedelta(seconds=duration_s(after) or 0), f"the follow-up after {after}", adapters,
                            deadline) for after in settings.follow_up]


_TASKS_FIX = f"deploy with deploy/deploy.sh, which creates the queue and sets {TASKS_ENV} when a service uses " \
             "on_pass: promote or follow_up"


def _scheduler(adapters: Services) -> tuple[CloudTasksScheduler | None, str]:
    """The Cloud Tasks scheduler, or None and why there is none."""
    try:
        scheduler = adapters.get("scheduler")
    except PostdeployError as exc:
        return None, f"the Cloud Tasks settings are invalid ({exc})"
    return scheduler, "" if scheduler is not None else f"{TASKS_ENV} is not set"


def _no_follow_ups(settings: Settings, why: str) -> dict[str, Any]:
    return _skipped(f"follow-ups at {', '.join(settings.follow_up)} not scheduled: {why}", "follow-up")


def _skipped(detail: str, check: str) -> dict[str, Any]:
    return {"kind": SCHEDULE, "outcome": "skipped", "detail": detail, "check": check, "fix": _TASKS_FIX}


async def _schedule(scheduler: CloudTasksScheduler, target: Target, build: Build, check: str, body: dict[str, Any],
                    at: datetime, what: str, adapters: Services, deadline: float) -> dict[str, Any]:
    """One check scheduled as a Cloud Task named after (service, build, check): a second time is "already done"."""

    report = adapters.get("store").link(f"{folder(target.service, build.id, check)}/report.html")
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = {"kind": SCHEDULE, "check": check, "at": when, "report": report, "fix": ""}
    task = TaskSpec(task_id(target.service, build.id, check), {**body, "build_id": build.id, "service": target.service},
                    at)
    try:
        said = await asyncio.to_thread(scheduler.schedule, task,
                                       max(1.0, min(SCHEDULE_TIMEOUT_S, deadline - time.monotonic())))
    except PostdeployError as exc:
        log("ERROR", f"could not schedule {what}: {exc}", build_id=build.id, service=target.service)
        return {**entry, "outcome": "failed", "detail": f"could not schedule {what} at {when}: {exc}", "fix": exc.fix}
    again = said.startswith("already")
    return {**entry, "outcome": "already done" if again else "done",
            "detail": f"{what} {'was already' if again else 'is'} scheduled at {when}; its report: {report}"}
