"""Acting on a FAIL: the pure decision whether and how to roll a service back (``plan``), and the one traffic update
that carries out a planned move, a rollback or a promotion step (``act``), reported as an ``Action`` whatever happens.

A rollback moves every percent the new revision serves back to the revision that served before it; other revisions'
percents and every tag stay as they are. It happens only when the service opted in (``on_fail: rollback``), the
verdict is FAIL (never WARN or INCONCLUSIVE: what postdeploy could not measure is never a reason), the new revision
serves traffic and the previous revision is known and Ready. ``act`` sends at most one update, conditional on the
etag of the read just before it, so it never overwrites a newer deploy; a redelivery that finds the planned split
already in place sends nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from core.errors import AccessDenied, ConcurrentModification, PostdeployError, TargetNotFound, Transient
from core.model import RevisionInfo, Target, TrafficInfo
from sources.cloud_run import TrafficState

ROLLBACK = "rollback"
PROMOTE = "promote"
DONE = {ROLLBACK: "rolled back", PROMOTE: "promoted"}  # what a move of each kind did, for its detail
# "held": a promotion stops where it is (a WARN, an INCONCLUSIVE, a split changed by someone else).
ActionOutcome = Literal["done", "already done", "skipped", "held", "refused", "failed"]
MOVED: tuple[ActionOutcome, ...] = ("done", "already done")  # the traffic is where the move meant it to be
Split = tuple[TrafficInfo, ...]


class TrafficSource(Protocol):
    """What ``act`` needs of the Cloud Run Admin API (``sources.cloud_run.RunRevisionSource``)."""

    def get_traffic(self, project: str, region: str, name: str, timeout_s: float = ...) -> TrafficState: ...

    def get_revision(self, project: str, region: str, service: str, revision: str,
                     timeout_s: float = ...) -> RevisionInfo: ...

    def update_traffic(self, project: str, region: str, name: str, traffic: Split, *, etag: str, timeout_s: float,
                       poll_s: float = ...) -> TrafficState: ...


@dataclass(frozen=True)
class Plan:
    """What to do about a verdict: ``after`` is the split to set, or empty with ``reason`` saying why nothing is done.

    ``wanted`` is False when the service did not opt in (``on_fail`` is not ``rollback``): nothing to report then.
    ``ready`` must be a Ready revision when the move is made (a rollback's previous revision, a promotion's new one).
    """

    wanted: bool
    reason: str = ""
    revision: str = ""
    previous: str = ""
    moved: int = 0  # percent taken from the new revision (a rollback) or given to it (a promotion)
    before: Split = ()
    after: Split = ()
    kind: str = ROLLBACK
    move: str = ""  # what the update is to do, "move 100 % from A back to B"; said when it cannot be done
    did: str = ""  # what it did, "moved 100 % from A to B"
    ready: str = ""
    idle: ActionOutcome = "skipped"  # the outcome when nothing is to move: a step "held", a finished rollout "done"

    @property
    def acts(self) -> bool:
        return bool(self.after)

    def unmoved(self, outcome: ActionOutcome, detail: str, fix: str = "") -> Action:
        """The action when nothing moved: the traffic as it was, and the split that was meant."""
        return Action(self.kind, outcome, detail, before=self.before, after=self.before, planned=self.after, fix=fix)

    def after_percent(self, revision: str) -> int:
        """The percent ``revision`` serves by name once the plan is carried out."""
        return sum(t.percent for t in self.after if t.revision == revision and not t.latest)


@dataclass(frozen=True)
class Action:
    """What postdeploy did after the verdict and whether it worked; ``to_dict`` is its entry in the report's ``actions``."""

    kind: str
    outcome: ActionOutcome
    detail: str  # one sentence: what was done or why not, naming revisions and percents
    before: Split = ()  # the split the service had when postdeploy looked
    after: Split = ()  # the split it has afterwards, as far as postdeploy knows
    planned: Split = ()  # the split postdeploy meant to set
    fix: str = ""  # what would let postdeploy do it next time (a refused permission)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "outcome": self.outcome, "detail": self.detail,
                "before": [entry(t) for t in self.before], "after": [entry(t) for t in self.after],
                "planned": [entry(t) for t in self.planned], "fix": self.fix}


def moved_back(actions: list[dict[str, Any]] | None) -> bool:
    """Whether the report's ``actions`` rolled the traffic back (or found it already rolled back)."""
    return any(a.get("kind") == ROLLBACK and a.get("outcome") in MOVED for a in actions or [])


