"""Acting on a verdict (core.act): a promotion's first move and its check scheduled first, each step's decision,
follow-ups, and what a Tasks outage, a refused update and a redelivery leave behind. Traffic goes through the fake
Cloud Run Admin API and the official client; the scheduler here is an in-memory stand-in with Cloud Tasks' one rule
that matters (a task id is created once) — tests/sources/test_tasks.py and tests/test_rollout_e2e.py use the emulator."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.act import act_on_verdict
from core.config import Config, Settings
from core.errors import AccessDenied, Transient
from core.model import Build, DeployIntent, Rerun, Target
from report.store import LocalStore
from sources.cloud_run import RunRevisionSource
from sources.tasks import TaskSpec
from tests.conftest import add_orders_service, load_build
from tests.servers.fake_run import TRAFFIC_REVISION, FakeCloudRun
from trigger.events import build_from_dict
from trigger.resolve import resolve

P, R, S = "acme-prod", "us-central1", "orders"
NEW, OLD = "orders-00042-new", "orders-00041-old"
CANDIDATE = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100},
             {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 0, "tag": "candidate"}]


def split(old: int, new: int) -> list[dict[str, Any]]:
    """The traffic a promotion sets: OLD's untagged entry (dropped at 0 %), NEW's tagged one."""
    entries = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": old}] if old else []
    return [*entries, {"type": TRAFFIC_REVISION, "revision": NEW, "percent": new, "tag": "candidate"}]


def live(fake_run: FakeCloudRun) -> list[dict[str, Any]]:
    """The service's traffic as set; a 0 % entry the client sent without its percent (proto3 default) says 0."""
    return [{**t, "percent": t.get("percent", 0)} for t in fake_run.service(P, R, S)["traffic"]]


@dataclass
class Scheduler:
    """Cloud Tasks as core.act sees it: a task id is created once; ``down`` is an outage, ``denied`` a missing role."""

    fake_run: FakeCloudRun
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    updates_seen: list[int] = field(default_factory=list)  # service PATCHes made before each schedule call
    down: bool = False
    denied: bool = False

    def schedule(self, task: TaskSpec, timeout_s: float = 30.0) -> str:
        self.updates_seen.append(len(self.fake_run.service_updates))
        if self.down:
            raise Transient("Cloud Tasks unreachable creating a task in q: connection refused")
        if self.denied:
            raise AccessDenied("permission denied creating a task in q", fix="grant roles/cloudtasks.enqueuer")
        if task.id in self.tasks:
            return f"already scheduled q/tasks/{task.id}"
        self.tasks[task.id] = task
        return f"scheduled q/tasks/{task.id}"


@dataclass
class Services:
    revisions: RunRevisionSource
    scheduler: Scheduler | None
    store: LocalStore

    def get(self, name: str) -> Any:
        return getattr(self, name)


@pytest.fixture
def build() -> Build:
    return build_from_dict(load_build("console_cd_trigger"))


@pytest.fixture
def candidate(fake_run: FakeCloudRun, build: Build) -> Target:
    """`orders`: the build's revision deployed with --no-traffic --tag candidate; the old one serves 100 %."""
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", build.id)
    fake_run.set_traffic(P, R, S, CANDIDATE)
    resolved = resolve(DeployIntent(service=S, region=R, project=P, no_traffic=True, tag="candidate"), build,
                       RunRevisionSource())
    assert (resolved.revision, resolved.previous_revision) == (NEW, OLD)
    return resolved


@pytest.fixture
def services(fake_run: FakeCloudRun, tmp_path: Path) -> Services:
    return Services(RunRevisionSource(), Scheduler(fake_run), LocalStore(str(tmp_path)))


def settings(**values: Any) -> Settings:
    return Config.parse("version: 1\n", "test").for_service(S).model_copy(update=values)


def run(verdict: str, target: Target, config: Settings, services: Services, build: Build) -> list[dict[str, Any]]:
    return asyncio.run(act_on_verdict(verdict, target, config, services, build, time.monotonic() + 30))


def kinds(actions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["kind"], a["outcome"]) for a in actions]


PROMOTE = settings(on_pass="promote", steps=[10, 50, 100], step_wait_s=600.0)


# --- the first validation ------------------------------------------------------------------------------------------

def test_a_pass_schedules_the_first_check_then_moves_the_first_step(fake_run: FakeCloudRun, candidate: Target,
                                                                    services: Services, build: Build) -> None:
    before = datetime.now(UTC)
    actions = run("PASS", candidate, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "done"), ("schedule", "done")]
    assert live(fake_run) == split(90, 10)
    assert services.scheduler is not None and services.scheduler.updates_seen == [0]  # scheduled before any PATCH
    (task,) = services.scheduler.tasks.values()
    assert task.body == {"kind": "step", "step": 1, "build_id": build.id, "service": S}
    assert before + timedelta(seconds=600) <= task.at <= datetime.now(UTC) + timedelta(seconds=600)
    promote, scheduled = actions
    assert promote["rollout"] == {"steps": [10, 50, 100], "wait_s": 600.0, "step": 1, "base": [
        {"type": "REVISION", "revision": OLD, "percent": 100, "tag": ""},
        {"type": "REVISION", "revision": NEW, "percent": 0, "tag": "candidate"}]}
    assert promote["detail"] == (f"promoted orders: moved {NEW} from 0 % to 10 %; traffic now {OLD} 90 %, {NEW} 10 % "
                                 "(tag candidate)")
    assert scheduled["check"] == "step-1" and scheduled["report"].endswith(f"orders/{build.id}/step-1/report.html")
    assert scheduled["detail"].startswith("the check of step 1 (10 %) is scheduled at ")


