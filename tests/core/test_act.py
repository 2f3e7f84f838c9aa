"""Acting on a verdict (core.act): a promotion's first move and its check scheduled first, each step's decision,
follow-ups, and what a Tasks outage, a refused update and a redelivery leave behind. Traffic goes through the fake
Cloud Run Admin API and the official client; the scheduler here is an in-memory stand-in with Cloud Tasks' one rule
that matters (a task id is created once) — tests/sources/test_tasks.py and tests/test_rollout_e2e.py use the emulator."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.auth.exceptions import DefaultCredentialsError

from core.act import act_on_verdict
from core.config import Config, Settings
from core.errors import AccessDenied, Transient
from core.logs import LOGGER
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
    timeouts: list[float] = field(default_factory=list)  # the timeout_s of each schedule call
    down: bool = False
    denied: bool = False

    def schedule(self, task: TaskSpec, timeout_s: float = 30.0) -> str:
        self.updates_seen.append(len(self.fake_run.service_updates))
        self.timeouts.append(timeout_s)
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


def report_split(traffic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A split as set on the fake API (``split``, ``CANDIDATE``), as a report's action shows it."""
    return [{"type": "REVISION", "revision": t["revision"], "percent": t["percent"], "tag": t.get("tag", "")}
            for t in traffic]


def kinds(actions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["kind"], a["outcome"]) for a in actions]


PROMOTE = settings(on_pass="promote", steps=[10, 50, 100], step_wait_s=600.0)
TASKS_FIX = ("deploy with deploy/deploy.sh, which creates the queue and sets POSTDEPLOY_TASKS_QUEUE when a service uses "
             "on_pass: promote or follow_up")


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
    assert actions[0]["detail"].startswith("traffic unchanged: nothing moves unwatched, and could not schedule the "
                                           "check of step 1 (10 %) at ")
    assert actions[0]["fix"] == ("grant roles/cloudtasks.enqueuer" if fault == "denied" else "")
    assert actions[0]["before"] == actions[0]["after"] == report_split(CANDIDATE)
    assert actions[0]["planned"] == report_split(split(90, 10))


def test_a_refused_update_is_reported_and_its_check_finds_nothing_moved(fake_run: FakeCloudRun, candidate: Target,
                                                                        services: Services, build: Build) -> None:
    fake_run.fail_next_update(403)
    actions = run("PASS", candidate, PROMOTE, services, build)
    assert kinds(actions) == [("promote", "refused"), ("schedule", "done")]
    assert "run.services.update" in actions[0]["fix"] or "role" in actions[0]["fix"]
    assert live(fake_run) == CANDIDATE


@pytest.mark.parametrize(("steps", "first"), [([10, 50, 100], 10), ([50, 100], 50)], ids=["three-steps", "two-steps"])
def test_without_tasks_steps_do_not_start_and_all_at_once_moves_unwatched(steps: list[int], first: int,
                                                                         fake_run: FakeCloudRun, candidate: Target,
                                                                         services: Services, build: Build) -> None:
    unscheduled = replace(services, scheduler=None)
    (skipped,) = run("PASS", candidate, replace_settings(PROMOTE, steps=steps), unscheduled, build)
    assert {**skipped, "rollout": None} == {
        "kind": "promote", "outcome": "skipped", "rollout": None, "fix": TASKS_FIX,
        "detail": "a promotion in steps needs Cloud Tasks to schedule each step's check, and POSTDEPLOY_TASKS_QUEUE is "
                  "not set: traffic unchanged",
        "before": report_split(CANDIDATE), "after": report_split(CANDIDATE),
        "planned": report_split(split(100 - first, first))}
    assert skipped["rollout"]["steps"] == steps and skipped["rollout"]["step"] == 1
    assert fake_run.service_updates == []

    at_once = run("PASS", candidate, settings(on_pass="promote"), unscheduled, build)
    assert kinds(at_once) == [("promote", "done"), ("schedule", "skipped")]
    assert at_once[1] == {"kind": "schedule", "outcome": "skipped", "check": "step-1", "fix": TASKS_FIX,
                          "detail": "no check after the promotion: POSTDEPLOY_TASKS_QUEUE is not set"}
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
    kept = run("WARN", serving, settings(follow_up=["1h", "24h"]), replace(services, scheduler=None), build)
    assert kept == [{"kind": "schedule", "outcome": "skipped", "check": "follow-up", "fix": TASKS_FIX,
                     "detail": "follow-ups at 1h, 24h not scheduled: POSTDEPLOY_TASKS_QUEUE is not set"}]


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
    first = run("PASS", candidate, PROMOTE, Services(RunRevisionSource(), Scheduler(fake_run),
                                                     LocalStore(tempfile.mkdtemp(prefix="postdeploy-act-"))), build)
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
    assert step3.rerun is not None and actions[0]["rollout"] == {**(step3.rerun.rollout or {}), "step": 3}
    assert len(fake_run.service_updates) == updates and services.scheduler is not None and services.scheduler.tasks == {}


