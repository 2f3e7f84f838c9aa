"""Rolling back on FAIL: the decision table (pure) and the one traffic update against the fake Admin API, through
the official google-cloud-run client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest

from core.errors import NoCredentials
from core.model import Build, Condition, DeployIntent, RevisionInfo, ServiceInfo, Target, TrafficInfo
from report import rollback
from report.rollback import Action, Plan, act, describe, plan, rolled_back, same_split
from sources.cloud_run import RunRevisionSource, TrafficState
from tests.conftest import add_orders_service, load_build
from tests.servers.fake_run import CONDITION_FAILED, TRAFFIC_LATEST, TRAFFIC_REVISION, FakeCloudRun
from trigger.events import build_from_dict
from trigger.resolve import resolve

P, R, S = "acme-prod", "us-central1", "orders"
NEW, OLD, OTHER = "orders-00042-new", "orders-00041-old", "orders-00040-odd"
SERVICE_PATH = f"/v2/projects/{P}/locations/{R}/services/{S}"


def rev(name: str, percent: int, tag: str = "") -> TrafficInfo:
    return TrafficInfo(revision=name, percent=percent, tag=tag)


def latest(percent: int, tag: str = "", resolved: str = "") -> TrafficInfo:
    return TrafficInfo(revision=resolved, percent=percent, tag=tag, latest=True)


def target(traffic: tuple[TrafficInfo, ...], *, previous: str = OLD, latest_ready: str = NEW, no_traffic: bool = False,
           problem: str = "") -> Target:
    service = ServiceInfo(name=S, project=P, region=R, latest_created_revision=NEW, latest_ready_revision=latest_ready,
                          traffic=traffic)
    return Target(service=S, project=P, region=R, revision=NEW, previous_revision=previous, service_info=service,
                  intent=DeployIntent(service=S, region=R, project=P, no_traffic=no_traffic), problem=problem)


# --- the decision ---------------------------------------------------------------------------------------------------

NOT_READY = RevisionInfo(OLD, conditions=(Condition("Ready", "CONDITION_FAILED", "Container failed to start"),))


@pytest.mark.parametrize(
    ("verdict", "on_fail", "tgt", "kwargs", "reason"),
    [
        pytest.param("FAIL", "report", target((latest(100),)), {},
                     "on_fail is 'report' for orders: postdeploy reports and changes nothing", id="not-opted-in"),
        pytest.param("WARN", "rollback", target((latest(100),)), {}, "the verdict is WARN: only a FAIL rolls back",
                     id="warn"),
        pytest.param("INCONCLUSIVE", "rollback", target((latest(100),)), {},
                     "the verdict is INCONCLUSIVE: only a FAIL rolls back", id="inconclusive"),
        pytest.param("WARN", "rollback", target((rev(OLD, 90), rev(NEW, 10, "c")), previous=""), {},
                     "the verdict is WARN: only a FAIL rolls back", id="warn-without-previous"),
        pytest.param("PASS", "rollback", target((latest(100),)), {}, "the verdict is PASS: only a FAIL rolls back",
                     id="pass"),
        pytest.param("FAIL", "rollback", target((latest(100),), problem="service 'orders' not found"), {},
                     "the deployed revision or its service's traffic is unknown: nothing to roll back", id="unresolved"),
        pytest.param("FAIL", "rollback", replace(target((latest(100),)), service_info=None), {},
                     "the deployed revision or its service's traffic is unknown: nothing to roll back",
                     id="service-unknown"),
        pytest.param("FAIL", "rollback", target((rev(OLD, 100), rev(NEW, 0, "canary")), no_traffic=True), {},
                     f"{NEW} was deployed with --no-traffic and serves no traffic: nothing to move back", id="no-traffic"),
        pytest.param("FAIL", "rollback", target((rev(OLD, 100), rev(NEW, 0, "blue"))), {},
                     f"already rolled back: {OLD} serves 100 % and {NEW} none", id="already-rolled-back"),
        pytest.param("FAIL", "rollback", target((rev(OLD, 60), rev(OTHER, 40))), {},
                     f"{NEW} serves no traffic: nothing to move back", id="new-serves-none"),
        pytest.param("FAIL", "rollback", target((latest(100),), previous=""), {},
                     f"no previous revision of orders to roll back to: {NEW} is the first that served", id="no-previous"),
        pytest.param("FAIL", "rollback", target((latest(100),)), {"previous": NOT_READY},
                     f"previous revision {OLD} is not Ready: Container failed to start; no rollback to a revision "
                     "that cannot serve", id="previous-not-ready"),
        pytest.param("FAIL", "rollback", target((latest(100),)),
                     {"previous": RevisionInfo(OLD, conditions=(Condition("Ready", "CONDITION_FAILED"),))},
                     f"previous revision {OLD} is not Ready; no rollback to a revision that cannot serve",
                     id="previous-not-ready-without-a-message"),
        pytest.param("FAIL", "rollback", target((latest(100),)), {"previous": RevisionInfo(OLD)},
                     f"previous revision {OLD} is not Ready; no rollback to a revision that cannot serve",
                     id="previous-without-a-ready-condition"),
    ],
)
def test_no_action_says_why(verdict: str, on_fail: str, tgt: Target, kwargs: dict[str, Any], reason: str) -> None:
    decided = plan(verdict, tgt, on_fail, **kwargs)
    assert (decided.acts, decided.reason, decided.after, decided.moved) == (False, reason, (), 0)
    assert decided.wanted is (on_fail == "rollback")
    info = tgt.service_info
    expected = (tgt.revision, tgt.previous_revision, info.traffic if info else ()) if decided.wanted else ("", "", ())
    assert (decided.revision, decided.previous, decided.before) == expected


@pytest.mark.parametrize(
    ("traffic", "latest_ready", "expected", "moved"),
    [
        pytest.param((latest(100),), NEW, (rev(OLD, 100),), 100, id="latest-becomes-previous-by-name"),
        pytest.param((latest(100, resolved=NEW),), NEW, (rev(OLD, 100),), 100, id="latest-status-with-revision"),
        pytest.param((rev(NEW, 100),), NEW, (rev(OLD, 100),), 100, id="by-name"),
        pytest.param((rev(OLD, 90), rev(NEW, 10)), NEW, (rev(OLD, 100),), 10, id="canary-split"),
        pytest.param((rev(OTHER, 20), rev(OLD, 30), rev(NEW, 50)), NEW, (rev(OTHER, 20), rev(OLD, 80)), 50,
                     id="three-revisions"),
        pytest.param((rev(NEW, 100, "blue"), rev(OLD, 0, "green")), NEW,
                     (rev(NEW, 0, "blue"), rev(OLD, 0, "green"), rev(OLD, 100)), 100, id="tags-stay"),
        pytest.param((latest(100, "tip"),), NEW, (rev(NEW, 0, "tip"), rev(OLD, 100)), 100,
                     id="tagged-latest-keeps-its-tag-on-the-same-revision"),
        pytest.param((latest(50), rev(NEW, 50)), OTHER, (latest(50), rev(OLD, 50)), 50,
                     id="latest-pointing-elsewhere-stays"),
        pytest.param((latest(50, resolved=OTHER), rev(NEW, 50)), OTHER, (latest(50), rev(OLD, 50)), 50,
                     id="a-kept-latest-entry-drops-its-resolved-revision"),
        pytest.param((TrafficInfo("", 40), rev(NEW, 60)), NEW, (TrafficInfo("", 40), rev(OLD, 60)), 60,
                     id="an-entry-naming-no-revision-is-not-the-latest"),
        pytest.param((rev(OLD, 40), latest(30), rev(NEW, 30, "c")), NEW, (rev(OLD, 100), rev(NEW, 0, "c")), 60,
                     id="latest-and-named-both-move"),
    ],
)
def test_the_new_revisions_percent_goes_back_to_the_previous(traffic: tuple[TrafficInfo, ...], latest_ready: str,
                                                             expected: tuple[TrafficInfo, ...], moved: int) -> None:
    decided = plan("FAIL", target(traffic, latest_ready=latest_ready), "rollback")
    assert decided.acts and decided.wanted is True and decided.reason == ""
    assert (decided.after, decided.moved) == (expected, moved)
    assert sum(t.percent for t in decided.after) == sum(t.percent for t in traffic)
    assert (decided.revision, decided.previous, decided.before) == (NEW, OLD, traffic)


def test_a_ready_previous_revision_is_no_obstacle() -> None:
    ready = RevisionInfo(OLD, conditions=(Condition("Ready", "CONDITION_SUCCEEDED"),))
    assert plan("FAIL", target((latest(100),)), "rollback", previous=ready).after == (rev(OLD, 100),)


def test_rolled_back_leaves_a_split_without_the_new_revision_alone() -> None:
    assert rolled_back((rev(OLD, 100),), NEW, OLD, NEW) == ((rev(OLD, 100),), 0)


def test_rolled_back_matches_entries_by_the_revision_they_resolve_to() -> None:
    # a REVISION entry that names none resolves to "" (never to the latest ready revision): only new="" matches it
    assert rolled_back((TrafficInfo("", 40), rev(NEW, 60)), "", OLD, NEW) == ((rev(NEW, 60), rev(OLD, 40)), 40)


def test_same_split_ignores_order_urls_and_a_latest_entrys_resolved_revision() -> None:
    assert same_split((latest(50, resolved=NEW), rev(OLD, 50)), (rev(OLD, 50), latest(50)))
    assert same_split((replace(rev(OLD, 0, "t"), uri="https://t---x"),), (rev(OLD, 0, "t"),))
    assert not same_split((rev(OLD, 100),), (rev(OLD, 100), rev(NEW, 0, "t")))
    assert not same_split((latest(100),), (rev(NEW, 100),))


def test_describe_names_revisions_percents_and_tags() -> None:
    assert describe(()) == "no traffic entries"
    assert describe((rev(OLD, 90), latest(10, resolved=NEW), rev(NEW, 0, "canary"), latest(0, "x"))) == (
        f"{OLD} 90 %, LATEST ({NEW}) 10 %, {NEW} 0 % (tag canary), LATEST 0 % (tag x)")


def test_an_action_serializes_for_the_report() -> None:
    action = Action("rollback", "done", "rolled back", before=(latest(100, resolved=NEW),), after=(rev(OLD, 100),),
                    planned=(rev(OLD, 100),))
    assert action.to_dict() == {
        "kind": "rollback", "outcome": "done", "detail": "rolled back",
        "before": [{"type": "LATEST", "revision": NEW, "percent": 100, "tag": ""}],
        "after": [{"type": "REVISION", "revision": OLD, "percent": 100, "tag": ""}],
        "planned": [{"type": "REVISION", "revision": OLD, "percent": 100, "tag": ""}], "fix": "",
    }


# --- the update, against the fake Admin API -------------------------------------------------------------------------

@pytest.fixture
def build() -> Build:
    return build_from_dict(load_build("console_cd_trigger"))


@pytest.fixture
def deployed(fake_run: FakeCloudRun, build: Build) -> Target:
    """`orders`: the build's revision serves 100 % through LATEST; the old one is Ready."""
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", build.id)
    resolved = resolve(DeployIntent(service=S, region=R, project=P), build, RunRevisionSource())
    assert (resolved.revision, resolved.previous_revision) == (NEW, OLD)
    fake_run.requests.clear()
    return resolved


