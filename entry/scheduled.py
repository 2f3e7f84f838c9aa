"""The HTTP function Cloud Tasks calls: the check of a promotion's step, or a follow-up, of a stored validation.

POST {"kind": "step", "build_id", "service", "step": N} judges window, logs and metrics against the live split and
continues, holds or rolls back the rollout; POST {"kind": "follow-up", "build_id", "service", "after": "24h"} judges
logs and metrics over the revision's life so far. Each files its report beside the first validation's
(``{service}/{build_id}/step-N/``, ``…/follow-up-24h/``) and runs once however often Cloud Tasks delivers it.

Cloud Tasks retries every answer but a 2xx, within the queue's attempts: a request that can never work (a malformed
body, a stored report that cannot be judged again) is answered 200 ``{"dropped": …}`` and logged, so it is not retried;
a first report not stored yet, another delivery at work and an outage answer 503 and come again.
Light imports only at the top: `main` imports this module.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.errors import Busy, ConfigError, PostdeployError, Transient
from entry.rerun import Answer, Refused, body, checked, done_before, plan, stored_report

if TYPE_CHECKING:
    from flask import Request

KINDS = ("step", "follow-up")
MAX_STEPS = 100  # steps are increasing percents: at most 100 of them
SCHEDULED_EXPECTED = ('a JSON object {"kind": "step", "build_id", "service", "step": N} or '
                      '{"kind": "follow-up", "build_id", "service", "after": "1h"}')
FIELDS = ("kind", "build_id", "service", "step", "after")


def check_id(asked: dict[str, Any]) -> str:
    """``step-N`` or ``follow-up-{after}``: the folder of the scheduled check's report; Refused (400) when neither."""
    kind = asked.get("kind")
    if kind == "step":
        step = asked.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= MAX_STEPS:
            raise Refused(400, "step", f"a whole number from 1 to {MAX_STEPS}", json.dumps(step))
        return f"step-{step}"
    if kind == "follow-up":
        from core.config import duration_s

        after = asked.get("after")
        if not isinstance(after, str) or duration_s(after) is None:
            raise Refused(400, "after", "a delay such as 1h or 24h", json.dumps(after))
        return f"follow-up-{after}"
    raise Refused(400, "kind", " or ".join(map(json.dumps, KINDS)), json.dumps(kind))


def answer(request: Request) -> Answer:
    """200 when the check ran (or ran before, or has nothing to check, or can never run: ``dropped``); 503 with
    Retry-After while the first report is not stored yet, another delivery is at work or an outage lasts; 500 for
    another fault (Cloud Tasks retries those within the queue's attempts). An invalid config runs the check on the
    defaults, INCONCLUSIVE and saying why: a step then holds, and the report and Slack say so."""
    from core.logs import log

    try:
        asked = body(request, FIELDS, SCHEDULED_EXPECTED)
        check = check_id(asked)
        checked(asked.get("build_id"), asked.get("service"))
        return _run(asked["build_id"], asked["service"], check)
    except Refused as exc:
        if exc.status == 404:  # the first validation may still be storing its report: come again
            log("INFO", f"scheduled check waits for its report: {exc}")
            return {"error": str(exc)}, 503, {"Retry-After": "60"}
        log("ERROR", f"scheduled check dropped ({exc.status}): {exc}")
        return {"dropped": str(exc), **exc.to_json()}, 200
    except (Busy, Transient) as exc:
        log("INFO" if isinstance(exc, Busy) else "WARNING", f"scheduled check comes again: {exc}")
        return {"error": str(exc)}, 503, {"Retry-After": "60"}
    except PostdeployError as exc:
        log("ERROR", f"scheduled check failed: {exc}")
        return {"error": str(exc)}, 500


