"""Target resolution through the official google-cloud-run client against the fake Admin API."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import AccessDenied, RequestRejected, RunApiUnavailable, TargetNotFound
from core.model import Build, Condition, DeployIntent, RevisionInfo, ServiceInfo, TrafficInfo
from probe.web import NO_URL_FIX
from report.changes import target_changes
from sources.cloud_run import RunRevisionSource
from tests.conftest import add_orders_service, load_build
from tests.servers.fake_run import FakeCloudRun
from trigger.events import build_from_dict
from trigger.resolve import filing_name, is_service_name, pick_revision, previous_revision, resolve, url_for

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


def test_missing_service_names_only_the_one_asked_for(fake_run: FakeCloudRun, build: Build) -> None:
    for name in ("api", "web"):
        fake_run.add_service(P, R, name, uri=f"https://{name}.example", latest_created=f"{name}-1", latest_ready=f"{name}-1", traffic=[])
    target = resolve(intent(), build, RunRevisionSource())
    assert target.problem == "service 'orders' not found in us-central1 of acme-prod"
    # The other services of the region are neither listed nor named: a report shows only what was asked for.
    assert [path.split("?")[0] for _, path in fake_run.requests] == [f"/v2/projects/{P}/locations/{R}/services/{S}"]


@pytest.mark.parametrize(
    ("project", "region", "service", "expected"),
    [
        pytest.param(P, R, "a/b", "get projects/acme-prod/locations/us-central1/services/a/b: the Cloud Run client "
                     "refused the resource name (Invalid request.)", id="slash-in-service"),
        pytest.param(P, "..", S, "get projects/acme-prod/locations/../services/orders: the Cloud Run client refused the "
                     "resource name (Value for name must not contain segments that are exactly . or .. .)", id="dot-dot-region"),
        pytest.param("", R, S, "get projects//locations/us-central1/services/orders: the Cloud Run client refused the "
                     "resource name (Invalid request.)", id="empty-project"),
    ],
)
def test_a_resource_name_the_client_refuses_is_request_rejected(fake_run: FakeCloudRun, project: str, region: str,
                                                                service: str, expected: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        RunRevisionSource().get_service(project, region, service)
    assert str(caught.value) == expected
    with pytest.raises(RequestRejected, match="the Cloud Run client refused the resource name"):
        RunRevisionSource().list_revisions(project, region, service)
    assert fake_run.requests == []


def test_a_bad_request_from_the_api_is_request_rejected(fake_run: FakeCloudRun) -> None:
    fake_run.fail_next(1, status=400)
    with pytest.raises(RequestRejected, match=r"^Cloud Run Admin API refused get projects/acme-prod/locations/us-central1/"
                                              r"services/orders as invalid \("):
        RunRevisionSource().get_service(P, R, S)


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


SECRET = "s3ntinel-secret-value"  # what a probe header or an annotation holds: never read into the target
PROBE = {"httpGet": {"path": "/ready", "httpHeaders": [{"name": "Authorization", "value": f"Bearer {SECRET}"}]}}


@pytest.mark.parametrize(("new", "expected"), [
    pytest.param({}, [], id="identical"),
    pytest.param({"resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}},
                  "env": [{"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "db", "version": "4"}}}]},
                 [{"what": "memory", "before": "512Mi", "after": "1Gi"},
                  {"what": "secret env DB_PASSWORD", "before": "db version 3", "after": "db version 4"}], id="changed"),
])
def test_the_target_carries_what_changes_are_read_from(fake_run: FakeCloudRun, build: Build, new: dict[str, object],
                                                       expected: list[dict[str, str]]) -> None:
    old = {"image": IMAGE, "env": [{"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "db", "version": "3"}}}]}
    add_orders_service(fake_run, "https://orders.example", build.id, image=IMAGE)
    for rev_id, container in (("orders-00041-old", old), ("orders-00042-new", {**old, **new})):
        fake_run.revision(P, R, S, rev_id)["containers"][0].update(container, startupProbe=PROBE)
        fake_run.revision(P, R, S, rev_id)["annotations"] = {"note": SECRET}
    fake_run.service(P, R, S)["ingress"] = 2
    source = RunRevisionSource()
    target = resolve(intent(), build, source)
    assert target.previous_info is not None and target.previous_info.name == target.previous_revision == "orders-00041-old"
    assert target.service_config["ingress"] == "internal"
    assert target_changes(target) == {"previous": "orders-00041-old", "changes": expected, "unknown": "",
                                      "service": target.service_config}
    assert [method for method, _ in fake_run.requests] == ["GET", "GET"]  # the service and the list: nothing more
    assert SECRET not in repr(target) and SECRET not in repr(target_changes(target))


# --- pure rules, on in-memory revisions -------------------------------------------------------------------------

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
FINISH = START + timedelta(minutes=5)
BUILD = Build(id="build-7", status="SUCCESS", project_id=P, start_time=START, finish_time=FINISH)
LATEST = "gcr.io/acme-prod/orders:latest"
URI = "https://orders-abc-uc.a.run.app"


def at(seconds: float) -> datetime:
    """A time ``seconds`` after the build started (negative: before it)."""
    return START + timedelta(seconds=seconds)


def rev(name: str, created: datetime | None, *, image: str = "gcr.io/acme-prod/orders:other", build: str = "",
        ready: bool | None = True) -> RevisionInfo:
    """A revision of ``orders``; ``build`` sets its gcb-build-id label, ``ready=None`` leaves out its Ready condition."""
    conditions = () if ready is None else (Condition("Ready", "CONDITION_SUCCEEDED" if ready else "CONDITION_FAILED"),)
    return RevisionInfo(name=name, create_time=created, image=image, labels={"gcb-build-id": build} if build else {},
                        conditions=conditions)


def service(*traffic: TrafficInfo, latest_created: str = "", latest_ready: str = "", uri: str = URI) -> ServiceInfo:
    return ServiceInfo(name=S, project=P, region=R, uri=uri, latest_created_revision=latest_created,
                       latest_ready_revision=latest_ready, traffic=traffic)


def to(revision: str, percent: int, tag: str = "", *, latest: bool = False) -> TrafficInfo:
    """A traffic status entry; a tagged one has its tag URL."""
    return TrafficInfo(revision=revision, percent=percent, tag=tag, uri=f"https://{tag}---orders-abc-uc.a.run.app" if tag else "",
                       latest=latest)


@pytest.mark.parametrize(
    ("revisions", "intent_changes", "build_changes", "expected", "rule"),
    [
        pytest.param([rev("orders-1", at(60), build="build-7"), rev("orders-2", at(90), image=LATEST)],
                     {"image": LATEST}, {}, "orders-1", "label gcb-build-id=build-7", id="label-before-image"),
        pytest.param([rev("orders-1", at(30), build="build-7"), rev("orders-2", at(90), build="build-7")],
                     {}, {}, "orders-2", "label gcb-build-id=build-7", id="label-on-two-newest-wins"),
        pytest.param([rev("orders-1", at(60), build="build-6"), rev("orders-2", at(-60), image=LATEST)],
                     {"image": LATEST}, {}, "orders-2", f"image {LATEST}", id="label-of-another-build-ignored"),
        pytest.param([rev("orders-v2", at(-600)), rev("orders-3", at(60), image=LATEST)],
                     {"image": LATEST, "revision_suffix": "v2"}, {}, "orders-v2", "revision suffix v2",
                     id="suffix-before-image"),
        pytest.param([rev("orders-v1", at(60)), rev("orders-3", at(-60), image=LATEST)],
                     {"image": LATEST, "revision_suffix": "v2"}, {}, "orders-3", f"image {LATEST}",
                     id="suffix-not-found-falls-to-image"),
        pytest.param([rev("orders-1", at(120), image=LATEST), rev("orders-2", at(600), image=LATEST)],
                     {"image": LATEST}, {}, "orders-1", f"image {LATEST}, created during the build",
                     id="latest-tag-redeployed-after-the-build-does-not-win"),
        pytest.param([rev("orders-1", at(60), image=LATEST), rev("orders-2", at(120), image=LATEST),
                      rev("orders-3", at(-60), image=LATEST)],
                     {"image": LATEST}, {}, "orders-2", f"image {LATEST}, created during the build",
                     id="latest-tag-twice-during-the-build-newest-wins"),
        pytest.param([rev("orders-1", at(-7200), image=LATEST), rev("orders-2", at(-3600), image=LATEST),
                      rev("orders-3", at(60))],
                     {"image": LATEST}, {}, "orders-2", f"image {LATEST}", id="no-image-match-during-the-build-newest-match"),
        pytest.param([rev("orders-1", at(-3600), image=LATEST), rev("orders-2", at(60))],
                     {"image": LATEST}, {}, "orders-1", f"image {LATEST}", id="image-before-build-window"),
        pytest.param([rev("orders-1", at(60), image="gcr.io/acme-prod/orders@sha256:abc"), rev("orders-2", at(90))],
                     {"image": "gcr.io/acme-prod/orders:v3"}, {"image_digests": {"gcr.io/acme-prod/orders:v3": "sha256:abc"}},
                     "orders-1", "image gcr.io/acme-prod/orders:v3, created during the build", id="image-by-digest"),
        pytest.param([rev("orders-1", at(60), image="gcr.io/acme-prod/orders:c0ffee"), rev("orders-2", at(90))],
                     {}, {"images": ("gcr.io/acme-prod/web:$COMMIT_SHA", "gcr.io/$PROJECT_ID/orders:$COMMIT_SHA"),
                          "substitutions": {"COMMIT_SHA": "c0ffee"}},
                     "orders-1", "image gcr.io/acme-prod/orders:c0ffee, created during the build",
                     id="no-deploy-image-any-built-image-expanded"),
        pytest.param([rev("orders-1", at(60)), rev("orders-2", at(120)), rev("orders-3", at(-60)), rev("orders-4", at(900))],
                     {"image": LATEST}, {}, "orders-2", "created during the build", id="window-newest-by-create-time"),
        pytest.param([rev("orders-1", at(0))], {}, {}, "orders-1", "created during the build", id="window-starts-at-start"),
        pytest.param([rev("orders-1", at(-1))], {}, {}, "orders-0", "latest created revision (no better evidence)",
                     id="window-excludes-before-start"),
        pytest.param([rev("orders-1", FINISH + timedelta(seconds=30))], {}, {}, "orders-1", "created during the build",
                     id="window-ends-30s-after-finish"),
        pytest.param([rev("orders-1", FINISH + timedelta(seconds=31))], {}, {}, "orders-0",
                     "latest created revision (no better evidence)", id="window-excludes-31s-after-finish"),
        pytest.param([rev("orders-1", at(86400 + 30))], {}, {"finish_time": None}, "orders-1", "created during the build",
                     id="no-finish-time-window-ends-24h-30s-after-start"),
        pytest.param([rev("orders-1", at(86400 + 31))], {}, {"finish_time": None}, "orders-0",
                     "latest created revision (no better evidence)", id="no-finish-time-window-excludes-later"),
        pytest.param([rev("orders-1", at(60))], {}, {"start_time": None}, "orders-0",
                     "latest created revision (no better evidence)", id="no-start-time-no-window"),
        pytest.param([rev("orders-1", None)], {}, {}, "orders-0", "latest created revision (no better evidence)",
                     id="revision-without-create-time-not-in-window"),
    ],
)
def test_pick_revision_rules(revisions: list[RevisionInfo], intent_changes: dict[str, object],
                             build_changes: dict[str, object], expected: str, rule: str) -> None:
    revisions = [*revisions, rev("orders-0", at(-86400))]
    build = replace(BUILD, **build_changes)  # type: ignore[arg-type]

    picked, matched = pick_revision(revisions, service(latest_created="orders-0"), intent(**intent_changes), build)

    assert (picked.name if picked else None, matched) == (expected, rule)


def test_pick_revision_without_any_evidence_finds_nothing() -> None:
    revisions = [rev("orders-1", at(-3600))]

    assert pick_revision(revisions, service(latest_created="orders-9"), intent(), BUILD) == (None, "")


NEW = rev("orders-5", at(60))


@pytest.mark.parametrize(
    ("revisions", "svc", "expected"),
    [
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600))],
                     service(to("orders-1", 30), to("orders-2", 70)), "orders-2", id="serving-highest-share-first"),
        pytest.param([rev("orders-2", at(-600)), rev("orders-1", at(-900))],
                     service(to("orders-2", 30), to("orders-1", 70)), "orders-1", id="serving-share-not-list-order"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600))],
                     service(to("orders-1", 50), to("orders-2", 50)), "orders-2", id="serving-tie-newer-wins"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600))],
                     service(to("orders-1", 1), to("orders-5", 99)), "orders-1", id="serving-one-percent-is-serving"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600), ready=False)],
                     service(to("orders-2", 90), to("orders-1", 10)), "orders-1", id="serving-not-ready-is-not-previous"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600), ready=None)],
                     service(to("orders-1", 10), to("orders-2", 90)), "orders-1", id="serving-without-ready-condition"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600)), replace(NEW, conditions=())],
                     service(to("orders-1", 40), to("", 60, latest=True), latest_ready="orders-2"), "orders-2",
                     id="serving-through-latest-entry"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600))],
                     service(to("orders-5", 100), to("orders-2", 0, "canary")), "orders-1",
                     id="new-takes-all-tagged-zero-percent-skipped"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600))],
                     service(to("", 100, latest=True), latest_ready="orders-5"), "orders-2", id="newest-older-ready"),
        pytest.param([rev("orders-2", at(-600)), rev("orders-1", at(-900))],
                     service(to("orders-5", 100)), "orders-2", id="newest-older-by-create-time-not-list-order"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-2", at(-600), ready=False)],
                     service(to("orders-5", 100)), "orders-1", id="older-not-ready-skipped"),
        pytest.param([rev("orders-1", at(-900)), rev("orders-6", at(600))],
                     service(to("orders-5", 100)), "orders-1", id="newer-than-new-is-not-previous"),
        pytest.param([rev("orders-4", at(60))], service(to("orders-5", 100)), "", id="same-create-time-is-not-older"),
        pytest.param([], service(to("orders-5", 100)), "", id="first-revision-has-none"),
    ],
)
def test_previous_revision(revisions: list[RevisionInfo], svc: ServiceInfo, expected: str) -> None:
    revisions = revisions if any(r.name == NEW.name for r in revisions) else [*revisions, NEW]
    new = next(r for r in revisions if r.name == NEW.name)

    assert previous_revision(revisions, svc, new) == expected


TAG_URL = "https://canary---orders-abc-uc.a.run.app"


@pytest.mark.parametrize(
    ("svc", "intent_changes", "expected"),
    [
        pytest.param(service(to("orders-5", 100)), {}, URI, id="takes-traffic-service-url"),
        pytest.param(service(to("", 100, latest=True), latest_ready="orders-5"), {}, URI, id="latest-entry-service-url"),
        pytest.param(service(to("", 100, latest=True), latest_ready="orders-4"), {}, "", id="latest-is-another-revision"),
        pytest.param(service(to("orders-4", 100), to("orders-5", 0)), {}, "", id="zero-percent-no-url"),
        pytest.param(service(to("orders-5", 100), to("orders-5", 0, "canary")), {}, TAG_URL, id="tag-url-before-service-url"),
        pytest.param(service(to("orders-5", 0, "green"), to("orders-5", 0, "canary")), {"tag": "canary"}, TAG_URL,
                     id="intent-tag-first"),
        pytest.param(service(to("orders-5", 0, "canary"), to("orders-5", 0, "green")), {}, TAG_URL, id="first-tag-otherwise"),
        pytest.param(service(to("orders-4", 0, "canary"), to("orders-5", 100)), {}, URI, id="another-revisions-tag-not-used"),
        pytest.param(service(to("orders-4", 100), to("orders-5", 0, "canary")), {"no_traffic": True, "tag": "canary"},
                     TAG_URL, id="no-traffic-tagged-tag-url"),
        pytest.param(service(to("orders-4", 100)), {"no_traffic": True}, "", id="no-traffic-untagged-no-url"),
        pytest.param(service(to("orders-5", 100)), {"no_traffic": True}, "",
                     id="no-traffic-untagged-no-url-whatever-traffic-says"),
    ],
)
def test_url_for(svc: ServiceInfo, intent_changes: dict[str, object], expected: str) -> None:
    assert url_for(svc, "orders-5", intent(**intent_changes)) == expected


def test_an_untagged_no_traffic_revision_is_not_probed_and_the_checks_say_how_to_tag_it() -> None:
    from core.model import DeployIntent, Target
    from probe.web import no_url

    target = Target(service="orders", revision="orders-5", previous_revision="orders-4",
                    intent=DeployIntent(service="orders", no_traffic=True))
    result = no_url(target)
    assert result.summary == ("nothing to probe: revision orders-5 was deployed with --no-traffic and has no tag URL "
                              "(the service URL reaches orders-4)")
    assert result.next_steps == [NO_URL_FIX] and "--no-traffic --tag=NAME" in NO_URL_FIX


# --- resolve(), on an in-memory RevisionSource -------------------------------------------------------------------


@dataclass
class MemorySource:
    """A RevisionSource holding one region's services; ``error`` is raised by every call."""

    services: dict[str, ServiceInfo] = field(default_factory=dict)
    revisions: list[RevisionInfo] = field(default_factory=list)
    error: Exception | None = None
    calls: list[str] = field(default_factory=list)

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo:
        self.calls.append(f"get {project}/{region}/{name}")
        if self.error:
            raise self.error
        if name not in self.services:
            raise TargetNotFound(name)
        return self.services[name]

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]:
        self.calls.append(f"list revisions {project}/{region}/{service}")
        return self.revisions


