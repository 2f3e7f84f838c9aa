"""End to end: Pub/Sub emulator push → functions-framework serving main.py → fake Cloud Run Admin API
→ real sample service → gcp-storage-emulator (behind the precondition proxy) → local Slack receiver."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sources.gcp import storage_client
from tests.servers import processes
from tests.servers.data import load_build, push_body
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_monitoring import FakeMonitoring
from tests.servers.fake_run import FakeCloudRun
from tests.servers.gcs_proxy import PreconditionProxy
from tests.servers.slack import SlackReceiver

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """version: 1
defaults:
  checks:
    health: {path: /health, expect_json: ['status == "healthy"'], tries: 2, interval_s: 0.1}
    logs: {settle_s: 0}
    metrics: {wait_for_data_s: 0}
    window: {window_s: 1, interval_s: 0.5, paths: [/health]}
"""


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def publish_build(host: str, project: str, build: dict[str, Any]) -> None:
    processes.publish(host, project, "cloud-builds", json.dumps(build).encode(),
                      {"buildId": build["id"], "status": str(build["status"])})


@contextlib.contextmanager
def deployed(tmp_path: Path, bucket: str, slack: SlackReceiver, host: str) -> Iterator[tuple[Any, PreconditionProxy, str]]:
    """functions-framework serving main.py, pushed to by a `cloud-builds` subscription on the emulator.

    A recording proxy sits in front of the function: it shows every push and the status that acked it.
    Yields (function process, push proxy, Pub/Sub project).
    """
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {"POSTDEPLOY_REPORTS": f"gs://{bucket}/reports", "POSTDEPLOY_SLACK_WEBHOOK": slack.url,
           "POSTDEPLOY_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    with processes.functions_framework(processes.free_port(), env, ROOT) as function, PreconditionProxy(function.url) as push:
        processes.create_topic(host, project, "cloud-builds")
        processes.create_push_subscription(host, project, "postdeploy", "cloud-builds", push.endpoint)
        yield function, push, project


def test_build_lifecycle_gives_exactly_one_report_and_one_message(
        pubsub_emulator: str, fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, slack: SlackReceiver, bucket: str,
        tmp_path: Path, orders_build: dict[str, Any]) -> None:
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    with deployed(tmp_path, bucket, slack, pubsub_emulator) as (function, push, project):
        for status in ("QUEUED", "WORKING"):
            publish_build(pubsub_emulator, project, {**orders_build, "status": status})
        publish_build(pubsub_emulator, project, load_build("docker_only"))
        garbage_id = processes.publish(pubsub_emulator, project, "cloud-builds", b"not json at all", {"status": "SUCCESS"})
        publish_build(pubsub_emulator, project, orders_build)
        publish_build(pubsub_emulator, project, orders_build)  # Pub/Sub is at-least-once: a duplicate SUCCESS

        wait_until(lambda: len(push.statuses) >= 6, 60, "six deliveries to be answered")
        wait_until(lambda: "duplicate delivery" in function.read_log(), 30, "the duplicate to be acked as done")
        time.sleep(1.5)
        log = function.read_log()
        statuses = list(push.statuses)

    assert len(slack.messages) == 1, slack.messages
    message = slack.messages[0]
    assert message["text"].startswith("PASS orders orders-00042-new 100.0/100")
    assert f"https://storage.cloud.google.com/{bucket}/reports/orders/{orders_build['id']}/report.html" in json.dumps(message)

    names = sorted(b.name for b in storage_client().list_blobs(bucket, prefix="reports/"))
    folder = f"reports/orders/{orders_build['id']}"
    assert names == [f"{folder}/claim-orders-00042-new.txt", f"{folder}/done-orders-00042-new.txt",
                     f"{folder}/report.html", f"{folder}/report.json",
                     f"{folder}/report.md", "reports/orders/index.html", "reports/orders/index.json",
                     "reports/orders/latest.json"]
    report = json.loads(storage_client().bucket(bucket).blob(f"{folder}/report.json").download_as_text())
    assert report["schema"] == "postdeploy.report/v1" and report["verdict"] == "PASS"
    assert report["target"]["revision"] == "orders-00042-new"

    # Every message is acked once. The duplicate may arrive while the first delivery is still validating:
    # then it is answered 500 (Busy) and comes back once that run is done.
    records = json_lines(log)
    busy = sum(1 for r in records if "another delivery has been validating" in r.get("message", ""))
    assert statuses.count(200) == 6 and statuses.count(500) == busy, (statuses, busy)
    bad = [r for r in records if r.get("message", "").startswith("acked undecodable message")]
    assert len(bad) == 1 and bad[0]["message_id"] == garbage_id and bad[0]["severity"] == "WARNING"
    assert "expected JSON in the message data, found b'not json at all'" in bad[0]["message"]
    verdict_lines = [r for r in records if r.get("message", "").startswith("PASS orders")]
    assert len(verdict_lines) == 1
    assert verdict_lines[0]["severity"] == "INFO"
    labels = verdict_lines[0]["logging.googleapis.com/labels"]
    assert (labels["build_id"], labels["service"]) == (orders_build["id"], "orders")


def test_cloud_run_api_outage_is_redelivered_then_reported_once(
        pubsub_emulator: str, fake_run: FakeCloudRun, fake_logging: FakeLogging, fake_monitoring: FakeMonitoring,
        slack: SlackReceiver, bucket: str, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    fake_run.fail_next(1, status=500)
    with deployed(tmp_path, bucket, slack, pubsub_emulator) as (function, push, project):
        publish_build(pubsub_emulator, project, orders_build)
        assert slack.wait_for(1, 60), function.read_log()[-3000:]
        time.sleep(1.5)
        log = function.read_log()
        statuses = list(push.statuses)

    assert len(slack.messages) == 1
    assert "transient fault, asking for redelivery" in log
    assert statuses == [500, 200], statuses


def post_event(url: str, body: dict[str, Any], event_id: str) -> int:
    """One Pub/Sub push as Eventarc delivers it: a binary-mode CloudEvent whose data is the push body."""
    headers = {"ce-id": event_id, "ce-source": "//pubsub.googleapis.com/projects/acme-prod/topics/cloud-builds",
               "ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "ce-specversion": "1.0"}
    return httpx.post(url, json=body, headers=headers, timeout=60).status_code


def test_a_duplicate_that_finds_the_validation_in_progress_gets_one_info_line_and_no_traceback(
        fake_run: FakeCloudRun, fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, slack: SlackReceiver,
        tmp_path: Path, orders_build: dict[str, Any]) -> None:
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    reports = tmp_path / "reports"
    # Another delivery claimed this (build, revision) a moment ago and is still validating it.
    claim = reports / "orders" / orders_build["id"] / "claim-orders-00042-new.txt"
    claim.parent.mkdir(parents=True)
    claim.write_text(f"{datetime.now(UTC).isoformat()} the-first-delivery", encoding="utf-8")
    env = {"POSTDEPLOY_REPORTS": str(reports), "POSTDEPLOY_SLACK_WEBHOOK": slack.url, "POSTDEPLOY_CONFIG": str(config),
           "PYTHONUNBUFFERED": "1"}
    with processes.functions_framework(processes.free_port(), env, ROOT) as function:
        statuses = [post_event(function.url, push_body(orders_build, f"m-{i}"), f"e-{i}") for i in range(3)]
        time.sleep(0.5)
        log = function.read_log()

    assert statuses == [500, 500, 500]  # Pub/Sub redelivers each later, when the first delivery has finished
    records = json_lines(log)
    busy = [r for r in records if r.get("message", "").startswith("busy, asking for redelivery: another delivery has been")]
    assert [r["severity"] for r in busy] == ["INFO"] * 3, log[-3000:]
    assert "Traceback" not in log and "Exception on /" not in log and "ERROR" not in log, log[-3000:]
    assert not slack.messages and sorted(p.name for p in claim.parent.iterdir()) == [claim.name]


def test_twenty_concurrent_deliveries_give_one_verdict_event_one_report_and_one_message(
        pubsub_emulator: str, fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, slack: SlackReceiver, bucket: str,
        tmp_path: Path, orders_build: dict[str, Any]) -> None:
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    project = f"verdicts-{uuid.uuid4().hex[:8]}"
    processes.create_topic(pubsub_emulator, project, "postdeploy-verdicts")
    processes.create_pull_subscription(pubsub_emulator, project, "pipeline", "postdeploy-verdicts")
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIG + f"  verdict_topic: projects/{project}/topics/postdeploy-verdicts\n", encoding="utf-8")
    env = {"POSTDEPLOY_REPORTS": f"gs://{bucket}/reports", "POSTDEPLOY_SLACK_WEBHOOK": slack.url,
           "POSTDEPLOY_CONFIG": str(config), "PUBSUB_EMULATOR_HOST": pubsub_emulator, "PYTHONUNBUFFERED": "1"}
    body = push_body(orders_build, "m-1")
    with processes.functions_framework(processes.free_port(), env, ROOT) as function:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda i: post_event(function.url, body, f"e-{i}"), range(20)))
        redelivered = 0
        while 500 in statuses and redelivered < 60:  # Pub/Sub redelivers each one answered 500 (Busy), later
            time.sleep(0.5)
            statuses = [s if s == 200 else post_event(function.url, body, f"r-{redelivered}") for s in statuses]
            redelivered += 1
        log = function.read_log()

    assert statuses == [200] * 20, log[-3000:]
    received = processes.pull(pubsub_emulator, project, "pipeline")
    assert len(received) == 1, received
    message = received[0]
    event = json.loads(message["data"])
    assert event["schema"] == "postdeploy.verdict/v1"
    assert (event["service"], event["revision"], event["previous_revision"]) == ("orders", "orders-00042-new", "orders-00041-old")
    assert (event["build_id"], event["verdict"], event["project"], event["region"]) == (
        orders_build["id"], "PASS", "acme-prod", "us-central1")
    assert event["report_url"] == f"https://storage.cloud.google.com/{bucket}/reports/orders/{orders_build['id']}/report.html"
    assert message["attributes"] == {"service": "orders", "revision": "orders-00042-new", "verdict": "PASS",
                                     "score": f"{event['score']:g}", "build_id": orders_build["id"]}
    assert message["orderingKey"] == "orders"
    assert len(slack.messages) == 1
    done = storage_client().bucket(bucket).blob(f"reports/orders/{orders_build['id']}/done-orders-00042-new.txt")
    assert f"verdict event: published {message['messageId']}" in done.download_as_text()