def run_act(decided: Plan, tgt: Target, budget_s: float = 30.0) -> Action:
    return asyncio.run(act(decided, tgt, RunRevisionSource(), time.monotonic() + budget_s, poll_s=0.01))


def patches(fake: FakeCloudRun) -> list[str]:
    return [path for method, path in fake.requests if method == "PATCH"]


def service_reads(fake: FakeCloudRun) -> list[str]:
    return [path for method, path in fake.requests if method == "GET" and path.split("?")[0] == SERVICE_PATH]


def api_url(fake: FakeCloudRun, query: str = "") -> str:
    """The URL google-cloud-run's REST transport calls for the service, as its errors quote it."""
    return f"{fake.endpoint}{SERVICE_PATH}?{query}%24alt=json%3Benum-encoding%3Dint"


ROLLED_BACK = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100}]


def test_a_fail_moves_the_traffic_back_once(fake_run: FakeCloudRun, deployed: Target) -> None:
    etag = fake_run.service(P, R, S)["etag"]
    decided = plan("FAIL", deployed, "rollback")
    action = run_act(decided, deployed)
    assert action.outcome == "done", action.detail
    assert action.detail == f"rolled back orders: moved 100 % from {NEW} to {OLD}; traffic now {OLD} 100 %"
    assert fake_run.service_updates == [{"service": SERVICE_PATH[4:], "updateMask": "traffic", "etag": etag,
                                         "traffic": ROLLED_BACK}]
    assert fake_run.service(P, R, S)["traffic"] == ROLLED_BACK
    assert (action.before, action.after, action.planned) == ((latest(100),), (rev(OLD, 100),), (rev(OLD, 100),))
    assert (action.kind, action.fix) == ("rollback", "")

    again = run_act(decided, deployed)  # a redelivery after the rollback worked
    assert (again.outcome, again.detail) == ("already done", f"already rolled back: {OLD} 100 %; nothing sent")
    assert (again.before, again.after, again.planned) == ((rev(OLD, 100),), (rev(OLD, 100),), (rev(OLD, 100),))
    assert len(fake_run.service_updates) == 1