def orders_source(*traffic: TrafficInfo) -> MemorySource:
    """``orders`` with an old revision serving and the build's new one."""
    old, new = rev("orders-4", at(-3600)), rev("orders-5", at(60), image=LATEST)
    svc = service(*(traffic or (to("orders-5", 100),)), latest_created="orders-5", latest_ready="orders-5")
    return MemorySource(services={S: svc}, revisions=[old, new])


@pytest.mark.parametrize(
    ("intent_changes", "build_changes", "source", "problem"),
    [
        pytest.param({"service": "$_SERVICE"}, {}, orders_source(), "the build names its service with a shell variable "
                     "('$_SERVICE') that postdeploy cannot expand; name it literally in the deploy step or set _SERVICE_NAME",
                     id="service-shell-variable"),
        pytest.param({"project": ""}, {"project_id": ""}, orders_source(), "could not tell the project of service 'orders' "
                     "from build build-7; set defaults.region in postdeploy.yaml or deploy with --region", id="no-project"),
        pytest.param({}, {}, MemorySource(error=AccessDenied("permission denied on get orders; grant roles/run.viewer")),
                     "permission denied on get orders; grant roles/run.viewer", id="access-denied"),
        pytest.param({}, {}, MemorySource(services={f"svc-{n:02}": service() for n in range(11)}),
                     "service 'orders' not found in us-central1 of acme-prod", id="missing-service-others-not-named"),
        pytest.param({}, {}, MemorySource(error=RequestRejected("get orders: the Cloud Run client refused the resource name")),
                     "get orders: the Cloud Run client refused the resource name", id="request-rejected"),
        pytest.param({"region": "us central1"}, {}, orders_source(),
                     "region 'us central1' of service 'orders' cannot be a Cloud Run region: expected lowercase letters, "
                     "digits and hyphens, starting with a letter, such as us-central1", id="region-with-a-space"),
        pytest.param({"region": "../x"}, {}, orders_source(),
                     "region '../x' of service 'orders' cannot be a Cloud Run region: expected lowercase letters, "
                     "digits and hyphens, starting with a letter, such as us-central1", id="region-traversal"),
        pytest.param({"project": "acme/prod"}, {}, orders_source(),
                     "project 'acme/prod' of service 'orders' cannot be a Google Cloud project: expected a project id or "
                     "number (lowercase letters, digits and hyphens, after 'domain:' for a domain-scoped one)",
                     id="project-with-a-slash"),
        pytest.param({}, {}, MemorySource(services={S: service(latest_created="orders-99")}),
                     "no revision of 'orders' matches build build-7 (revisions: none)", id="no-revisions"),
        pytest.param({}, {}, MemorySource(services={S: service(latest_created="orders-99")},
                                          revisions=[rev(f"orders-{n:02}", at(-86400 - n)) for n in range(11)]),
                     "no revision of 'orders' matches build build-7 (revisions: "
                     + ", ".join(f"orders-{n:02}" for n in range(10)) + ")", id="ten-revisions-named"),
    ],
)
def test_unresolvable_targets_say_why(intent_changes: dict[str, object], build_changes: dict[str, object],
                                      source: MemorySource, problem: str) -> None:
    wanted = intent(**intent_changes)

    target = resolve(wanted, replace(BUILD, **build_changes), source)  # type: ignore[arg-type]

    assert (target.problem, target.revision, target.service, target.intent) == (problem, "", filing_name(wanted.service), wanted)
    # A service that exists but has no matching revision is still described.
    assert (target.service_info is not None) == problem.startswith("no revision")


