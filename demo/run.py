"""`python main.py demo`: the whole path offline — a real Cloud Build event, a bundled service on loopback."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Config
from core.errors import TargetNotFound
from core.model import Condition, RevisionInfo, ServiceInfo, TrafficInfo, stamp

if TYPE_CHECKING:
    from entry.function import Handled

ROOT = Path(__file__).resolve().parents[1]  # the probe imports demo.sample_service from here
PROJECT, REGION, SERVICE = "demo-project", "us-central1", "sample-app"
IMAGE = "us-central1-docker.pkg.dev/demo-project/apps/sample-app:v1.4.2"
NEW_REVISION, PREVIOUS_REVISION = f"{SERVICE}-00002-dem", f"{SERVICE}-00001-abc"
NEW_REVISION_AGE = timedelta(minutes=1)  # the deploy created the new revision this long before the demo runs
DEMO_CONFIG = """
version: 1
defaults:
  checks:
    health:
      path: /health
      expect_json: ['status == "healthy"', 'checks.db == "ok"']
      tries: 3
      interval_s: 0.2
      latency_budget_ms: 500
    smoke:
      paths:
        - name: create-order
          critical: true
          steps:
            - http: {name: create, method: POST, path: /orders, json: {item: book}, expect_status: [201], capture: {order_id: id}}
            - http: {name: read, path: "/orders/${steps.create.order_id}", expect_json: ['item == "book"']}
        - name: list-orders  # read-only: the observation window runs it again every round
          steps:
            - http: {path: /orders, expect_json: ["items != null"]}
        - name: agent-stream
          steps:
            - websocket: {name: chat, path: /ws/agent, send: [{json: {prompt: hi}}],
                          expect_events: [agent_started, agent_thinking, agent_completed], expect: ['answer == "echo: hi"'],
                          timeout_s: 5}
    tests:
      min_pass_rate: 1.0
    logs:
      settle_s: 0  # a local file has no ingestion delay
      timeout_s: 30
    window:
      window_s: 3
      interval_s: 0.5
      paths: [/health]  # and the read-only smoke path list-orders
      max_p95_ms: 500
    imports:
      modules:
        - demo.sample_service:SampleService
        - {name: demo.sample_legacy:SampleService, expect_deprecation: true}
        - json:loads
      commands:
        - {name: interpreter, args: [python, --version], expect_stdout: "^Python 3"}
"""
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="pytest" tests="6" failures="{failures}" errors="0" skipped="0" time="4.2">
    <testcase classname="tests.test_orders" name="test_create_order" time="0.31"/>
    <testcase classname="tests.test_orders" name="test_read_order" time="0.12"/>
    <testcase classname="tests.test_orders" name="test_list_orders" time="0.10"/>
    <testcase classname="tests.test_agent" name="test_stream_events_in_order" time="1.52"/>
    <testcase classname="tests.test_agent" name="test_close_cleanly" time="0.44"/>
    <testcase classname="tests.e2e" name="test_checkout" time="1.71">{checkout}</testcase>
  </testsuite>
</testsuites>
"""
FAILED_CHECKOUT = '<failure message="AssertionError: expected 201, got 500">assert 500 == 201</failure>'


def write_previous_log(path: Path, now: datetime) -> None:
    """The previous revision's lines in the sample service's log: its traffic in the ten minutes before the deploy,
    with a known error at a low rate (the new revision no longer has it: the report lists it as gone)."""
    created = now - NEW_REVISION_AGE
    labels = {"revision_name": PREVIOUS_REVISION}
    lines = []
    for minutes in range(9, 0, -1):
        when = created - timedelta(minutes=minutes)
        lines.append({"timestamp": stamp(when), "severity": "INFO", "message": "GET /orders 200",
                      "httpRequest": {"requestMethod": "GET", "requestUrl": "/orders", "status": 200, "latency": "0.004s"},
                      "logging.googleapis.com/labels": labels})
        if minutes % 3 == 0:
            lines.append({"timestamp": stamp(when + timedelta(seconds=1)), "severity": "ERROR",
                          "message": f"payment gateway timed out after 30 s for order ord_{minutes}x7Qp2",
                          "logging.googleapis.com/labels": labels})
    with path.open("a", encoding="utf-8") as out:
        out.writelines(json.dumps(line) + "\n" for line in lines)


def serve_traffic(url: str) -> None:
    """Users' requests to the new revision between its creation and the validation: what the logs check judges
    (it reads entries up to the moment it starts, not those of the probes running beside it)."""
    import httpx

    with httpx.Client(base_url=url, timeout=5) as http:
        http.get("/orders")
        http.post("/orders", json={"item": "lamp"})
        http.get("/orders")