def entry(t: TrafficInfo) -> dict[str, Any]:
    """One traffic entry as the report shows it."""
    return {"type": "LATEST" if t.latest else "REVISION", "revision": t.revision, "percent": t.percent, "tag": t.tag}


def describe(split: Split, latest_ready: str = "") -> str:
    """``orders-00041-old 90 %, LATEST (orders-00042-new) 10 %, orders-00042-new 0 % (tag canary)``."""
    parts = []
    for t in split:
        resolved = t.revision or latest_ready
        name = (f"LATEST ({resolved})" if resolved else "LATEST") if t.latest else t.revision
        parts.append(f"{name} {t.percent} %" + (f" (tag {t.tag})" if t.tag else ""))
    return ", ".join(parts) or "no traffic entries"


def same_split(a: Split, b: Split) -> bool:
    """The same routing: entries compared as a multiset; a LATEST entry's resolved revision and URLs are ignored."""
    def key(t: TrafficInfo) -> tuple[bool, str, int, str]:
        return t.latest, "" if t.latest else t.revision, t.percent, t.tag
    return sorted(map(key, a)) == sorted(map(key, b))


def rolled_back(traffic: Split, new: str, previous: str, latest_ready: str) -> tuple[Split, int]:
    """The split with every percent ``new`` serves moved to ``previous``, and how many percent moved.

    An entry for ``new`` (by name, or LATEST while ``new`` is the latest ready revision) loses its percent; it stays
    at 0 % when it carries a tag, pinned to ``new`` by name so the tag URL keeps reaching the same revision. The
    percent goes to ``previous``'s untagged entry, or a new one at the end. Other entries are kept unchanged.
    """
    out: list[TrafficInfo] = []
    moved = 0
    for t in traffic:
        if t.serves(latest_ready) != new:
            out.append(TrafficInfo(revision="" if t.latest else t.revision, percent=t.percent, tag=t.tag,
                                   latest=t.latest))
            continue
        moved += t.percent
        if t.tag:
            out.append(TrafficInfo(revision=new, percent=0, tag=t.tag))
    if moved:
        at = next((i for i, t in enumerate(out) if t.revision == previous and not t.latest and not t.tag), None)
        if at is None:
            out.append(TrafficInfo(revision=previous, percent=moved))
        else:
            out[at] = TrafficInfo(revision=previous, percent=out[at].percent + moved)
    return tuple(out), moved


def not_ready(revision: RevisionInfo, role: str = "previous", move: str = "rollback") -> str:
    ready = revision.ready
    why = f": {ready.message}" if ready is not None and ready.message else ""
    return f"{role} revision {revision.name} is not Ready{why}; no {move} to a revision that cannot serve"


def plan(verdict: str, target: Target, on_fail: str, *, previous: RevisionInfo | None = None) -> Plan:
    """Whether to roll ``target``'s service back after ``verdict``, and to which split; pure.

    ``previous`` is the previous revision when the caller has read it (its Ready condition is checked); ``act``
    reads it again before it writes anything.
    """
    if on_fail != ROLLBACK:
        return Plan(False, f"on_fail is {on_fail!r} for {target.service}: postdeploy reports and changes nothing")
    new, prev, service = target.revision, target.previous_revision, target.service_info
    base = Plan(True, revision=new, previous=prev, before=service.traffic if service else ())
    if verdict != "FAIL":
        return _no(base, f"the verdict is {verdict}: only a FAIL rolls back")
    if target.problem or not new or service is None:
        return _no(base, "the deployed revision or its service's traffic is unknown: nothing to roll back")
    serving = service.percent_for(new)
    if serving == 0:
        if target.intent is not None and target.intent.no_traffic:
            return _no(base, f"{new} was deployed with --no-traffic and serves no traffic: nothing to move back")
        if prev and service.percent_for(prev) == 100:
            return _no(base, f"already rolled back: {prev} serves 100 % and {new} none")
        return _no(base, f"{new} serves no traffic: nothing to move back")
    if not prev:
        return _no(base, f"no previous revision of {target.service} to roll back to: {new} is the first that served")
    if previous is not None and previous.name == prev and not previous.is_ready:
        return _no(base, not_ready(previous))
    after, moved = rolled_back(service.traffic, new, prev, service.latest_ready_revision)
    return replace(base, moved=moved, after=after, ready=prev, move=f"move {moved} % from {new} back to {prev}",
                   did=f"moved {moved} % from {new} to {prev}")


def _no(base: Plan, reason: str) -> Plan:
    """``base`` (the opted-in plan with nothing to set) with the reason nothing is done."""
    return replace(base, reason=reason)