def test_a_redelivery_schedules_nothing_new_and_moves_nothing_twice(fake_run: FakeCloudRun, candidate: Target,
                                                                   services: Services, build: Build) -> None:
    run("PASS", candidate, PROMOTE, services, build)
    again = run("PASS", candidate, PROMOTE, services, build)  # the same target, read before the first move
    assert kinds(again) == [("promote", "already done"), ("schedule", "already done")]
    assert len(fake_run.service_updates) == 1
    assert services.scheduler is not None and len(services.scheduler.tasks) == 1


@pytest.mark.parametrize("fault", ["down", "denied"])
def test_when_the_check_cannot_be_scheduled_the_traffic_stays(fault: str, fake_run: FakeCloudRun, candidate: Target,
                                                              services: Services, build: Build) -> None:
    assert services.scheduler is not None
    setattr(services.scheduler, fault, True)
    actions = run("PASS", candidate, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "failed"), ("schedule", "failed")]
    assert fake_run.service_updates == [] and live(fake_run) == CANDIDATE
    assert actions[0]["detail"].startswith("could not schedule the check of step 1, so nothing moves unwatched: "
                                           "traffic unchanged (could not schedule the check of step 1 (10 %) at ")
    assert actions[0]["fix"] == ("grant roles/cloudtasks.enqueuer" if fault == "denied" else "")


def test_a_refused_update_is_reported_and_its_check_finds_nothing_moved(fake_run: FakeCloudRun, candidate: Target,
                                                                        services: Services, build: Build) -> None:
    fake_run.fail_next_update(403)
    actions = run("PASS", candidate, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "refused"), ("schedule", "done")]
    assert "run.services.update" in actions[0]["fix"] or "role" in actions[0]["fix"]
    assert live(fake_run) == CANDIDATE


def test_without_tasks_steps_do_not_start_and_all_at_once_moves_unwatched(fake_run: FakeCloudRun, candidate: Target,
                                                                         services: Services, build: Build) -> None:
    unscheduled = replace(services, scheduler=None)
    actions = run("PASS", candidate, PROMOTE, unscheduled, build)
    assert kinds(actions) == [("promote", "skipped")]
    assert "needs Cloud Tasks" in actions[0]["detail"] and "POSTDEPLOY_TASKS_QUEUE is not set" in actions[0]["detail"]
    assert fake_run.service_updates == []

    at_once = run("PASS", candidate, settings(on_pass="promote"), unscheduled, build)
    assert kinds(at_once) == [("promote", "done"), ("schedule", "skipped")]
    assert at_once[1]["detail"] == "no check after the promotion: POSTDEPLOY_TASKS_QUEUE is not set"
    assert live(fake_run) == split(0, 100)


@pytest.mark.parametrize("verdict", ["WARN", "FAIL", "INCONCLUSIVE"])
def test_only_a_pass_promotes(verdict: str, fake_run: FakeCloudRun, candidate: Target, services: Services,
                              build: Build) -> None:
    actions = run(verdict, candidate, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "skipped")]
    assert actions[0]["detail"] == f"the verdict is {verdict}: only a PASS promotes"
    assert fake_run.service_updates == [] and services.scheduler is not None and services.scheduler.tasks == {}


# --- follow-ups -------------------------------------------------------------------------------------------------------

def test_follow_ups_are_scheduled_once_each_at_their_delay(candidate: Target, services: Services, build: Build) -> None:
    before = datetime.now(UTC)
    actions = run("WARN", candidate, settings(follow_up=["1h", "24h"]), services, build)
    assert kinds(actions) == [("schedule", "done"), ("schedule", "done")]
    assert [a["check"] for a in actions] == ["follow-up-1h", "follow-up-24h"]
    assert services.scheduler is not None
    tasks = sorted(services.scheduler.tasks.values(), key=lambda t: t.at)
    assert [t.body["after"] for t in tasks] == ["1h", "24h"]
    for task, delay in zip(tasks, (3600, 86400), strict=True):
        assert before + timedelta(seconds=delay) <= task.at <= datetime.now(UTC) + timedelta(seconds=delay)
    again = run("WARN", candidate, settings(follow_up=["1h", "24h"]), services, build)
    assert kinds(again) == [("schedule", "already done")] * 2 and len(services.scheduler.tasks) == 2


