"""Promotion in steps end to end: functions-framework serves `on_build` and `scheduled` from main.py, the Cloud Tasks
emulator calls `scheduled` at each step, the fake Cloud Run Admin API takes the traffic updates through the official
client, the sample service answers on loopback and the Slack receiver counts messages. Nothing runs between steps
but the emulator's queue."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.sample_service import SampleService
from tests.entry.test_cli import ROOT
from tests.servers import processes
from tests.servers.data import push_body
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_run import TRAFFIC_REVISION, FakeCloudRun
from tests.servers.slack import SlackReceiver
from tests.test_e2e import post_event

P, R, S = "acme-prod", "us-central1", "orders"
NEW, OLD = "orders-00042-new", "orders-00041-old"
WAIT_S = 90.0  # the bound on a whole rollout of three 1-second steps; it ends as soon as the last report is stored
CONFIG = """version: 1
defaults:
  on_pass: promote
  steps: [10, 50, 100]
  step_wait_s: 1
  checks:
    health: {path: /health, expect_json: ['status == "healthy"'], tries: 2, interval_s: 0}
    logs: {settle_s: 0}
    metrics: {enabled: false}
    window: {window_s: 2, interval_s: 1}
"""


def candidate(fake_run: FakeCloudRun, sample: SampleService) -> None:
    """The build's revision deployed with --no-traffic --tag candidate (its tag URL is the sample service)."""
    fake_run.set_traffic(P, R, S, [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100},
                                   {"type": TRAFFIC_REVISION, "revision": NEW, "percent": 0, "tag": "candidate",
                                    "uri": sample.url}])


def percents(fake_run: FakeCloudRun) -> dict[str, int]:
    return {t["revision"]: t.get("percent", 0) for t in fake_run.service(P, R, S)["traffic"]}


def stored(out: Path, build_id: str, check: str = "") -> dict[str, Any] | None:
    path = out / S / build_id / check / "report.json" if check else out / S / build_id / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def wait_for(what: str, ready: Any, log: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {WAIT_S:.0f} s; scheduled function log:\n{log()[-4000:]}")
        time.sleep(0.25)


@pytest.fixture
def deployment(fake_run: FakeCloudRun, fake_logging: FakeLogging, sample: SampleService, slack: SlackReceiver,
               tasks_queue: str, pubsub_emulator: str, tmp_path: Path, orders_build: dict[str, Any]) -> Any:
    """Both functions served with the same settings; yields (on_build, scheduled, reports folder)."""
    candidate(fake_run, sample)
    fake_logging.add_request(S, NEW, project=P)
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "reports"
    port = processes.free_port()
    env = {"POSTDEPLOY_REPORTS": str(out), "POSTDEPLOY_SLACK_WEBHOOK": slack.url, "POSTDEPLOY_CONFIG": str(config),
           "POSTDEPLOY_TASKS_QUEUE": tasks_queue, "POSTDEPLOY_TASKS_URL": f"http://127.0.0.1:{port}/",
           "PUBSUB_EMULATOR_HOST": pubsub_emulator, "PYTHONUNBUFFERED": "1"}
    with processes.functions_framework(port, env, ROOT, target="scheduled", signature_type="http") as scheduled, \
            processes.functions_framework(processes.free_port(), env, ROOT) as on_build:
        yield on_build, scheduled, out


def test_a_pass_promotes_in_three_watched_steps_and_a_redelivered_step_changes_nothing(
        deployment: Any, fake_run: FakeCloudRun, slack: SlackReceiver, orders_build: dict[str, Any]) -> None:
    on_build, scheduled, out = deployment
    build_id = orders_build["id"]
    assert post_event(on_build.url, push_body(orders_build), "e-1") == 200
    first = stored(out, build_id)
    assert first is not None and first["verdict"] == "PASS", first["reasons"] if first else on_build.read_log()[-4000:]
    assert [(a["kind"], a["outcome"]) for a in first["actions"]] == [("promote", "done"), ("schedule", "done")]

    wait_for("the rollout's last check finished (report, Slack, done marker)",
             lambda: any((out / S / build_id / "step-3").glob("done-*.txt")), scheduled.read_log)
    steps = [stored(out, build_id, f"step-{n}") for n in (1, 2, 3)]
    assert [s and (s["verdict"], s["rerun"]["kind"], s["rerun"]["step"], s["build"]["status"]) for s in steps] == [
        ("PASS", "step", 1, "STEP"), ("PASS", "step", 2, "STEP"), ("PASS", "step", 3, "STEP")]
    assert [[(a["kind"], a["outcome"]) for a in s["actions"]] for s in steps if s] == [
        [("promote", "done"), ("schedule", "done")], [("promote", "done"), ("schedule", "done")], [("promote", "done")]]
    assert steps[2] is not None and steps[2]["actions"][0]["detail"] == (
        f"rollout complete: {NEW} serves 100 % after 3 steps that passed")
    assert {o["name"] for s in steps if s for o in s["checks"]} <= {"window", "logs", "metrics"}
    tagged = {"type": TRAFFIC_REVISION, "revision": NEW, "tag": "candidate"}
    assert [u["traffic"] for u in fake_run.service_updates] == [
        [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 90}, {**tagged, "percent": 10}],
        [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 50}, {**tagged, "percent": 50}],
        [{**tagged, "percent": 100}]]
    assert percents(fake_run) == {NEW: 100}

    index = json.loads((out / S / "index.json").read_text(encoding="utf-8"))["validations"]
    assert [(e.get("rerun"), e["verdict"]) for e in index] == [("step-3", "PASS"), ("step-2", "PASS"),
                                                               ("step-1", "PASS"), (None, "PASS")]
    # Slack heard of the deploy and of the finished rollout; the steps that moved on were quiet.
    assert [m["text"].split(" ", 1)[0] for m in slack.messages] == ["PASS", "PASS"]
    assert "(step 3 of 3)" in slack.messages[1]["text"]

    updates = len(fake_run.service_updates)
    with httpx.Client(base_url=scheduled.url, timeout=60) as http:
        again = http.post("/", json={"kind": "step", "build_id": build_id, "service": S, "step": 2})
        bad = http.post("/", json={"kind": "step", "build_id": build_id, "service": S, "step": "two"})
        not_yet = http.post("/", json={"kind": "follow-up", "build_id": "never-stored", "service": S, "after": "1h"})
    assert again.status_code == 200 and again.json()["check"] == "step-2" and again.json()["verdict"] == "PASS"
    assert len(fake_run.service_updates) == updates and len(slack.messages) == 2  # answered from the stored step
    assert bad.status_code == 200 and bad.json()["field"] == "step"  # dropped: Cloud Tasks must not retry it
    assert bad.json()["dropped"] == 'step: expected a whole number from 1 to 100, found "two"'
    assert not_yet.status_code == 503 and not_yet.headers["Retry-After"] == "60"  # the first report may still come


