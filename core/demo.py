"""`python main.py demo`: the whole path offline — a real Cloud Build event, a bundled service on loopback."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.config import Config
from core.errors import TargetNotFound
from core.model import Condition, RevisionInfo, ServiceInfo, TrafficInfo

PROJECT, REGION, SERVICE = "demo-project", "us-central1", "sample-app"
IMAGE = "us-central1-docker.pkg.dev/demo-project/apps/sample-app:v1.4.2"
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
        - name: agent-stream
          steps:
            - websocket: {name: chat, path: /ws/agent, send: [{json: {prompt: hi}}],
                          expect_events: [agent_started, agent_thinking, agent_completed], expect: ['answer == "echo: hi"'],
                          timeout_s: 5}
    tests:
      min_pass_rate: 1.0
    imports:
      modules:
        - core.sample_service:SampleService
        - {name: core.sample_legacy:SampleService, expect_deprecation: true}
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

    def list_services(self, project: str, region: str) -> list[str]:
        return sorted(self.services)

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
    new, old = f"{SERVICE}-00002-dem", f"{SERVICE}-00001-abc"
    ready = (Condition("Ready", "CONDITION_SUCCEEDED"),)
    service = ServiceInfo(SERVICE, PROJECT, REGION, uri=url, latest_created_revision=new,
                          latest_ready_revision=new, traffic=(TrafficInfo("", 100, latest=True),))
    revisions = [
        RevisionInfo(old, now - timedelta(days=2), IMAGE.replace("v1.4.2", "v1.4.1"), {}, ready),
        RevisionInfo(new, now - timedelta(minutes=1), IMAGE, {"gcb-build-id": build_id}, ready),
    ]
    return StaticRevisionSource({SERVICE: service}, {SERVICE: revisions})


def demo_config() -> Config:
    """The demo's embedded config."""
    return Config.parse(DEMO_CONFIG, "(demo)")
