"""Target resolution through the official google-cloud-run client against the fake Admin API."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import RunApiUnavailable
from core.events import build_from_dict
from core.gcp import RunRevisionSource
from core.model import Build, DeployIntent
from core.resolve import resolve
from tests.conftest import add_orders_service, load_build
from tests.servers.fake_run import FakeCloudRun

IMAGE = "us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f"
P, R, S = "acme-prod", "us-central1", "orders"


@pytest.fixture
def build() -> Build:
    return build_from_dict(load_build("console_cd_trigger"))


def intent(**changes: object) -> DeployIntent:
    return replace(DeployIntent(service=S, region=R, project=P), **changes)  # type: ignore[arg-type]


def test_label_identifies_the_revision(fake_run: FakeCloudRun, build: Build) -> None:
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", build.id, image=IMAGE)
    target = resolve(intent(), build, RunRevisionSource())
    assert (target.revision, target.previous_revision) == ("orders-00042-new", "orders-00041-old")
    assert target.match_rule == f"label gcb-build-id={build.id}"
    assert target.url == "https://orders-abc-uc.a.run.app"
    assert target.image == IMAGE
    assert target.revision_info is not None and target.revision_info.ready is not None
    assert target.revision_info.ready.state == "CONDITION_SUCCEEDED"
    assert target.service_info is not None and target.service_info.percent_for("orders-00042-new") == 100
    paths = [path for _, path in fake_run.requests]
    assert any(p.startswith(f"/v2/projects/{P}/locations/{R}/services/{S}?") or p == f"/v2/projects/{P}/locations/{R}/services/{S}"
               for p in paths), paths
    assert any(p.startswith(f"/v2/projects/{P}/locations/{R}/services/{S}/revisions") for p in paths), paths


def _two_revisions(fake: FakeCloudRun, newest_image: str, labels: dict[str, str] | None = None) -> None:
    fake.add_revision(P, R, S, "orders-00001-aaa", image="gcr.io/acme-prod/orders:old", create_time="2026-11-20T00:00:00Z")
    fake.add_revision(P, R, S, "orders-v2", image=newest_image, labels=labels, create_time="2026-11-25T10:02:00Z")
    fake.add_revision(P, R, S, "orders-00003-zzz", image="gcr.io/acme-prod/orders:other", create_time="2026-11-26T00:00:00Z")
    fake.add_service(P, R, S, uri="https://orders.example", latest_created="orders-00003-zzz",
                     latest_ready="orders-00003-zzz", traffic=[{"type": 1, "percent": 100}])


@pytest.mark.parametrize(
    ("build_changes", "intent_changes", "image", "expected", "rule"),
    [
        ({}, {"revision_suffix": "v2"}, "gcr.io/acme-prod/orders:x", "orders-v2", "revision suffix v2"),
        ({}, {"image": "gcr.io/acme-prod/orders:new"}, "gcr.io/acme-prod/orders:new", "orders-v2", "image gcr.io/acme-prod/orders:new"),
        ({"image_digests": {"gcr.io/acme-prod/orders": "sha256:abc"}}, {"image": "gcr.io/acme-prod/orders:new"},
         "gcr.io/acme-prod/orders@sha256:abc", "orders-v2", "image"),
        ({}, {}, "gcr.io/acme-prod/orders:x", "orders-v2", "created during the build"),
        ({"start_time": None}, {}, "gcr.io/acme-prod/orders:x", "orders-00003-zzz", "latest created revision"),
    ],
    ids=["revision-suffix", "image", "image-digest", "build-window", "latest-created"],
)
def test_fallback_rules_in_order(fake_run: FakeCloudRun, build: Build, build_changes: dict[str, object],
                                 intent_changes: dict[str, object], image: str, expected: str, rule: str) -> None:
    _two_revisions(fake_run, image)
    b = replace(build, images=(), id="other-build", **build_changes)  # type: ignore[arg-type]
    target = resolve(intent(**intent_changes), b, RunRevisionSource())
    assert target.revision == expected
    assert target.match_rule.startswith(rule)


def test_no_traffic_revision_is_reached_by_its_tag_url(fake_run: FakeCloudRun, build: Build) -> None:
    add_orders_service(fake_run, "https://orders.example", build.id, image=IMAGE)
    fake_run.set_traffic(P, R, S, [
        {"type": 2, "revision": "orders-00041-old", "percent": 100},
        {"type": 2, "revision": "orders-00042-new", "percent": 0, "tag": "canary", "uri": "https://canary---orders.example"},
    ])
    target = resolve(intent(no_traffic=True, tag="canary"), build, RunRevisionSource())
    assert target.url == "https://canary---orders.example"
    assert target.previous_revision == "orders-00041-old"


def test_missing_service_names_what_was_found(fake_run: FakeCloudRun, build: Build) -> None:
    for name in ("api", "web"):
        fake_run.add_service(P, R, name, uri=f"https://{name}.example", latest_created=f"{name}-1", latest_ready=f"{name}-1", traffic=[])
    target = resolve(intent(), build, RunRevisionSource())
    assert target.problem == "service 'orders' not found in us-central1 of acme-prod (found: api, web)"


def test_missing_region_is_a_clear_problem(fake_run: FakeCloudRun, build: Build) -> None:
    target = resolve(intent(region=""), build, RunRevisionSource())
    assert "could not tell the region of service 'orders'" in target.problem
    assert fake_run.requests == []


def test_server_errors_are_transient(fake_run: FakeCloudRun, build: Build) -> None:
    add_orders_service(fake_run, "https://orders.example", build.id, image=IMAGE)
    fake_run.fail_next(1, status=500)
    with pytest.raises(RunApiUnavailable, match="Cloud Run Admin API failed on get"):
        resolve(intent(), build, RunRevisionSource())
    assert resolve(intent(), build, RunRevisionSource()).revision == "orders-00042-new"