def test_a_refused_first_move_leaves_its_check_nothing_to_judge(
        deployment: Any, fake_run: FakeCloudRun, slack: SlackReceiver, orders_build: dict[str, Any]) -> None:
    on_build, scheduled, out = deployment
    build_id = orders_build["id"]
    fake_run.fail_next_update(403)
    assert post_event(on_build.url, push_body(orders_build), "e-1") == 200
    first = stored(out, build_id)
    assert first is not None and [(a["kind"], a["outcome"]) for a in first["actions"]] == [
        ("promote", "refused"), ("schedule", "done")]
    with httpx.Client(base_url=scheduled.url, timeout=60) as http:
        check = http.post("/", json={"kind": "step", "build_id": build_id, "service": S, "step": 1})
    assert check.status_code == 200 and check.json()["status"] == "nothing to check", check.text
    assert check.json()["reason"].startswith("the move to step 1 was not made (refused: the Cloud Run API refused")
    assert stored(out, build_id, "step-1") is None and len(fake_run.service_updates) == 1
    assert percents(fake_run) == {OLD: 100, NEW: 0}
    assert [m["text"].split(" ", 1)[0] for m in slack.messages] == ["PASS"]


def test_a_tasks_outage_leaves_the_traffic_where_it_was(
        fake_run: FakeCloudRun, fake_logging: FakeLogging, sample: SampleService, slack: SlackReceiver,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    candidate(fake_run, sample)
    fake_logging.add_request(S, NEW, project=P)
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", f"127.0.0.1:{processes.free_port()}")  # nothing listens there
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "reports"
    env = {"POSTDEPLOY_REPORTS": str(out), "POSTDEPLOY_SLACK_WEBHOOK": slack.url, "POSTDEPLOY_CONFIG": str(config),
           "POSTDEPLOY_TASKS_QUEUE": "projects/acme-prod/locations/us-central1/queues/postdeploy",
           "POSTDEPLOY_TASKS_URL": "http://127.0.0.1:9/", "PYTHONUNBUFFERED": "1"}
    with processes.functions_framework(processes.free_port(), env, ROOT) as on_build:
        assert post_event(on_build.url, push_body(orders_build), "e-1") == 200
    first = stored(out, orders_build["id"])
    assert first is not None and first["verdict"] == "PASS"
    promote, scheduled = first["actions"]
    assert (promote["kind"], promote["outcome"], scheduled["outcome"]) == ("promote", "failed", "failed")
    assert promote["detail"].startswith("traffic unchanged: nothing moves unwatched, and could not schedule the check "
                                        "of step 1")
    assert "Cloud Tasks" in scheduled["detail"]
    assert fake_run.service_updates == [] and percents(fake_run) == {OLD: 100, NEW: 0}
    assert len(slack.messages) == 1 and "failed" in json.dumps(slack.messages[0])


TRACEBACK = ('Traceback (most recent call last):\n  File "/app/orders/api.py", line 7, in load_customer\n'
             "    return customers[customer_id]\nKeyError: 'customer_id'")


def test_follow_ups_look_again_and_speak_only_when_worse(
        deployment: Any, fake_logging: FakeLogging, fake_run: FakeCloudRun, slack: SlackReceiver, pubsub_emulator: str,
        tmp_path: Path, orders_build: dict[str, Any]) -> None:
    on_build, scheduled, out = deployment
    project = f"verdicts-{uuid.uuid4().hex[:8]}"
    processes.create_topic(pubsub_emulator, project, "verdicts")
    processes.create_pull_subscription(pubsub_emulator, project, "pipeline", "verdicts")
    (tmp_path / "postdeploy.yaml").write_text(  # read at each function's first request
        CONFIG.replace("  on_pass: promote\n", f"  follow_up: [2s, 1h]\n  verdict_topic: projects/{project}/topics/verdicts\n"),
        encoding="utf-8")
    build_id = orders_build["id"]
    assert post_event(on_build.url, push_body(orders_build), "e-1") == 200
    first = stored(out, build_id)
    assert first is not None and first["verdict"] == "PASS", first["reasons"] if first else on_build.read_log()[-4000:]
    assert [(a["kind"], a["outcome"], a.get("check")) for a in first["actions"]] == [
        ("schedule", "done", "follow-up-2s"), ("schedule", "done", "follow-up-1h")]

    wait_for("the 2 s follow-up finished", lambda: any((out / S / build_id / "follow-up-2s").glob("done-*.txt")),
             scheduled.read_log)
    quiet = stored(out, build_id, "follow-up-2s")
    assert quiet is not None and quiet["verdict"] == "PASS" and quiet["rerun"]["kind"] == "follow-up"
    assert quiet["build"]["status"] == "FOLLOW-UP" and quiet["rerun"]["of"]["verdict"] == "PASS"
    assert {c["name"] for c in quiet["checks"]} == {"logs"}  # metrics are disabled in this config
    assert len(slack.messages) == 1  # no worse than the first validation: nothing posted

    for _ in range(3):  # the revision starts failing after the deploy was judged
        fake_logging.add_revision_entry(S, NEW, project=P, severity="ERROR", text=TRACEBACK)
    with httpx.Client(base_url=scheduled.url, timeout=120) as http:  # what Cloud Tasks sends in an hour
        later = http.post("/", json={"kind": "follow-up", "build_id": build_id, "service": S, "after": "1h"})
    assert later.status_code == 200 and later.json()["verdict"] == "FAIL", later.text
    worse = stored(out, build_id, "follow-up-1h")
    assert worse is not None and worse["reasons"][0].startswith("logs: new error since deploy: KeyError")
    assert [m["text"].split(" ", 1)[0] for m in slack.messages] == ["PASS", "FAIL"]
    assert "(follow-up after 1h)" in slack.messages[1]["text"]
    assert fake_run.service_updates == []  # on_fail is report: a follow-up changes nothing
    events = sorted(processes.pull(pubsub_emulator, project, "pipeline"), key=lambda m: m["attributes"].get("rerun", ""))
    assert [(m["attributes"].get("rerun"), m["attributes"]["verdict"]) for m in events] == [
        (None, "PASS"), ("follow-up-1h", "FAIL"), ("follow-up-2s", "PASS")]  # one event each, posted to Slack or not
