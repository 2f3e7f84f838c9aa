"""A delivery lost after it moved traffic (its report not stored: a storage fault released the claim, or the instance
died and another delivery took the claim over) is delivered again: the redelivery finds the traffic moved and carries
on from there ("already done"), never reports its own move as someone else's, never moves twice, never strands it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from core.act import act_on_verdict
from core.model import Build, DeployIntent, Rerun, Target
from report.store import LocalStore
from sources.cloud_run import RunRevisionSource
from tests.core.test_act import (
    CANDIDATE,
    NEW,
    OLD,
    PROMOTE,
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
