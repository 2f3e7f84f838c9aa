"""A delivery lost after it moved traffic (its report not stored: a storage fault released the claim, or the instance
died and another delivery took the claim over) is delivered again: the redelivery finds the traffic moved and carries
on from there ("already done"), never reports its own move as someone else's, never moves twice, never strands it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.act import act_on_verdict
from core.errors import AccessDenied
from core.model import Build, DeployIntent, Rerun, Target
from report.store import LocalStore
from sources.cloud_run import RunRevisionSource
from tests.core.test_act import (
    CANDIDATE,
    NEW,
    OLD,
    PROMOTE,
    TASKS_FIX,
    P,
    R,
    S,
    Scheduler,
    Services,
    build,
    candidate,
    kinds,
    live,
    report_split,
    run,
    services,
    split,
)
from tests.servers.fake_run import FakeCloudRun
from trigger.resolve import resolve

__all__ = ["build", "candidate", "services"]  # fixtures


def fresh(build: Build, **intent: object) -> Target:
    """The target as a redelivery resolves it: from the traffic as it is now."""
    return resolve(DeployIntent(service=S, region=R, project=P, **intent), build, RunRevisionSource())  # type: ignore[arg-type]


def test_a_redelivered_first_validation_resumes_the_promotion_it_started(fake_run: FakeCloudRun, candidate: Target,
                                                                         services: Services, build: Build) -> None:
    first = run("PASS", candidate, PROMOTE, services, build)
    assert kinds(first) == [("promote", "done"), ("schedule", "done")] and live(fake_run) == split(90, 10)
    again = run("WARN", fresh(build, no_traffic=True, tag="candidate"), PROMOTE, services, build)  # it sees 10 % now
    assert kinds(again) == [("promote", "already done"), ("schedule", "already done")]
    assert again[0]["rollout"]["base"] == report_split(CANDIDATE)  # the split before the rollout, not the moved one
    assert len(fake_run.service_updates) == 1 and live(fake_run) == split(90, 10)


def test_a_redelivered_fail_does_not_carry_a_promotion_on(fake_run: FakeCloudRun, candidate: Target,
                                                          services: Services, build: Build) -> None:
    run("PASS", candidate, PROMOTE, services, build)
    again = run("FAIL", fresh(build), PROMOTE, services, build)
    assert kinds(again) == [("promote", "skipped")] and len(fake_run.service_updates) == 1


def test_a_redelivered_step_finds_its_move_made(fake_run: FakeCloudRun, candidate: Target, services: Services,
                                                build: Build, tmp_path: Path) -> None:
    started = run("PASS", candidate, PROMOTE, Services(RunRevisionSource(), Scheduler(fake_run), LocalStore(str(tmp_path))),
                  build)
    rerun = Rerun("step-1", NEW, OLD, {"verdict": "PASS"}, kind="step", step=1, rollout=started[0]["rollout"])

    def step_target() -> Target:
        resolved = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource(), revision=NEW)
        return replace(resolved, rerun=rerun, previous_revision=OLD)

    moved = run("PASS", step_target(), PROMOTE, services, build)
    assert kinds(moved) == [("promote", "done"), ("schedule", "done")] and live(fake_run) == split(50, 50)
    updates = len(fake_run.service_updates)
    again = run("PASS", step_target(), PROMOTE, services, build)  # it sees 50/50 now
    assert kinds(again) == [("promote", "already done"), ("schedule", "already done")]
    assert len(fake_run.service_updates) == updates and live(fake_run) == split(50, 50)
    failed = run("FAIL", step_target(), PROMOTE, services, build)  # a FAIL on the redelivery rolls back from 50 %
    assert kinds(failed) == [("rollback", "done")] and live(fake_run) == CANDIDATE


def test_without_storage_nothing_is_started_that_would_read_the_report(fake_run: FakeCloudRun, candidate: Target,
                                                                       services: Services, build: Build) -> None:
    settings = PROMOTE.model_copy(update={"follow_up": ["1h"]})
    actions = asyncio.run(act_on_verdict("PASS", candidate, settings, services, build, time.monotonic() + 30,
                                         "AccessDenied: storage.objects.create on gs://r"))
    assert kinds(actions) == [("promote", "skipped"), ("schedule", "skipped")]
    assert actions[0]["detail"].startswith("no promotion: the report cannot be stored (AccessDenied: storage.objects")
    assert fake_run.service_updates == [] and services.scheduler is not None and services.scheduler.tasks == {}


# --- the record itself ---------------------------------------------------------------------------------------------

class Refusing(LocalStore):
    """A bucket that refuses one operation: ``read`` or ``claim``."""

    def __init__(self, root: str, refuses: str) -> None:
        super().__init__(root)
        self.refuses = refuses

    def read(self, name: str) -> str | None:
        if self.refuses == "read":
            raise AccessDenied(f"storage.objects.get denied on {name}", fix="grant roles/storage.objectAdmin")
        return super().read(name)

    def claim(self, name: str, token: str) -> bool:
        if self.refuses == "claim":
            raise AccessDenied(f"storage.objects.create denied on {name}", fix="grant roles/storage.objectAdmin")
        return super().claim(name, token)


def test_the_rollout_is_recorded_before_the_first_move_and_only_then(fake_run: FakeCloudRun, candidate: Target,
                                                                      services: Services, build: Build) -> None:
    run("PASS", candidate, PROMOTE, services, build)
    record = Path(services.store.root) / S / build.id / "rollout.json"
    assert json.loads(record.read_text(encoding="utf-8")) == {
        "steps": [10, 50, 100], "wait_s": 600.0, "step": 1, "base": report_split(CANDIDATE)}
    at_once = replace(services, scheduler=None, store=LocalStore(str(Path(services.store.root) / "at-once")))
    fake_run.set_traffic(P, R, S, CANDIDATE)
    run("PASS", candidate, PROMOTE.model_copy(update={"steps": [100]}), at_once, build)
    assert (Path(at_once.store.root) / S / build.id / "rollout.json").exists()  # the unwatched move is recorded too


def test_a_step_records_nothing(fake_run: FakeCloudRun, candidate: Target, services: Services, build: Build,
                                tmp_path: Path) -> None:
    first = LocalStore(str(tmp_path / "first"))
    started = run("PASS", candidate, PROMOTE, Services(RunRevisionSource(), Scheduler(fake_run), first), build)
    rerun = Rerun("step-1", NEW, OLD, {"verdict": "PASS"}, kind="step", step=1, rollout=started[0]["rollout"])
    resolved = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource(), revision=NEW)
    assert kinds(run("PASS", replace(resolved, rerun=rerun, previous_revision=OLD), PROMOTE, services, build)) == [
        ("promote", "done"), ("schedule", "done")]
    assert [p.name for p in Path(services.store.root).rglob("*") if "first" not in p.parts] == []


@pytest.mark.parametrize(("refuses", "said"), [
    ("read", "could not read whether an earlier delivery started the promotion (storage.objects.get denied on "),
    ("claim", "could not record the promotion before moving traffic (storage.objects.create denied on "),
])
@pytest.mark.parametrize("steps", [[10, 50, 100], [100]], ids=["in-steps", "at-once"])
def test_a_promotion_that_cannot_be_recorded_moves_nothing(refuses: str, said: str, steps: list[int],
                                                           fake_run: FakeCloudRun, candidate: Target, services: Services,
                                                           build: Build, tmp_path: Path) -> None:
    bucket = replace(services, store=Refusing(str(tmp_path), refuses),
                     scheduler=services.scheduler if steps[0] != 100 else None)
    actions = run("PASS", candidate, PROMOTE.model_copy(update={"steps": steps}), bucket, build)
    failed = actions[0]
    assert {k: failed[k] for k in ("kind", "outcome", "before", "after", "planned", "fix")} == {
        "kind": "promote", "outcome": "failed", "before": report_split(CANDIDATE), "after": report_split(CANDIDATE),
        "planned": report_split(split(100 - steps[0], steps[0])), "fix": "grant roles/storage.objectAdmin"}
    assert failed["detail"].startswith(said) and failed["detail"].endswith("): traffic unchanged")
    assert fake_run.service_updates == [] and live(fake_run) == CANDIDATE


def test_without_storage_each_thing_not_started_is_named(candidate: Target, services: Services, build: Build) -> None:
    settings = PROMOTE.model_copy(update={"follow_up": ["1h", "24h"]})
    actions = asyncio.run(act_on_verdict("PASS", candidate, settings, services, build, time.monotonic() + 30, "denied"))
    why = "the report cannot be stored (denied), and every later check starts from it"
    assert actions == [
        {"kind": "promote", "outcome": "skipped", "detail": f"no promotion: {why}; traffic unchanged", "before": [],
         "after": [], "planned": [], "fix": ""},
        {"kind": "schedule", "outcome": "skipped", "detail": f"follow-ups at 1h, 24h not scheduled: {why}",
         "check": "follow-up", "fix": TASKS_FIX}]
    assert asyncio.run(act_on_verdict("PASS", candidate, settings.model_copy(update={"on_pass": "report", "follow_up": []}),
                                      services, build, time.monotonic() + 30, "denied")) == []