def test_a_plan_without_action_sends_nothing(fake_run: FakeCloudRun, deployed: Target) -> None:
    action = run_act(plan("WARN", deployed, "rollback"), deployed)
    assert (action.kind, action.outcome, action.detail) == ("rollback", "skipped",
                                                            "the verdict is WARN: only a FAIL rolls back")
    assert (action.before, action.after, action.planned, action.fix) == ((latest(100),), (latest(100),), (), "")
    assert fake_run.requests == []


def test_a_plan_that_moves_traffic_needs_a_source(deployed: Target) -> None:
    with pytest.raises(ValueError, match=r"^a rollback that moves traffic needs a traffic source$"):
        asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, None, time.monotonic() + 30))


def test_a_permission_refusal_names_what_is_needed(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.fail_next_update(403)
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert action.outcome == "refused"
    assert action.detail.startswith(f"the Cloud Run API refused to move 100 % from {NEW} back to {OLD}: permission "
                                    f"denied on update traffic of {SERVICE_PATH[4:]}; postdeploy's service account "
                                    "needs run.services.update on service orders")
    assert "run.services.update" in action.fix and "deploy/deploy.sh" in action.fix
    assert len(patches(fake_run)) == 1
    assert fake_run.service(P, R, S)["traffic"] == [{"type": TRAFFIC_LATEST, "percent": 100}]
    assert action.after == action.before == (latest(100),)


@pytest.mark.parametrize("status", [409, 412])
def test_a_concurrent_modification_is_read_once_and_refused(fake_run: FakeCloudRun, deployed: Target,
                                                             status: int) -> None:
    fake_run.fail_next_update(status)
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert action.outcome == "refused", action.detail
    assert action.detail.startswith(f"the Cloud Run API refused to move 100 % from {NEW} back to {OLD} (Cloud Run "
                                    f"Admin API refused update traffic of {SERVICE_PATH[4:]}: the service changed since "
                                    f"it was read ({status} ")
    assert action.detail.endswith(f"traffic is unchanged (LATEST ({NEW}) 100 %) and postdeploy does not try again")
    assert len(patches(fake_run)) == 1
    assert len(service_reads(fake_run)) == 2  # the read before the update, and one after the refusal


def test_a_stale_etag_after_another_rollback_is_already_done(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.race_next_update(ROLLED_BACK)  # a concurrent delivery rolled back between our read and our write
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.outcome, action.after) == ("already done", (rev(OLD, 100),)), action.detail
    assert action.detail == f"already rolled back by another update meanwhile: {OLD} 100 %"
    assert len(patches(fake_run)) == 1


def test_a_stale_etag_after_a_newer_deploy_keeps_the_newer_deploy(fake_run: FakeCloudRun, deployed: Target) -> None:
    newer = [{"type": TRAFFIC_REVISION, "revision": "orders-00043-newer", "percent": 100}]
    fake_run.race_next_update(newer)
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert action.outcome == "refused"
    assert action.detail.endswith("because the service changed meanwhile (now orders-00043-newer 100 %): not rolled "
                                  "back, so that change is kept")
    assert (action.before, action.after) == ((latest(100),), (rev("orders-00043-newer", 100),))
    assert fake_run.service(P, R, S)["traffic"] == newer
    assert len(patches(fake_run)) == 1


def test_traffic_changed_since_the_validation_is_not_touched(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.set_traffic(P, R, S, [{"type": TRAFFIC_REVISION, "revision": OTHER, "percent": 100}])
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.outcome, action.detail) == ("refused", f"traffic of orders changed since the validation read it "
                                                          f"(now {OTHER} 100 %): not rolled back, so a newer change is kept")
    assert patches(fake_run) == []


def test_a_previous_revision_no_longer_ready_is_skipped(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.revision(P, R, S, OLD)["conditions"][0].update(state=CONDITION_FAILED, message="Image not found")
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.outcome, action.detail) == ("skipped", f"previous revision {OLD} is not Ready: Image not found; "
                                                          "no rollback to a revision that cannot serve")
    assert patches(fake_run) == []


def test_a_server_error_fails_without_a_retry(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.fail_next_update(500)
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.outcome, action.fix) == ("failed", "")
    assert action.detail == (f"could not move 100 % from {NEW} back to {OLD}: Cloud Run Admin API failed on update "
                             f"traffic of {SERVICE_PATH[4:]}: 500 PATCH {api_url(fake_run, 'updateMask=traffic&')}: "
                             "injected failure 500")  # a Transient error: nothing said of the traffic
    assert len(patches(fake_run)) == 1
    assert fake_run.requests[-1][0] == "PATCH"  # nothing after it: no retry, no polling


def test_an_operation_that_ends_in_error_fails(fake_run: FakeCloudRun, deployed: Target) -> None:
    fake_run.fail_next_service_operation(13, "Revision orders-00041-old could not be reached")
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert action.outcome == "failed"
    assert "Revision orders-00041-old could not be reached" in action.detail
    assert fake_run.service(P, R, S)["traffic"] == [{"type": TRAFFIC_LATEST, "percent": 100}]


def test_a_spent_deadline_sends_nothing(fake_run: FakeCloudRun, deployed: Target) -> None:
    action = run_act(plan("FAIL", deployed, "rollback"), deployed, budget_s=-1.0)
    assert (action.outcome, action.detail) == ("failed", f"no time left in the validation's deadline to move 100 % "
                                                         f"from {NEW} back to {OLD}; nothing sent")
    assert fake_run.requests == []


def test_an_operation_still_running_at_the_deadline_fails_and_says_it_may_land(fake_run: FakeCloudRun,
                                                                                 deployed: Target) -> None:
    fake_run.service_operation_polls = 10**9  # never done
    action = run_act(plan("FAIL", deployed, "rollback"), deployed, budget_s=0.5)
    assert action.outcome == "failed"
    assert "the API accepted the update but it had not finished after" in action.detail
    assert "it may still take effect" in action.detail
    assert len(patches(fake_run)) == 1


# --- what act passes to the source, on a clock that only moves when a test says so -----------------------------------

NOT_GIVEN = -1.0  # a timeout or poll interval the caller left out


@dataclass
class Clock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now


class Spy:
    """RunRevisionSource against the fake, recording the timeout (and poll interval) ``act`` passes to each call; it
    forwards generous ones, may set ``clock`` to ``jump[call]`` once a call is made, or raise ``fail[call]`` instead."""

    def __init__(self, clock: Clock | None = None, jump: dict[str, float] | None = None,
                 fail: dict[str, Exception] | None = None) -> None:
        self.real, self.clock, self.jump, self.fail = RunRevisionSource(), clock, jump or {}, fail or {}
        self.calls: list[tuple[str, float, float]] = []

    def _called(self, call: str, timeout_s: float, poll_s: float = NOT_GIVEN) -> None:
        self.calls.append((call, timeout_s, poll_s))
        if call in self.fail:
            raise self.fail[call]
        if self.clock is not None and call in self.jump:
            self.clock.now = self.jump[call]

    def get_traffic(self, project: str, region: str, name: str, timeout_s: float = NOT_GIVEN) -> TrafficState:
        self._called("get_traffic", timeout_s)
        return self.real.get_traffic(project, region, name, 10.0)

    def get_revision(self, project: str, region: str, service: str, revision: str,
                     timeout_s: float = NOT_GIVEN) -> RevisionInfo:
        self._called("get_revision", timeout_s)
        return self.real.get_revision(project, region, service, revision, 10.0)

    def update_traffic(self, project: str, region: str, name: str, traffic: tuple[TrafficInfo, ...], *, etag: str,
                       timeout_s: float, poll_s: float = NOT_GIVEN) -> TrafficState:
        self._called("update_traffic", timeout_s, poll_s)
        return self.real.update_traffic(project, region, name, traffic, etag=etag, timeout_s=10.0, poll_s=0.01)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock()
    monkeypatch.setattr(rollback, "time", frozen)
    return frozen


def test_each_call_gets_what_is_left_of_the_deadline_and_the_default_poll(fake_run: FakeCloudRun, deployed: Target,
                                                                           clock: Clock) -> None:
    spy = Spy()
    action = asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, spy, clock.now + 25.0))
    assert action.outcome == "done", action.detail
    assert spy.calls == [("get_traffic", 25.0, NOT_GIVEN), ("get_revision", 25.0, NOT_GIVEN),
                         ("update_traffic", 25.0, 1.0)]


