"""Acting on a PASS: promote a revision deployed with ``--no-traffic`` in steps, and decide at each step's check
whether the rollout continues, holds or rolls back; pure, like ``report.rollback.plan`` (``act`` carries a plan out).

A promotion starts after the first validation's PASS (``on_pass: promote``): the revision gets ``steps[0]`` percent,
every other serving revision keeps its share of the rest. ``step_wait_s`` later the check of step 1 judges the window,
logs and metrics against that live split: a PASS moves on to the next step (after the last one the rollout is
complete), a FAIL puts back the split the service had before the rollout, a WARN or an INCONCLUSIVE holds the traffic
where it is for a person to decide. A split someone else changed meanwhile is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.model import Target, TrafficInfo
from report.rollback import MOVED, PROMOTE, ROLLBACK, Plan, Split, describe, entry, moved_back, same_split

STEP_CHECKS = ("window", "logs", "metrics")  # what a step judges again against the live split
FOLLOW_UP_CHECKS = ("logs", "metrics")  # what a follow-up judges over the revision's life so far
SEVERITY = {"PASS": 0, "WARN": 1, "FAIL": 2}  # INCONCLUSIVE is not ranked: not measuring is never "worse"


@dataclass(frozen=True)
class Rollout:
    """A promotion in steps, as the first report's promote action records it (``to_dict``) for every step to read."""

    steps: tuple[int, ...]
    base: Split  # the split before the rollout: what a FAIL puts back
    wait_s: float

    def to_dict(self, step: int) -> dict[str, Any]:
        return {"steps": list(self.steps), "base": [entry(t) for t in self.base], "wait_s": self.wait_s, "step": step}

    @classmethod
    def from_dict(cls, data: Any) -> Rollout | None:
        """The rollout a stored promote action recorded; None when it is not one (steps that are not increasing
        percents ending at 100, a base that does not route 100 %, a wait that is not a number)."""
        try:
            steps = tuple(data["steps"])
            base = tuple(TrafficInfo(revision=str(e.get("revision") or ""), percent=e["percent"],
                                     tag=str(e.get("tag") or ""), latest=e.get("type") == "LATEST") for e in data["base"])
            wait_s = data["wait_s"]
        except (KeyError, TypeError, AttributeError):
            return None
        percents = [*steps, *(t.percent for t in base)]
        if any(isinstance(n, bool) or not isinstance(n, int) for n in percents) or sum(t.percent for t in base) != 100:
            return None
        if not steps or list(steps) != sorted(set(steps)) or steps[0] < 1 or steps[-1] != 100:
            return None
        if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or wait_s < 0:
            return None
        return cls(steps, base, float(wait_s))


