"""deployment: Ready, traffic as intended, image as built."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from checks import deployment
from core.model import Build, CheckContext, CheckResult, Condition, DeployIntent, RevisionInfo, ServiceInfo, Status, Target, TrafficInfo

IMAGE = "gcr.io/acme/orders:1.2"
READY = (Condition("Ready", "CONDITION_SUCCEEDED"),)
REVISION = RevisionInfo("orders-00002-new", image=IMAGE, conditions=READY)
SERVICE = ServiceInfo("orders", "acme", "us-central1", uri="https://o.example", latest_ready_revision="orders-00002-new",
                      traffic=(TrafficInfo("", 100, latest=True),))
BUILD = Build(id="b1", status="SUCCESS", images=(IMAGE,), image_digests={"gcr.io/acme/orders": "sha256:feed"})


def judge(**changes: object) -> CheckResult:
    target = replace(Target(service="orders", region="us-central1", revision="orders-00002-new", previous_revision="orders-00001-old",
                            revision_info=REVISION, service_info=SERVICE, intent=DeployIntent("orders", image=IMAGE)), **changes)  # type: ignore[arg-type]
    return asyncio.run(deployment.run(target, deployment.Config(), CheckContext(http=None, build=BUILD)))


@pytest.mark.parametrize(
    ("changes", "status", "summary"),
    [
        ({}, Status.PASS, "revision orders-00002-new is Ready, serves 100%"),
        ({"revision_info": replace(REVISION, conditions=(Condition("Ready", "CONDITION_FAILED", "Container failed to start"),))},
         Status.FAIL, "expected revision orders-00002-new to be Ready, found CONDITION_FAILED (Container failed to start)"),
        ({"revision_info": replace(REVISION, conditions=())}, Status.FAIL, "found no Ready condition"),
        ({"revision_info": replace(REVISION, image="gcr.io/acme/orders:1.1")}, Status.FAIL,
         "expected image gcr.io/acme/orders:1.2, found gcr.io/acme/orders:1.1"),
        ({"revision_info": replace(REVISION, image="gcr.io/acme/orders@sha256:feed")}, Status.PASS, "is Ready"),
        ({"service_info": replace(SERVICE, traffic=(TrafficInfo("orders-00001-old", 100),))}, Status.WARN,
         "expected orders-00002-new to serve traffic, found 0%"),
        ({"intent": DeployIntent("orders", image=IMAGE, no_traffic=True)}, Status.WARN,
         "expected no traffic on orders-00002-new (--no-traffic), found 100%"),
        ({"intent": DeployIntent("orders", image=IMAGE, no_traffic=True, tag="canary"),
          "url": "https://canary---o.example",
          "service_info": replace(SERVICE, traffic=(TrafficInfo("orders-00001-old", 100),
                                                    TrafficInfo("orders-00002-new", 0, "canary", "https://canary---o.example")))},
         Status.PASS, "takes no traffic (reachable by its tag URL)"),
        ({"intent": DeployIntent("orders", image=IMAGE, no_traffic=True),
          "service_info": replace(SERVICE, traffic=(TrafficInfo("orders-00001-old", 100),))},
         Status.PASS, "takes no traffic and has no tag URL"),
        ({"revision_info": None}, Status.SKIPPED, "no Cloud Run revision data"),
    ],
    ids=["healthy", "not-ready", "no-ready-condition", "wrong-image", "digest-pinned", "no-traffic-unintended",
         "traffic-despite-no-traffic", "no-traffic-by-tag", "no-traffic-no-tag", "url-only"],
)
def test_deployment_verdicts(changes: dict[str, object], status: Status, summary: str) -> None:
    result = judge(**changes)
    assert result.status is status
    assert summary in result.summary


def test_score_is_the_fraction_of_facts_that_hold() -> None:
    result = judge(revision_info=replace(REVISION, image="gcr.io/acme/orders:1.1"))
    assert result.score == pytest.approx(2 / 3)
    assert [e.ok for e in result.evidence] == [True, True, False]