def test_a_deadline_reached_exactly_sends_nothing(fake_run: FakeCloudRun, deployed: Target, clock: Clock) -> None:
    spy = Spy()
    action = asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, spy, clock.now))
    assert (action.outcome, action.detail) == ("failed", f"no time left in the validation's deadline to move 100 % "
                                                         f"from {NEW} back to {OLD}; nothing sent")
    assert spy.calls == [] and fake_run.requests == []


def test_a_deadline_reached_while_reading_the_previous_revision_sends_nothing(fake_run: FakeCloudRun, deployed: Target,
                                                                             clock: Clock) -> None:
    deadline = clock.now + 25.0
    spy = Spy(clock, jump={"get_revision": deadline})
    action = asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, spy, deadline))
    assert (action.kind, action.outcome, action.detail) == (
        "rollback", "failed", f"no time left in the validation's deadline to move 100 % from {NEW} back to {OLD}; "
                              "nothing sent")
    assert (action.before, action.after, action.planned, action.fix) == ((latest(100),), (latest(100),),
                                                                         (rev(OLD, 100),), "")
    assert [call for call, *_ in spy.calls] == ["get_traffic", "get_revision"]
    assert patches(fake_run) == []


@pytest.mark.parametrize("left", [0.0, 0.5])
def test_a_refused_update_is_read_again_only_with_time_left(fake_run: FakeCloudRun, deployed: Target, clock: Clock,
                                                            left: float) -> None:
    deadline = clock.now + 25.0
    fake_run.fail_next_update(409)
    spy = Spy(clock, jump={"update_traffic": deadline - left})
    action = asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, spy, deadline))
    refused = (f"Cloud Run Admin API refused update traffic of {SERVICE_PATH[4:]}: the service changed since it was "
               f"read (409 PATCH {api_url(fake_run, 'updateMask=traffic&')}: injected failure 409)")
    move = f"move 100 % from {NEW} back to {OLD}"
    assert (action.kind, action.outcome, action.detail) == ("rollback", "refused", (
        f"the Cloud Run API refused to {move}: {refused}" if left == 0 else
        f"the Cloud Run API refused to {move} ({refused}); traffic is unchanged (LATEST ({NEW}) 100 %) and postdeploy "
        "does not try again"))
    assert (action.before, action.after, action.planned, action.fix) == ((latest(100),), (latest(100),),
                                                                         (rev(OLD, 100),), "")
    assert [call for call, *_ in spy.calls] == ["get_traffic", "get_revision", "update_traffic"] + (
        [] if left == 0 else ["get_traffic"])
    assert len(service_reads(fake_run)) == (1 if left == 0 else 2) and len(patches(fake_run)) == 1