def promoted(base: Split, new: str, percent: int, latest_ready: str = "") -> Split:
    """``base`` with ``new`` serving ``percent``; the other serving entries share the rest in their proportions.

    Shares are whole percents: each entry gets its proportional share rounded down, and the percents left over go
    one each to the entries with the largest remainders (the earlier entry on a tie). ``new``'s first entry by name
    (its tag's) takes the percent, or a new entry at the end does; an entry left at 0 % is kept only when it has a tag.
    """
    rest = 100 - percent
    serving = [i for i, t in enumerate(base) if t.percent > 0 and t.serves(latest_ready) != new]
    total = sum(base[i].percent for i in serving)
    shares = {i: base[i].percent * rest // total for i in serving}  # no entry serves: nothing divides by 0
    left = rest - sum(shares.values())
    for i in sorted(serving, key=lambda i: -(base[i].percent * rest % total))[:left]:
        shares[i] += 1
    out: list[TrafficInfo] = []
    placed = False
    for i, t in enumerate(base):
        if not placed and t.revision == new and not t.latest:
            out.append(TrafficInfo(revision=new, percent=percent, tag=t.tag))
            placed = True
            continue
        share = shares.get(i, 0)
        if share or t.tag:
            out.append(TrafficInfo(revision="" if t.latest else t.revision, percent=share, tag=t.tag, latest=t.latest))
    if not placed:
        out.append(TrafficInfo(revision=new, percent=percent))
    return tuple(out)


def promote_plan(verdict: str, target: Target, on_pass: str, steps: list[int] | tuple[int, ...]) -> Plan:
    """Whether the first validation's verdict starts a promotion of ``target``'s revision, and its first move."""
    if on_pass != PROMOTE:
        return Plan(False, f"on_pass is {on_pass!r} for {target.service}: postdeploy moves no traffic after a PASS",
                    kind=PROMOTE)
    new, service = target.revision, target.service_info
    base = Plan(True, kind=PROMOTE, revision=new, previous=target.previous_revision,
                before=service.traffic if service else ())
    if verdict != "PASS":
        return replace(base, reason=f"the verdict is {verdict}: only a PASS promotes")
    if target.problem or not new or service is None:
        return replace(base, reason="the deployed revision or its service's traffic is unknown: nothing to promote")
    serving = service.percent_for(new)
    if serving:
        return replace(base, reason=f"{new} already serves {serving} %: postdeploy promotes only a revision deployed "
                                    "with --no-traffic")
    return _to_step(base, service.traffic, new, 0, steps[0], service.latest_ready_revision)


def _to_step(base: Plan, split: Split, new: str, now: int, percent: int, latest_ready: str) -> Plan:
    after = promoted(split, new, percent, latest_ready)
    return replace(base, moved=percent - now, after=after, move=f"move {new} from {now} % to {percent} % of the traffic",
                   did=f"moved {new} from {now} % to {percent} %", ready=new)


def step_plan(verdict: str, target: Target, rollout: Rollout, step: int) -> Plan:
    """What the check of ``step`` (from 1) does about its verdict: the next move, the rollback, or why it holds.

    The live split is the one step ``step`` set, or the next step's when an earlier delivery of this same check
    already moved it (its report was lost before it was stored): the move is then "already done", never a change
    made by someone else.
    """
    new, service, steps = target.revision, target.service_info, rollout.steps
    percent = steps[step - 1]
    latest_ready = service.latest_ready_revision if service else ""
    expected = promoted(rollout.base, new, percent, latest_ready)
    moved_on = promoted(rollout.base, new, steps[step], latest_ready) if step < len(steps) else None
    live = service.traffic if service else ()
    now = percent if same_split(live, expected) else steps[step] if moved_on and same_split(live, moved_on) else None
    base = Plan(True, kind=PROMOTE, revision=new, previous=target.previous_revision, before=live, idle="held")
    if service is None or now is None:
        found = describe(live, latest_ready) if service else "unknown"
        return replace(base, before=expected,
                       reason=f"traffic is not what step {step} set ({describe(expected, latest_ready)}); it is "
                              f"{found}: changed outside the rollout, which stops here and changes nothing")
    if verdict == "FAIL":
        back_to = describe(rollout.base, latest_ready)
        ready = max(rollout.base, key=lambda t: t.percent).serves(latest_ready)  # what most traffic goes back to
        return replace(base, kind=ROLLBACK, moved=now, after=rollout.base, ready=ready,
                       move=f"move {new}'s {now} % back to the split before the rollout ({back_to})",
                       did=f"moved {new}'s {now} % back to the split before the rollout")
    if verdict != "PASS":
        return replace(base, reason=f"the verdict at step {step} ({percent} %) is {verdict}: the rollout holds here "
                                    f"for a person to decide; {describe(live, latest_ready)}")
    if step == len(steps):
        return replace(base, idle="done", reason=f"rollout complete: {new} serves {percent} % after {step} "
                                                 f"step{'s' if step > 1 else ''} that passed")
    return _to_step(replace(base, before=expected), rollout.base, new, percent, steps[step], latest_ready)


def resumed_plan(target: Target, rollout: Rollout) -> Plan:
    """The first move of a promotion an earlier delivery of this validation recorded (``rollout``) and may have made:
    from the split it recorded to step 1's; ``act`` finds it "already done" when that delivery got that far."""
    service = target.service_info
    latest_ready = service.latest_ready_revision if service else ""
    base = Plan(True, kind=PROMOTE, revision=target.revision, previous=target.previous_revision, before=rollout.base)
    return _to_step(base, rollout.base, target.revision, 0, rollout.steps[0], latest_ready)


def worse(verdict: str, than: str) -> bool:
    """Whether ``verdict`` is worse than ``than`` (PASS < WARN < FAIL); an INCONCLUSIVE on either side never is."""
    return verdict in SEVERITY and than in SEVERITY and SEVERITY[verdict] > SEVERITY[than]


def why_quiet(report: dict[str, Any], follow_up_notify: str) -> str:
    """Why the report's Slack message does not go out ("not posted: …"); "" when it does.

    Quiet: a step that passed and moved the rollout on (its report is stored and its verdict event published), and a
    follow-up whose verdict is no worse than the first validation's unless ``follow_up_notify`` is ``always``. Any
    attempt to move traffic that did not simply succeed, and every other report, is posted.
    """
    rerun = report.get("rerun") or {}
    actions = report.get("actions") or []
    if any(a.get("kind") in (PROMOTE, ROLLBACK) and a.get("outcome") in ("refused", "failed") for a in actions):
        return ""
    kind, verdict = rerun.get("kind"), report["verdict"]
    if kind == "step" and verdict == "PASS" and any(a.get("kind") == PROMOTE and a.get("outcome") in MOVED
                                                    and a.get("planned") for a in actions):
        return "not posted: the step passed and the rollout moved on"
    if kind == "follow-up" and follow_up_notify != "always":
        before = str((rerun.get("of") or {}).get("verdict", ""))
        if not worse(verdict, before) and not moved_back(actions):
            return f"not posted: {verdict} is no worse than the first validation's {before or '?'} (follow_up_notify: worse)"
    return ""