def test_unresolvable_target_asks_nothing_of_the_api() -> None:
    source = orders_source()

    resolve(intent(service="$_SERVICE"), BUILD, source)
    resolve(intent(region=""), BUILD, source)
    resolve(intent(service="../orders"), BUILD, source)
    resolve(intent(region="us-central1/x"), BUILD, source)
    resolve(intent(project="a b"), BUILD, source)

    assert source.calls == []


# --- names that cannot be a Cloud Run service ---------------------------------------------------------------------

RULE = "1 to 63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen"


def digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("a", True, id="one-letter"),
        pytest.param("orders", True, id="word"),
        pytest.param("orders-api-2", True, id="hyphens-and-digits"),
        pytest.param("a" + "b" * 62, True, id="63-characters"),
        pytest.param("a" + "b" * 63, False, id="64-characters"),
        pytest.param("a1", True, id="ends-with-a-digit"),
        pytest.param("a-", False, id="ends-with-a-hyphen"),
        pytest.param("1a", False, id="starts-with-a-digit"),
        pytest.param("-a", False, id="starts-with-a-hyphen"),
        pytest.param("Orders", False, id="upper-case"),
        pytest.param("a_b", False, id="underscore"),
        pytest.param("a.b", False, id="dot"),
        pytest.param("a/b", False, id="slash"),
        pytest.param("..", False, id="dot-dot"),
        pytest.param("", False, id="empty"),
        pytest.param("a\n", False, id="trailing-newline"),
        pytest.param("é", False, id="non-ascii"),
    ],
)
def test_is_service_name(name: str, valid: bool) -> None:
    assert is_service_name(name) is valid