def test_a_previous_revision_gone_is_skipped(fake_run: FakeCloudRun, deployed: Target) -> None:
    del fake_run.revisions[fake_run.revision_name(P, R, S, OLD)]
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.kind, action.outcome, action.detail) == (
        "rollback", "skipped", f"previous revision {OLD} is gone; no rollback to a revision that cannot serve")
    assert (action.before, action.after, action.planned, action.fix) == ((latest(100),), (latest(100),),
                                                                         (rev(OLD, 100),), "")
    assert patches(fake_run) == []


def test_a_service_gone_fails_and_says_traffic_is_unchanged(fake_run: FakeCloudRun, deployed: Target) -> None:
    del fake_run.services[fake_run.service_name(P, R, S)]
    action = run_act(plan("FAIL", deployed, "rollback"), deployed)
    assert (action.kind, action.outcome, action.detail) == (
        "rollback", "failed", f"could not move 100 % from {NEW} back to {OLD}: get {SERVICE_PATH[4:]}: not found "
                              f"(GET {api_url(fake_run)}: Resource 'orders' of kind 'SERVICE' in region '{R}' in "
                              f"project '{P}' does not exist.); traffic unchanged as far as postdeploy knows")
    assert (action.before, action.after, action.planned, action.fix) == ((latest(100),), (latest(100),),
                                                                         (rev(OLD, 100),), "")
    assert patches(fake_run) == []