def test_a_failing_step_puts_back_the_split_before_the_rollout(fake_run: FakeCloudRun, candidate: Target,
                                                               services: Services, build: Build) -> None:
    step2 = at_step(fake_run, candidate, build, 2, split(50, 50))
    actions = run("FAIL", step2, PROMOTE, services, build)
    assert kinds(actions) == [("rollback", "done")] and "rollout" not in actions[0]  # the rollout ends here
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
    assert step1.rerun is not None and actions[0]["rollout"] == {**(step1.rerun.rollout or {}), "step": 1}
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


def test_a_step_without_a_readable_rollout_raises_and_moves_nothing(fake_run: FakeCloudRun, candidate: Target,
                                                                    services: Services, build: Build) -> None:
    step1 = at_step(fake_run, candidate, build, 1, split(90, 10))
    updates = len(fake_run.service_updates)
    assert step1.rerun is not None
    unreadable = replace(step1, rerun=replace(step1.rerun, step=2, rollout={"steps": [50]}))  # not ending at 100
    with pytest.raises(ValueError, match=f"^step 2 of {S} has no readable rollout$"):
        run("PASS", unreadable, PROMOTE, services, build)
    with pytest.raises(AssertionError):  # entry.scheduled never makes a step without its rollout
        run("PASS", replace(step1, rerun=replace(step1.rerun, rollout=None)), PROMOTE, services, build)
    assert len(fake_run.service_updates) == updates and services.scheduler is not None and services.scheduler.tasks == {}


# --- what each scheduled check's task and entry say ---------------------------------------------------------------------

def test_a_promotion_done_still_gets_its_follow_ups(fake_run: FakeCloudRun, candidate: Target, services: Services,
                                                   build: Build) -> None:
    actions = run("PASS", candidate, replace_settings(PROMOTE, follow_up=["1h"]), services, build)
    assert kinds(actions) == [("promote", "done"), ("schedule", "done"), ("schedule", "done")]
    assert [a.get("check") for a in actions] == [None, "step-1", "follow-up-1h"]


@pytest.mark.parametrize(("problem", "revision"), [("service 'orders' not found in us-central1 of acme-prod", NEW),
                                                   ("", "")], ids=["target-problem", "no-revision"])
def test_no_follow_up_for_a_target_that_was_not_resolved(problem: str, revision: str, candidate: Target,
                                                         services: Services, build: Build) -> None:
    unknown = replace(candidate, problem=problem, revision=revision)
    assert run("WARN", unknown, settings(follow_up=["1h"]), services, build) == []
    assert services.scheduler is not None and services.scheduler.tasks == {}