def write_test_results(root: Path, build_id: str, broken: bool) -> str:
    """The JUnit file the demo build 'uploaded'; returns the artifacts location relative to ``root``."""
    location = f"test-results/{build_id}/"
    folder = root / location
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "junit.xml").write_text(
        JUNIT.format(failures=1 if broken else 0, checkout=FAILED_CHECKOUT if broken else ""), encoding="utf-8")
    return location


@dataclass
class StaticRevisionSource:
    """A RevisionSource holding one service in memory (the demo's stand-in for the Cloud Run API)."""

    services: dict[str, ServiceInfo] = field(default_factory=dict)
    revisions: dict[str, list[RevisionInfo]] = field(default_factory=dict)

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo:
        if name not in self.services:
            raise TargetNotFound(f"service {name} not found")
        return self.services[name]

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]:
        return list(self.revisions.get(service, []))


def demo_build(build_id: str, now: datetime, artifacts_location: str = "") -> dict[str, Any]:
    """A SUCCESS notification for a build that ran `gcloud run deploy` (camelCase, as Cloud Build sends)."""
    return {
        "id": build_id, "projectId": PROJECT, "status": "SUCCESS",
        "createTime": (now - timedelta(minutes=3)).isoformat(), "startTime": (now - timedelta(minutes=3)).isoformat(),
        "finishTime": now.isoformat(),
        "steps": [
            {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", IMAGE, "."]},
            {"name": "gcr.io/google.com/cloudsdktool/cloud-sdk", "entrypoint": "gcloud",
             "args": ["run", "deploy", SERVICE, f"--image={IMAGE}", "--region", REGION,
                      f"--labels=gcb-build-id={build_id}"]},
        ],
        "images": [IMAGE],
        "substitutions": {"TRIGGER_NAME": "sample-app-main", "BRANCH_NAME": "main", "COMMIT_SHA": "4f2a9c1e7b3d"},
        "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{build_id}?project=123456789",
        "artifacts": {"objects": {"location": artifacts_location, "paths": ["reports/junit.xml"]}} if artifacts_location else {},
    }


def demo_message(build: dict[str, Any]) -> dict[str, Any]:
    """Wrap a Build as the Pub/Sub push body Cloud Build's topic delivers."""
    data = base64.b64encode(json.dumps(build).encode()).decode()
    return {"message": {"data": data, "attributes": {"buildId": build["id"], "status": build["status"]},
                        "messageId": f"demo-{build['id']}"}, "subscription": "projects/demo/subscriptions/postdeploy"}


def demo_source(url: str, build_id: str, now: datetime) -> StaticRevisionSource:
    """The service as the Cloud Run API would show it right after the deploy."""
    new, old = NEW_REVISION, PREVIOUS_REVISION
    ready = (Condition("Ready", "CONDITION_SUCCEEDED"),)
    service = ServiceInfo(SERVICE, PROJECT, REGION, uri=url, latest_created_revision=new,
                          latest_ready_revision=new, traffic=(TrafficInfo("", 100, latest=True),))
    revisions = [
        RevisionInfo(old, now - timedelta(days=2), IMAGE.replace("v1.4.2", "v1.4.1"), {}, ready),
        RevisionInfo(new, now - NEW_REVISION_AGE, IMAGE, {"gcb-build-id": build_id}, ready),
    ]
    return StaticRevisionSource({SERVICE: service}, {SERVICE: revisions})


def demo_config() -> Config:
    """The demo's embedded config."""
    return Config.parse(DEMO_CONFIG, "(demo)")


def run_demo(out: str, *, broken: bool, progress: Callable[[str, float], None] | None = None) -> Handled:
    """Validate the sample service as the function would a real deploy; reports go to ``out``."""
    from core.pipeline import Adapters, local_log_source, local_probe_runner
    from demo.sample_service import SampleService
    from entry.function import handle
    from report.store import LocalStore
    from sources.artifacts import open_artifacts

    now = datetime.now(UTC)
    build_id = f"demo-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    # Broken: /health and order creation fail, and every request logs a KeyError traceback the old revision never had.
    mode = "broken+raising" if broken else "healthy"
    with tempfile.TemporaryDirectory(prefix="postdeploy-demo-") as artifacts_root:
        log_path = Path(artifacts_root) / "sample-app.log"
        write_previous_log(log_path, now)
        with SampleService(mode=mode, log_path=log_path, revision=NEW_REVISION) as service:
            serve_traffic(service.url)
            location = write_test_results(Path(artifacts_root), build_id, broken)
            adapters = Adapters(revisions=lambda: demo_source(service.url, build_id, now),
                                store=lambda: LocalStore(out), webhook=lambda: "",
                                artifacts=lambda: open_artifacts(artifacts_root),
                                probe_runner=local_probe_runner(sys.executable, str(ROOT)),
                                log_source=local_log_source(log_path),
                                progress=progress)
            return handle(demo_message(demo_build(build_id, now, location)), config=demo_config(), adapters=adapters)