def test_an_error_with_a_fix_passes_the_fix_on(fake_run: FakeCloudRun, deployed: Target) -> None:
    spy = Spy(fail={"get_traffic": NoCredentials("no Google credentials to call Cloud Run")})
    action = asyncio.run(act(plan("FAIL", deployed, "rollback"), deployed, spy, time.monotonic() + 30))
    assert (action.outcome, action.detail, action.fix) == (
        "failed", f"could not move 100 % from {NEW} back to {OLD}: no Google credentials to call Cloud Run; traffic "
                  "unchanged as far as postdeploy knows", NoCredentials.fix)
    assert fake_run.requests == []


def test_the_traffic_after_a_rollback_names_the_revision_latest_serves(fake_run: FakeCloudRun) -> None:
    """NEW serves 40 % by name, LATEST (now OTHER) 60 %: LATEST stays, and the detail says which revision it serves."""
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", "build-1")
    fake_run.add_revision(P, R, S, OTHER, image="img", create_time="2026-11-25T11:00:00.000000Z")
    fake_run.service(P, R, S)["latestReadyRevision"] = fake_run.revision_name(P, R, S, OTHER)
    fake_run.set_traffic(P, R, S, [{"type": TRAFFIC_LATEST, "percent": 60},
                                   {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 40}])
    tgt = target((latest(60, resolved=OTHER), rev(NEW, 40)), latest_ready=OTHER)
    action = run_act(plan("FAIL", tgt, "rollback"), tgt)
    assert (action.outcome, action.detail) == ("done", f"rolled back orders: moved 40 % from {NEW} to {OLD}; traffic "
                                                       f"now LATEST ({OTHER}) 60 %, {OLD} 40 %")
    assert (action.before, action.after, action.planned) == ((latest(60), rev(NEW, 40)), (latest(60), rev(OLD, 40)),
                                                             (latest(60), rev(OLD, 40)))
    assert fake_run.service_updates[0]["traffic"] == [{"type": TRAFFIC_LATEST, "percent": 60},
                                                      {"type": TRAFFIC_REVISION, "revision": OLD, "percent": 40}]


def test_a_refused_update_reports_the_split_as_read_again(fake_run: FakeCloudRun) -> None:
    """The same split, its entries reordered by someone else's update: unchanged, and reported as it now reads."""
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", "build-1")
    split = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 90},
             {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 10}]
    fake_run.set_traffic(P, R, S, split)
    fake_run.race_next_update(split[::-1])
    tgt = target((rev(OLD, 90), rev(NEW, 10)))
    action = run_act(plan("FAIL", tgt, "rollback"), tgt)
    assert action.outcome == "refused" and action.detail.endswith(
        f"traffic is unchanged ({NEW} 10 %, {OLD} 90 %) and postdeploy does not try again")
    assert (action.before, action.after, action.planned) == ((rev(OLD, 90), rev(NEW, 10)), (rev(NEW, 10), rev(OLD, 90)),
                                                             (rev(OLD, 100),))