@pytest.mark.parametrize(
    ("name", "filed_as"),
    [
        pytest.param("orders", "orders", id="a-service-name-is-its-own"),
        pytest.param("..", "invalid_" + digest(".."), id="dot-dot"),
        pytest.param("a/b", "a-b_" + digest("a/b"), id="slash"),
        pytest.param("a_b", "a-b_" + digest("a_b"), id="underscore-differs-from-slash-by-its-hash"),
        pytest.param("Orders", "orders_" + digest("Orders"), id="upper-case"),
        pytest.param("-x-", "x_" + digest("-x-"), id="edge-hyphens-dropped"),
        pytest.param("../../etc/passwd", "etc-passwd_" + digest("../../etc/passwd"), id="traversal"),
        pytest.param("a\n\x00b", "a-b_" + digest("a\n\x00b"), id="control-characters"),
        pytest.param("", "invalid_" + digest(""), id="empty"),
        pytest.param("\ud800", "invalid_" + digest("\ud800"), id="lone-surrogate"),
        pytest.param("x" * 100, "x" * 40 + "_" + digest("x" * 100), id="long-name-cut"),
    ],
)
def test_filing_name(name: str, filed_as: str) -> None:
    assert filing_name(name) == filed_as


def test_filing_names_of_bad_names_are_safe_distinct_and_never_a_service_name() -> None:
    names = ["..", ".", "a/b", "a_b", "a-b-", "A/B", "a\\b", "a b", "a\nb", "", "$_SERVICE", "x" * 3000, "é"]

    filed = [filing_name(n) for n in names]

    assert len(set(filed)) == len(names)
    for name in filed:
        assert re.fullmatch(r"[a-z0-9-]{1,40}_[0-9a-f]{12}", name), name
        assert not is_service_name(name)


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        pytest.param("..", "'..'", id="dot-dot"),
        pytest.param("a/b", "'a/b'", id="slash"),
        pytest.param("Orders", "'Orders'", id="upper-case"),
        pytest.param("a\nb`[x](javascript:alert(1))", "'a\\nb`[x](javascript:alert(1))'", id="newline-and-markdown"),
        pytest.param("", "''", id="empty"),
        pytest.param("x" * 65, "'" + "x" * 64 + "'… (65 characters)", id="long-name-cut"),
        pytest.param("x" * 64, "'" + "x" * 64 + "'", id="64-characters-whole"),
    ],
)
def test_a_name_that_cannot_be_a_service_is_reported_without_asking_the_api(name: str, quoted: str) -> None:
    source, wanted = orders_source(), intent(service=name)

    target = resolve(wanted, BUILD, source)

    assert target.problem == f"service name {quoted} cannot be a Cloud Run service: expected {RULE}"
    assert (target.service, target.intent, target.revision, target.service_info) == (filing_name(name), wanted, "", None)
    assert (target.project, target.region) == (P, R)
    assert source.calls == []