def test_no_follow_up_after_a_rollback_and_none_without_tasks(fake_run: FakeCloudRun, build: Build,
                                                              services: Services) -> None:
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", build.id)  # the new revision serves 100 %
    serving = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource())
    rolled = run("FAIL", serving, settings(on_fail="rollback", follow_up=["1h"]), services, build)
    assert kinds(rolled) == [("rollback", "done")]
    kept = run("WARN", serving, settings(follow_up=["1h"]), replace(services, scheduler=None), build)
    assert kinds(kept) == [("schedule", "skipped")]
    assert kept[0]["detail"] == "follow-ups at 1h not scheduled: POSTDEPLOY_TASKS_QUEUE is not set"


def test_a_rerun_or_a_follow_up_never_promotes_or_schedules(candidate: Target, services: Services, build: Build) -> None:
    for kind in ("rerun", "follow-up"):
        again = replace(candidate, rerun=Rerun(f"{kind}-x", NEW, OLD, {}, kind=kind))
        assert run("PASS", again, replace_settings(PROMOTE, follow_up=["1h"]), services, build) == []
    assert services.scheduler is not None and services.scheduler.tasks == {}


def replace_settings(base: Settings, **values: Any) -> Settings:
    return base.model_copy(update=values)


# --- a step's check ---------------------------------------------------------------------------------------------------

def at_step(fake_run: FakeCloudRun, candidate: Target, build: Build, step: int, traffic: list[dict[str, Any]]) -> Target:
    """The target a step's check resolves: the live split (``traffic``), marked as that step of the rollout."""
    first = run("PASS", candidate, PROMOTE, Services(RunRevisionSource(), Scheduler(fake_run), LocalStore("/tmp")),
                build)
    fake_run.set_traffic(P, R, S, traffic)
    live = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource(), revision=NEW)
    rerun = Rerun(f"step-{step}", NEW, OLD, {"verdict": "PASS"}, kind="step", step=step, rollout=first[0]["rollout"])
    return replace(live, rerun=rerun, previous_revision=OLD)


def test_a_passing_step_schedules_the_next_check_then_moves_on(fake_run: FakeCloudRun, candidate: Target,
                                                               services: Services, build: Build) -> None:
    step1 = at_step(fake_run, candidate, build, 1, split(90, 10))
    updates = len(fake_run.service_updates)
    actions = run("PASS", step1, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "done"), ("schedule", "done")]
    assert live(fake_run) == split(50, 50)
    assert services.scheduler is not None and services.scheduler.updates_seen == [updates]
    assert [t.body for t in services.scheduler.tasks.values()] == [
        {"kind": "step", "step": 2, "build_id": build.id, "service": S}]
    assert actions[0]["rollout"]["step"] == 2 and actions[1]["check"] == "step-2"


def test_the_last_step_completes_the_rollout_without_a_write(fake_run: FakeCloudRun, candidate: Target,
                                                             services: Services, build: Build) -> None:
    step3 = at_step(fake_run, candidate, build, 3, split(0, 100))
    updates = len(fake_run.service_updates)
    actions = run("PASS", step3, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "done")]
    assert actions[0]["detail"] == f"rollout complete: {NEW} serves 100 % after 3 steps that passed"
    assert len(fake_run.service_updates) == updates and services.scheduler is not None and services.scheduler.tasks == {}


def test_a_failing_step_puts_back_the_split_before_the_rollout(fake_run: FakeCloudRun, candidate: Target,
                                                               services: Services, build: Build) -> None:
    step2 = at_step(fake_run, candidate, build, 2, split(50, 50))
    actions = run("FAIL", step2, PROMOTE, services, build)
    assert kinds(actions) == [("rollback", "done")]
    assert live(fake_run) == CANDIDATE
    assert services.scheduler is not None and services.scheduler.tasks == {}


@pytest.mark.parametrize("verdict", ["WARN", "INCONCLUSIVE"])
def test_a_doubtful_step_holds_where_it_is(verdict: str, fake_run: FakeCloudRun, candidate: Target,
                                           services: Services, build: Build) -> None:
    step1 = at_step(fake_run, candidate, build, 1, split(90, 10))
    updates = len(fake_run.service_updates)
    actions = run(verdict, step1, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "held")]
    assert actions[0]["detail"].startswith(f"the verdict at step 1 (10 %) is {verdict}: the rollout holds here")
    assert len(fake_run.service_updates) == updates and live(fake_run) == split(90, 10)


def test_a_split_changed_by_someone_else_is_never_touched(fake_run: FakeCloudRun, candidate: Target,
                                                          services: Services, build: Build) -> None:
    step1 = at_step(fake_run, candidate, build, 1, split(70, 30))  # a person moved it to 30 % meanwhile
    updates = len(fake_run.service_updates)
    for verdict in ("PASS", "FAIL"):
        actions = run(verdict, step1, PROMOTE, services, build)
        assert kinds(actions) == [("promote", "held")]
        assert "changed outside the rollout" in actions[0]["detail"]
    assert len(fake_run.service_updates) == updates and live(fake_run) == split(70, 30)