async def act(plan: Plan, target: Target, source: TrafficSource | None, deadline: float, *, poll_s: float = 1.0) -> Action:
    """Carry out ``plan`` with at most one traffic update, finished by ``deadline`` (a ``time.monotonic()`` value).

    "already done" when the service already has the planned split (a redelivery after a rollback that worked: no
    second update); "refused" when the service changed since the validation read it (a newer deploy is never
    overwritten) or the API refused the update (a permission, a concurrent change: one re-read, no second update);
    "failed" when the API failed or the deadline came first. Never raises for a PostdeployError.
    """
    if not plan.acts:  # no source needed: nothing is read or written
        return plan.unmoved(plan.idle, plan.reason)
    if source is None:
        raise ValueError("a rollback that moves traffic needs a traffic source")
    run = _Run(plan, target, source, deadline, poll_s)
    try:
        return await run.go()
    except AccessDenied as exc:
        return run.action("refused", f"the Cloud Run API refused to {run.move}: {exc}", fix=exc.fix)
    except PostdeployError as exc:
        left = "; traffic unchanged as far as postdeploy knows" if not isinstance(exc, Transient) else ""
        return run.action("failed", f"could not {run.move}: {exc}{left}", fix=exc.fix)


@dataclass
class _Run:
    plan: Plan
    target: Target
    source: TrafficSource
    deadline: float
    poll_s: float
    found: Split = ()
    latest_ready: str = ""

    @property
    def move(self) -> str:
        return self.plan.move

    @property
    def done(self) -> str:
        return DONE.get(self.plan.kind, self.plan.kind)

    def action(self, outcome: ActionOutcome, detail: str, after: Split | None = None, fix: str = "") -> Action:
        before = self.found or self.plan.before
        return Action(self.plan.kind, outcome, detail, before=before, after=before if after is None else after,
                      planned=self.plan.after, fix=fix)

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _say(self, split: Split) -> str:
        return describe(split, self.latest_ready)

    async def _read(self) -> TrafficState:
        t = self.target
        state = await asyncio.to_thread(self.source.get_traffic, t.project, t.region, t.service, self._left())
        self.latest_ready = state.latest_ready_revision
        return state

    async def go(self) -> Action:
        t, p = self.target, self.plan
        if self._left() <= 0:
            return self.action("failed", f"no time left in the validation's deadline to {self.move}; nothing sent")
        state = await self._read()
        self.found = state.traffic
        if same_split(state.traffic, p.after):
            return self.action("already done", f"already {self.done}: {self._say(state.traffic)}; nothing sent")
        if not same_split(state.traffic, p.before):
            return self.action("refused", f"traffic of {t.service} changed since the validation read it (now "
                                          f"{self._say(state.traffic)}): not {self.done}, so a newer change is kept")
        role = "previous" if p.kind == ROLLBACK else "new"
        try:
            ready = await asyncio.to_thread(self.source.get_revision, t.project, t.region, t.service, p.ready,
                                            self._left())
        except TargetNotFound:
            return self.action("skipped", f"{role} revision {p.ready} is gone; no {p.kind} to a revision that "
                                          "cannot serve")
        if not ready.is_ready:
            return self.action("skipped", not_ready(ready, role, p.kind))
        if self._left() <= 0:
            return self.action("failed", f"no time left in the validation's deadline to {self.move}; nothing sent")
        try:
            done = await asyncio.to_thread(self.source.update_traffic, t.project, t.region, t.service, p.after,
                                           etag=state.etag, timeout_s=self._left(), poll_s=self.poll_s)
        except ConcurrentModification as exc:
            return await self._after_conflict(exc)
        self.latest_ready = done.latest_ready_revision
        return self.action("done", f"{self.done} {t.service}: {p.did}; traffic now {self._say(done.traffic)}", after=done.traffic)

    async def _after_conflict(self, exc: ConcurrentModification) -> Action:
        """One re-read after the API refused a stale update; never a second update."""
        if self._left() <= 0:
            return self.action("refused", f"the Cloud Run API refused to {self.move}: {exc}")
        now = (await self._read()).traffic
        if same_split(now, self.plan.after):
            return self.action("already done", f"already {self.done} by another update meanwhile: {self._say(now)}",
                               after=now)
        if same_split(now, self.found):
            return self.action("refused", f"the Cloud Run API refused to {self.move} ({exc}); traffic is unchanged "
                                          f"({self._say(now)}) and postdeploy does not try again", after=now)
        return self.action("refused", f"the Cloud Run API refused to {self.move} because the service changed meanwhile "
                                      f"(now {self._say(now)}): not {self.done}, so that change is kept", after=now)