@pytest.mark.parametrize(
    ("intent_changes", "revision", "expected"),
    [
        pytest.param({"image": LATEST}, "", ("orders-5", "orders-4", URI, f"image {LATEST}, created during the build"),
                     id="image-rule"),
        pytest.param({}, "orders-4", ("orders-4", "orders-5", "", "revision given on the command line"), id="revision-given"),
        pytest.param({"region": ""}, "", ("orders-5", "orders-4", URI, "created during the build"),
                     id="default-region-used"),
        pytest.param({"project": ""}, "", ("orders-5", "orders-4", URI, "created during the build"),
                     id="build-project-used"),
    ],
)
def test_resolved_target(intent_changes: dict[str, object], revision: str, expected: tuple[str, str, str, str]) -> None:
    source, wanted = orders_source(), intent(**intent_changes)

    target = resolve(wanted, BUILD, source, default_region=R, revision=revision)

    assert (target.revision, target.previous_revision, target.url, target.match_rule) == expected
    assert (target.problem, target.service, target.project, target.region, target.intent) == ("", S, P, R, wanted)
    chosen = next(r for r in source.revisions if r.name == target.revision)
    assert (target.image, target.revision_info, target.service_info) == (chosen.image, chosen, source.services[S])
    assert source.calls[0] == f"get {P}/{R}/{S}"


