"""Promoting on PASS: the traffic updates of a promotion and of its steps, made by ``report.rollback.act`` against the
fake Cloud Run Admin API through the official google-cloud-run client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.model import Target
from report.rollback import Action, Plan, act, same_split
from report.rollout import promote_plan, step_plan
from sources.cloud_run import RunRevisionSource
from tests.report.test_rollout import NEW, OLD, OTHER, SERVING_OLD, STEPS, P, R, S, at_step, rev, target
from tests.servers.fake_run import CONDITION_FAILED, TRAFFIC_REVISION, FakeCloudRun

SERVICE_PATH = f"/v2/projects/{P}/locations/{R}/services/{S}"

BEFORE = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100},
          {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 0, "tag": "canary"}]
AT_10 = [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 90},
         {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 10, "tag": "canary"}]


@pytest.fixture
def no_traffic(fake_run: FakeCloudRun) -> Target:
    """`orders`: OLD serves 100 %, NEW (Ready, the latest) was deployed with --no-traffic --tag=canary."""
    fake_run.add_revision(P, R, S, OLD, image="img:old", create_time="2026-11-20T09:00:00.000000Z")
    fake_run.add_revision(P, R, S, NEW, image="img:new", create_time="2026-11-25T10:03:30.123456Z")
    fake_run.add_service(P, R, S, uri="https://orders-abc-uc.a.run.app", latest_created=NEW, latest_ready=NEW,
                         traffic=BEFORE)
    return target(SERVING_OLD)


def run_act(decided: Plan, tgt: Target) -> Action:
    return asyncio.run(act(decided, tgt, RunRevisionSource(), time.monotonic() + 30.0, poll_s=0.01))


def patches(fake: FakeCloudRun) -> list[str]:
    return [path for method, path in fake.requests if method == "PATCH"]


def traffic(fake: FakeCloudRun) -> list[dict[str, Any]]:
    """The service's traffic as BEFORE spells it (the client leaves a 0 % out)."""
    return [{"type": t["type"], "revision": t["revision"], "percent": t.get("percent", 0),
             **({"tag": t["tag"]} if t.get("tag") else {})} for t in fake.service(P, R, S)["traffic"]]


