"""`python main.py demo`: the whole path offline — a real Cloud Build event, a bundled service on loopback."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
"""


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


def demo_build(build_id: str, now: datetime) -> dict[str, Any]:
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