def test_a_follow_up_entry_names_its_task_time_and_report(candidate: Target, services: Services, build: Build) -> None:
    (first,) = run("WARN", candidate, settings(follow_up=["1h"]), services, build)
    assert services.scheduler is not None
    (task,) = services.scheduler.tasks.values()
    assert task.body == {"kind": "follow-up", "after": "1h", "build_id": build.id, "service": S}
    assert datetime.strptime(first["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) == task.at.replace(microsecond=0)
    report = first["report"]
    assert report.endswith(f"orders/{build.id}/follow-up-1h/report.html")
    assert first == {"kind": "schedule", "outcome": "done", "check": "follow-up-1h", "at": first["at"], "report": report,
                     "fix": "", "detail": f"the follow-up after 1h is scheduled at {first['at']}; its report: {report}"}
    (again,) = run("WARN", candidate, settings(follow_up=["1h"]), services, build)
    assert again["outcome"] == "already done"
    assert again["detail"] == f"the follow-up after 1h was already scheduled at {again['at']}; its report: {report}"


def test_a_task_is_one_per_service_build_and_check(candidate: Target, services: Services, build: Build) -> None:
    follow_up = settings(follow_up=["1h"])
    for target, of in ((candidate, build), (replace(candidate, service="payments"), build),
                       (candidate, replace(build, id="f0e1d2c3-other-build"))):
        assert kinds(run("WARN", target, follow_up, services, of)) == [("schedule", "done")]
    assert services.scheduler is not None and len(services.scheduler.tasks) == 3


@pytest.mark.parametrize(("left_s", "low", "high"), [(100.0, 30.0, 30.0), (10.0, 9.0, 10.0), (-5.0, 1.0, 1.0)],
                         ids=["capped-at-30-s", "the-time-left", "at-least-1-s-past-the-deadline"])
def test_scheduling_waits_for_the_time_left_between_1_and_30_s(left_s: float, low: float, high: float,
                                                                candidate: Target, services: Services,
                                                                build: Build) -> None:
    asyncio.run(act_on_verdict("WARN", candidate, settings(follow_up=["1h"]), services, build, time.monotonic() + left_s))
    assert services.scheduler is not None
    (timeout_s,) = services.scheduler.timeouts
    assert low <= timeout_s <= high


# --- a lost client and the log lines ----------------------------------------------------------------------------------

class NoRunClient(Services):
    """Adapters whose Cloud Run Admin API client cannot be made (no credentials on the machine)."""

    def get(self, name: str) -> Any:
        if name == "revisions":
            raise DefaultCredentialsError("Your default credentials were not found.")
        return super().get(name)


def test_a_lost_run_client_is_a_failed_rollback_and_never_read_when_nothing_moves(fake_run: FakeCloudRun, build: Build,
                                                                                  services: Services) -> None:
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", build.id)  # the new revision serves 100 %
    serving = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource())
    lost = NoRunClient(services.revisions, services.scheduler, services.store)
    (failed,) = run("FAIL", serving, settings(on_fail="rollback"), lost, build)
    latest = [{"type": "LATEST", "revision": "", "percent": 100, "tag": ""}]
    assert failed == {"kind": "rollback", "outcome": "failed", "before": latest, "after": latest, "planned": [], "fix": "",
                      "detail": f"could not reach the Cloud Run Admin API to move 100 % from {NEW} back to {OLD}: "
                                "DefaultCredentialsError: Your default credentials were not found."}
    assert kinds(run("WARN", serving, settings(on_fail="rollback"), lost, build)) == [("rollback", "skipped")]
    assert fake_run.service_updates == []


class Records(logging.Handler):
    """The records postdeploy's logger emits, as (severity, message, labels)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str, dict[str, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage(), getattr(record, "labels", {})))


@pytest.fixture
def logged() -> Iterator[Records]:
    records, level = Records(), LOGGER.level
    LOGGER.addHandler(records)
    LOGGER.setLevel(logging.INFO)
    yield records
    LOGGER.removeHandler(records)
    LOGGER.setLevel(level)


@pytest.mark.parametrize(("verdict", "config", "outcome", "severity"), [
    ("PASS", PROMOTE, "done", "INFO"),
    ("WARN", settings(on_fail="rollback"), "skipped", "INFO"),
    ("PASS", PROMOTE, "refused", "ERROR"),
], ids=["moved", "skipped", "refused"])
def test_each_move_is_one_log_line_at_error_only_when_it_did_not_work(verdict: str, config: Settings, outcome: str,
                                                                       severity: str, fake_run: FakeCloudRun,
                                                                       candidate: Target, services: Services,
                                                                       build: Build, logged: Records) -> None:
    if outcome == "refused":
        fake_run.fail_next_update(403)
    (action, *_) = run(verdict, candidate, config, services, build)
    assert action["outcome"] == outcome
    assert logged.lines == [(severity, f"{action['kind']} {outcome}: {action['detail']}", {"service": S})]


def test_a_held_step_logs_at_info(fake_run: FakeCloudRun, candidate: Target, services: Services, build: Build,
                                  logged: Records) -> None:
    step1 = at_step(fake_run, candidate, build, 1, split(90, 10))
    logged.lines.clear()
    (held,) = run("WARN", step1, PROMOTE, services, build)
    assert logged.lines == [("INFO", f"promote held: {held['detail']}", {"service": S})]


def test_a_check_that_could_not_be_scheduled_logs_an_error(candidate: Target, services: Services, build: Build,
                                                           logged: Records) -> None:
    assert services.scheduler is not None
    services.scheduler.down = True
    (failed,) = run("WARN", candidate, settings(follow_up=["1h"]), services, build)
    assert failed["outcome"] == "failed" and failed["fix"] == ""
    assert logged.lines == [("ERROR", "could not schedule the follow-up after 1h: Cloud Tasks unreachable creating a task "
                                      "in q: connection refused", {"build_id": build.id, "service": S})]