def test_a_pass_promotes_once(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    etag = fake_run.service(P, R, S)["etag"]
    decided = promote_plan("PASS", no_traffic, "promote", STEPS)
    done = run_act(decided, no_traffic)
    assert (done.kind, done.outcome, done.detail, done.fix) == (
        "promote", "done", f"promoted orders: moved {NEW} from 0 % to 10 %; traffic now {OLD} 90 %, {NEW} 10 % "
                           "(tag canary)", "")
    assert (done.before, done.after, done.planned) == (SERVING_OLD, decided.after, decided.after)
    assert fake_run.service_updates == [{"service": SERVICE_PATH[4:], "updateMask": "traffic", "etag": etag,
                                         "traffic": AT_10}]
    assert traffic(fake_run) == AT_10

    again = run_act(decided, no_traffic)  # a redelivery of the same validation
    assert (again.outcome, again.detail) == ("already done", f"already promoted: {OLD} 90 %, {NEW} 10 % (tag canary); "
                                                             "nothing sent")
    assert same_split(again.before, decided.after) and len(patches(fake_run)) == 1


def test_a_step_that_passes_moves_the_live_split_on(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    fake_run.set_traffic(P, R, S, AT_10)
    tgt, rollout = at_step(SERVING_OLD, STEPS, 1)
    done = run_act(step_plan("PASS", tgt, rollout, 1), tgt)
    assert (done.kind, done.outcome, done.detail) == (
        "promote", "done", f"promoted orders: moved {NEW} from 10 % to 50 %; traffic now {OLD} 50 %, {NEW} 50 % "
                           "(tag canary)")
    assert traffic(fake_run) == [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 50},
                                 {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 50, "tag": "canary"}]


def test_a_step_that_fails_restores_the_split_before_the_rollout(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    fake_run.set_traffic(P, R, S, AT_10)
    tgt, rollout = at_step(SERVING_OLD, STEPS, 1)
    done = run_act(step_plan("FAIL", tgt, rollout, 1), tgt)
    assert (done.kind, done.outcome, done.detail) == (
        "rollback", "done", f"rolled back orders: moved {NEW}'s 10 % back to the split before the rollout; traffic "
                            f"now {OLD} 100 %, {NEW} 0 % (tag canary)")
    assert traffic(fake_run) == BEFORE


@pytest.mark.parametrize("previous", [OLD, ""])
def test_a_failing_step_does_not_restore_a_split_whose_revision_cannot_serve(fake_run: FakeCloudRun, no_traffic: Target,
                                                                             previous: str) -> None:
    fake_run.set_traffic(P, R, S, AT_10)
    fake_run.revision(P, R, S, OLD)["conditions"][0].update(state=CONDITION_FAILED, message="gone bad")
    tgt, rollout = at_step(SERVING_OLD, STEPS, 1, previous=previous)  # what the step resolved as previous is not read
    done = run_act(step_plan("FAIL", tgt, rollout, 1), tgt)
    assert (done.kind, done.outcome, done.detail) == (
        "rollback", "skipped", f"previous revision {OLD} is not Ready: gone bad; no rollback to a revision that cannot "
                               "serve")
    assert patches(fake_run) == [] and traffic(fake_run) == AT_10


@pytest.mark.parametrize(("verdict", "step", "outcome"), [("WARN", 1, "held"), ("PASS", 3, "done")])
def test_a_step_that_moves_nothing_sends_nothing(fake_run: FakeCloudRun, no_traffic: Target, verdict: str, step: int,
                                                 outcome: str) -> None:
    tgt, rollout = at_step(SERVING_OLD, STEPS, step)
    decided = step_plan(verdict, tgt, rollout, step)
    done = run_act(decided, tgt)
    assert (done.kind, done.outcome, done.detail) == ("promote", outcome, decided.reason)
    assert fake_run.requests == []


def test_a_new_revision_not_ready_is_not_promoted(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    fake_run.revision(P, R, S, NEW)["conditions"][0].update(state=CONDITION_FAILED, message="Container failed to start")
    done = run_act(promote_plan("PASS", no_traffic, "promote", STEPS), no_traffic)
    assert (done.kind, done.outcome, done.detail) == (
        "promote", "skipped", f"new revision {NEW} is not Ready: Container failed to start; no promote to a revision "
                              "that cannot serve")
    assert patches(fake_run) == [] and traffic(fake_run) == BEFORE
    reads = [path.split("?")[0] for method, path in fake_run.requests if method == "GET"]
    assert reads == [SERVICE_PATH, f"{SERVICE_PATH}/revisions/{NEW}"]


def test_a_new_revision_gone_is_not_promoted(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    del fake_run.revisions[fake_run.revision_name(P, R, S, NEW)]
    done = run_act(promote_plan("PASS", no_traffic, "promote", STEPS), no_traffic)
    assert (done.outcome, done.detail) == ("skipped", f"new revision {NEW} is gone; no promote to a revision that "
                                                      "cannot serve")
    assert patches(fake_run) == []


def test_traffic_changed_since_the_validation_is_not_promoted(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    fake_run.set_traffic(P, R, S, [{"type": TRAFFIC_REVISION, "revision": OTHER, "percent": 100}])
    done = run_act(promote_plan("PASS", no_traffic, "promote", STEPS), no_traffic)
    assert (done.kind, done.outcome, done.detail) == (
        "promote", "refused", f"traffic of orders changed since the validation read it (now {OTHER} 100 %): not "
                              "promoted, so a newer change is kept")
    assert patches(fake_run) == [] and done.before == (rev(OTHER, 100),)


def test_a_permission_refusal_leaves_the_traffic_and_names_the_fix(fake_run: FakeCloudRun, no_traffic: Target) -> None:
    fake_run.fail_next_update(403)
    done = run_act(promote_plan("PASS", no_traffic, "promote", STEPS), no_traffic)
    assert (done.kind, done.outcome) == ("promote", "refused")
    assert done.detail.startswith(f"the Cloud Run API refused to move {NEW} from 0 % to 10 % of the traffic: "
                                  f"permission denied on update traffic of {SERVICE_PATH[4:]}")
    assert "run.services.update" in done.fix
    assert len(patches(fake_run)) == 1 and traffic(fake_run) == BEFORE
    assert same_split(done.after, SERVING_OLD)