def _run(build_id: str, service: str, check: str) -> Answer:
    from core.config import MAX_FOLLOW_UP_S
    from core.pipeline import run_rerun
    from entry.function import cached_adapters
    from report.publish import folder
    from report.rollout import FOLLOW_UP_CHECKS, STEP_CHECKS

    adapters = cached_adapters()
    store = adapters.get("store")
    original = stored_report(store, service, build_id)
    build, intent, rerun = plan(original, check, store.link(f"{folder(service, build_id)}/report.html"))
    if check.startswith("step-"):
        step = int(check.removeprefix("step-"))
        rollout, waiting = _rollout(store, original, service, build_id, step)
        if waiting:
            from core.logs import log

            log("WARNING", f"{check} of {service} build {build_id}: nothing to check: {waiting}", service=service)
            return {"status": "nothing to check", "reason": waiting, "check": check}, 200
        # Logs and metrics over the revision's whole life up to now: a step's own traffic is in it, however late.
        rerun = replace(rerun, kind="step", only=STEP_CHECKS, step=step, rollout=rollout, look_back_s=float(MAX_FOLLOW_UP_S))
    else:
        rerun = replace(rerun, kind="follow-up", only=FOLLOW_UP_CHECKS, look_back_s=float(MAX_FOLLOW_UP_S))
    build = replace(build, status=rerun.kind.upper())  # the report's build line says STEP or FOLLOW-UP, not RERUN
    settings, problem = _settings(service)
    validation = run_rerun(build, intent, settings, adapters, rerun, problem)
    if validation is None:  # Cloud Tasks delivered it again: the answer of the run that did it
        earlier = done_before(store, service, build_id, check)
        if earlier is None:
            raise Refused(500, "build_id", f"the report of {check}, which is marked done", "no report")
        return {**earlier, "check": check}, 200
    report = validation.report
    return {"verdict": report["verdict"], "score": report["score"], "report": validation.links["report.html"],
            "check": check, "actions": [f"{a['kind']}: {a['outcome']}" for a in report["actions"]]}, 200


def _settings(service: str) -> tuple[Any, str]:
    """The service's settings, or with an invalid config the defaults and why: the check runs and says so
    (INCONCLUSIVE, so a step holds) instead of failing until Cloud Tasks gives up on it."""
    from core.config import Config
    from entry.function import cached_config

    try:
        return cached_config().for_service(service), ""
    except ConfigError as exc:
        return Config.default().for_service(service), f"postdeploy config {exc.source} is invalid: {'; '.join(exc.problems)}"


def _rollout(store: Any, original: dict[str, Any], service: str, build_id: str, step: int) -> tuple[dict[str, Any], str]:
    """The rollout the first report started and "" when step ``step``'s move was made; else why there is nothing to
    check. Refused (422) when the first report started no rollout this step belongs to, (404) while the report of
    the step before is not stored yet."""
    from report.publish import folder
    from report.rollback import MOVED
    from report.rollout import Rollout

    started = _promotion(original, 1)
    rollout = Rollout.from_dict(started.get("rollout")) if started else None
    if started is None or rollout is None:
        raise Refused(422, "build_id", f"a report of build {build_id} that started a promotion in steps",
                      "no promote action with a rollout")
    if step > len(rollout.steps):
        raise Refused(422, "step", f"a step of that rollout, 1 to {len(rollout.steps)}", str(step))
    parent = original
    if step > 1:
        name = f"{folder(service, build_id, f'step-{step - 1}')}/report.json"
        text = store.read(name)
        if text is None:
            raise Refused(404, "step", f"the report of step {step - 1} at {store.location(name)}", "nothing there yet")
        try:
            parent = json.loads(text)
        except ValueError as exc:
            raise Refused(422, "step", f"the JSON report of step {step - 1} at {store.location(name)}",
                          f"text that is not JSON ({exc})") from None
    move = _promotion(parent, step)
    if move is None or move.get("outcome") not in MOVED:
        what = f"{move['outcome']}: {move['detail']}" if move else "no move to it was planned"
        return started["rollout"], f"the move to step {step} was not made ({what})"
    return started["rollout"], ""


def _promotion(report: dict[str, Any], step: int) -> dict[str, Any] | None:
    """The promote action of ``report`` that moved (or meant to move) the traffic to ``step``."""
    for action in report.get("actions") or []:
        rollout = action.get("rollout") if isinstance(action, dict) else None
        if action.get("kind") == "promote" and isinstance(rollout, dict) and rollout.get("step") == step:
            return dict(action)
    return None
