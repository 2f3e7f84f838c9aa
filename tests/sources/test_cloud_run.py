"""The traffic reads and the one traffic write of RunRevisionSource, through google-cloud-run against the fake API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import AccessDenied, ConcurrentModification, RunApiUnavailable, TargetNotFound
from core.model import TrafficInfo
from sources.cloud_run import RunRevisionSource
from tests.conftest import add_orders_service
from tests.servers.fake_run import TRAFFIC_REVISION, FakeCloudRun

P, R, S = "acme-prod", "us-central1", "orders"
OLD, NEW = "orders-00041-old", "orders-00042-new"
BACK = (TrafficInfo(OLD, 100), TrafficInfo(NEW, 0, tag="canary"))
DATA = Path(__file__).resolve().parents[1] / "data"
SENTINEL = "s3ntinel-probe-header-value"


@pytest.fixture
def orders(fake_run: FakeCloudRun) -> FakeCloudRun:
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", "build-1")
    return fake_run


def test_get_traffic_reads_the_configured_split_and_the_etag(orders: FakeCloudRun) -> None:
    state = RunRevisionSource().get_traffic(P, R, S)
    assert state.traffic == (TrafficInfo("", 100, latest=True),)
    assert state.etag == orders.service(P, R, S)["etag"] and state.etag
    assert (state.latest_ready_revision, state.latest_created_revision) == (NEW, NEW)


def test_update_traffic_sends_only_traffic_with_the_etag_and_waits_for_the_operation(orders: FakeCloudRun) -> None:
    source = RunRevisionSource()
    etag = source.get_traffic(P, R, S).etag
    state = source.update_traffic(P, R, S, BACK, etag=etag, timeout_s=10, poll_s=0.01)
    assert orders.service_updates == [{
        "service": f"projects/{P}/locations/{R}/services/{S}", "updateMask": "traffic", "etag": etag,
        "traffic": [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100},
                    {"type": TRAFFIC_REVISION, "revision": NEW, "tag": "canary"}],
    }]
    assert state.traffic == BACK and state.etag != etag
    assert any(path.split("?")[0].startswith(f"/v2/projects/{P}/locations/{R}/operations/")
               for method, path in orders.requests if method == "GET")


def test_a_stale_etag_is_a_concurrent_modification(orders: FakeCloudRun) -> None:
    source = RunRevisionSource()
    etag = source.get_traffic(P, R, S).etag
    orders.set_traffic(P, R, S, [{"type": TRAFFIC_REVISION, "revision": NEW, "percent": 100}])
    stale = r"the service changed since it was read \(409 .*: etag \S+ does not match the current etag"
    with pytest.raises(ConcurrentModification, match=stale):
        source.update_traffic(P, R, S, BACK, etag=etag, timeout_s=10, poll_s=0.01)
    assert orders.service(P, R, S)["traffic"] == [{"type": TRAFFIC_REVISION, "revision": NEW, "percent": 100}]


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        pytest.param(403, AccessDenied, "needs run.services.update on service orders", id="403"),
        pytest.param(409, ConcurrentModification, "the service changed since it was read", id="409"),
        pytest.param(412, ConcurrentModification, "the service changed since it was read", id="412"),
        pytest.param(500, RunApiUnavailable, "Cloud Run Admin API failed on update traffic", id="500"),
        pytest.param(503, RunApiUnavailable, "Cloud Run Admin API failed on update traffic", id="503"),
    ],
)
def test_update_errors_are_wrapped_and_sent_once(orders: FakeCloudRun, status: int, error: type[Exception],
                                                 text: str) -> None:
    orders.fail_next_update(status)
    with pytest.raises(error, match=text) as caught:
        RunRevisionSource().update_traffic(P, R, S, BACK, etag="", timeout_s=10, poll_s=0.01)
    assert len(orders.service_updates) == 1
    if status == 403:
        assert "run.services.update" in getattr(caught.value, "fix", "")


def test_get_revision_reads_one_revision(orders: FakeCloudRun) -> None:
    revision = RunRevisionSource().get_revision(P, R, S, OLD)
    assert revision.name == OLD and revision.ready is not None and revision.ready.state == "CONDITION_SUCCEEDED"
    with pytest.raises(TargetNotFound):
        RunRevisionSource().get_revision(P, R, S, "orders-00001-gone")


# --- what a revision runs with (revision_config) and the service's own settings ---------------------------------

RECORDED = "projects/acme-prod/locations/us-central1/services/orders/revisions/orders-00042-new"


def test_the_recorded_revision_reads_as_a_json_safe_config_without_secret_values(orders: FakeCloudRun) -> None:
    orders.revisions[RECORDED] = json.loads((DATA / "probe" / "revision_orders.json").read_text(encoding="utf-8"))
    config = next(r for r in RunRevisionSource().list_revisions(P, R, S) if r.name == NEW).config
    assert config == {
        "image": "us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f",
        "cpu": "1000m", "memory": "1Gi", "gpu": "", "cpu_idle": True, "startup_cpu_boost": True,
        "env": {"APP_ENV": "production"},
        "secret_env": {"DATABASE_URL": {"secret": "projects/123456789/secrets/orders-db-url", "version": "latest"},
                       "STRIPE_KEY": {"secret": "stripe-key", "version": "7"}},
        "startup_probe": {"type": "tcp", "port": 8080, "initial_delay_s": 0, "timeout_s": 240, "period_s": 240,
                          "failure_threshold": 1},
        "liveness_probe": {}, "command": [], "args": [], "port": 8080, "sidecars": {},
        "min_instances": 0, "max_instances": 100, "concurrency": 80, "timeout": "300s",
        "service_account": "orders-runtime@acme-prod.iam.gserviceaccount.com", "execution_environment": "gen2",
        "vpc_connector": "projects/acme-prod/locations/us-central1/connectors/orders-vpc",
        "vpc_egress": "private-ranges-only", "vpc_network_interfaces": [], "session_affinity": False,
        "secret_volumes": {"app-config": {"secret": "orders-config", "mount": "/etc/orders",
                                          "items": {"config.json": "3"}}},
        "cloud_sql_instances": [], "other_volumes": {}, "encryption_key": "",
    }
    assert json.loads(json.dumps(config)) == config
    assert RunRevisionSource().get_revision(P, R, S, NEW).config == config


def test_sidecars_probes_scaling_vpc_and_volumes_are_read(fake_run: FakeCloudRun) -> None:
    probe = {"initialDelaySeconds": 5, "timeoutSeconds": 3, "periodSeconds": 10, "failureThreshold": 6,
             "httpGet": {"path": "/healthz", "port": 8080, "httpHeaders": [{"name": "X-Probe", "value": SENTINEL}]}}
    main = {"name": "app", "image": "gcr.io/acme-prod/orders:2", "ports": [{"containerPort": 8080}], "args": ["-w", "4"],
            "env": [{"name": "LOG_LEVEL", "value": "debug"}], "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
            "startupProbe": probe, "livenessProbe": {"grpc": {"port": 9090, "service": "health"}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp/work"}]}
    fake_run.add_revision(
        P, R, S, NEW, image="unused", create_time="2026-11-25T10:03:30Z",
        containers=[{"name": "otel", "image": "otel/collector:0.99"}, main],
        scaling={"minInstanceCount": 1, "maxInstanceCount": 5}, maxInstanceRequestConcurrency=40, timeout="900s",
        sessionAffinity=True, executionEnvironment=1,
        vpcAccess={"egress": 1, "networkInterfaces": [{"network": "default", "subnetwork": "run", "tags": ["b", "a"]}]},
        volumes=[{"name": "sql", "cloudSqlInstance": {"instances": ["acme-prod:us-central1:orders"]}},
                 {"name": "scratch", "emptyDir": {"medium": 1, "sizeLimit": "256Mi"}}],
    )
    config = RunRevisionSource().get_revision(P, R, S, NEW).config
    assert {k: config[k] for k in ("image", "cpu", "memory", "cpu_idle", "env", "secret_env", "args", "sidecars")} == {
        "image": "gcr.io/acme-prod/orders:2", "cpu": "2", "memory": "2Gi", "cpu_idle": False,
        "env": {"LOG_LEVEL": "debug"}, "secret_env": {}, "args": ["-w", "4"], "sidecars": {"otel": "otel/collector:0.99"}}
    assert config["startup_probe"] == {"type": "http", "path": "/healthz", "port": 8080, "headers": ["X-Probe"],
                                       "initial_delay_s": 5, "timeout_s": 3, "period_s": 10, "failure_threshold": 6}
    assert config["liveness_probe"]["type"] == "grpc" and config["liveness_probe"]["service"] == "health"
    assert (config["min_instances"], config["max_instances"], config["concurrency"], config["timeout"]) == (1, 5, 40, "900s")
    assert (config["session_affinity"], config["execution_environment"], config["vpc_egress"]) == (True, "gen1", "all-traffic")
    assert config["vpc_network_interfaces"] == [{"network": "default", "subnetwork": "run", "tags": ["a", "b"]}]
    assert config["cloud_sql_instances"] == ["acme-prod:us-central1:orders"]
    assert config["other_volumes"] == {"scratch": "in-memory 256Mi at /tmp/work"}
    assert SENTINEL not in json.dumps(config)


@pytest.mark.parametrize(("ingress", "expected"), [
    pytest.param(1, "all", id="all"), pytest.param(2, "internal", id="internal"),
    pytest.param(3, "internal-and-cloud-load-balancing", id="internal-lb"), pytest.param(4, "none", id="none"),
    pytest.param(0, "", id="unspecified"),
])
def test_the_service_settings_are_kept_from_the_read_that_resolving_makes(fake_run: FakeCloudRun, ingress: int,
                                                                         expected: str) -> None:
    fake_run.add_service(P, R, S, uri="https://orders.example", latest_created=NEW, latest_ready=NEW,
                         traffic=[{"type": 1, "percent": 100}], ingress=ingress)
    fake_run.service(P, R, S).update(invokerIamDisabled=True, scaling={"minInstanceCount": 2})
    source = RunRevisionSource()
    assert source.service_config(P, R, S) == {}
    source.get_service(P, R, S)
    calls = len(fake_run.requests)
    assert source.service_config(P, R, S) == {"ingress": expected, "invoker_iam_disabled": True,
                                              "default_uri_disabled": False, "iap_enabled": False,
                                              "service_min_instances": 2}
    assert len(fake_run.requests) == calls