@pytest.mark.parametrize(("project", "region"), [("example.com:acme-prod", R), ("123456789012", R), (P, "europe-west1"),
                                                 (P, "northamerica-northeast1"), ("a" * 63, "a" + "b" * 62)],
                         ids=["domain-scoped-project", "project-number", "region-europe", "long-region", "longest"])
def test_every_real_shape_of_project_and_region_is_looked_up(project: str, region: str) -> None:
    source = orders_source()

    target = resolve(intent(project=project, region=region), BUILD, source)

    assert (target.problem, target.revision) == ("", "orders-5")
    assert source.calls[0] == f"get {project}/{region}/{S}"


@pytest.mark.parametrize(("project", "region", "problem"), [
    ("Acme", R, "project 'Acme' of service"), ("acme-", R, "project 'acme-' of service"),
    (":acme", R, "project ':acme' of service"), ("a" * 64, R, "project 'aaaa"),
    (P, "US-CENTRAL1", "region 'US-CENTRAL1' of service"), (P, "1us", "region '1us' of service"),
    (P, "a" + "b" * 63, "region 'abbb"), (P, "us-central1\n", "region 'us-central1\\n' of service"),
], ids=["upper-case-project", "project-ending-in-a-hyphen", "empty-domain", "project-too-long", "upper-case-region",
        "region-starting-with-a-digit", "region-too-long", "region-with-a-newline"])
def test_a_project_or_region_that_cannot_be_one_is_not_looked_up(project: str, region: str, problem: str) -> None:
    source = orders_source()

    target = resolve(intent(project=project, region=region), BUILD, source)

    assert target.problem.startswith(problem) and source.calls == []


def test_revision_given_but_absent_is_a_problem() -> None:
    target = resolve(intent(), BUILD, orders_source(), revision="orders-77")

    assert target.problem == "no revision of 'orders' matches build build-7 (revisions: orders-4, orders-5)"


def test_untagged_no_traffic_revision_resolves_without_url() -> None:
    source = orders_source(to("orders-4", 100), to("orders-5", 0))

    target = resolve(intent(no_traffic=True), BUILD, source)

    assert (target.revision, target.previous_revision, target.url, target.problem) == ("orders-5", "orders-4", "", "")
