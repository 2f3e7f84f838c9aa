"""What changed since the previous revision: pure comparisons of revision configs (sources.cloud_run.revision_config)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from core.model import RevisionInfo, Target
from core.redact import MARKER
from report.changes import ADDED, NONE, REMOVED, changes, target_changes

SENTINEL = "hunter2-s3ntinel-value"
TCP = {"type": "tcp", "port": 8080, "initial_delay_s": 0, "timeout_s": 240, "period_s": 240, "failure_threshold": 1}
BASE: dict[str, Any] = {
    "image": "gcr.io/acme-prod/orders:1", "cpu": "1000m", "memory": "512Mi", "gpu": "", "cpu_idle": True,
    "startup_cpu_boost": False, "env": {"APP_ENV": "production", "DB_PASSWORD": SENTINEL},
    "secret_env": {"STRIPE_KEY": {"secret": "projects/p/secrets/stripe", "version": "3"}},
    "startup_probe": TCP, "liveness_probe": {}, "command": [], "args": [], "port": 8080, "sidecars": {},
    "min_instances": 0, "max_instances": 100, "concurrency": 80, "timeout": "300s",
    "service_account": "orders@acme-prod.iam.gserviceaccount.com", "execution_environment": "gen2",
    "vpc_connector": "", "vpc_egress": "", "vpc_network_interfaces": [], "session_affinity": False,
    "secret_volumes": {"config": {"secret": "orders-config", "mount": "/etc/orders", "items": {"config.json": "3"}}},
    "cloud_sql_instances": [], "other_volumes": {}, "encryption_key": "",
}
SERVICE = {"ingress": "all", "invoker_iam_disabled": False, "default_uri_disabled": False, "iap_enabled": False,
           "service_min_instances": 0}


def changed(**fields: Any) -> dict[str, Any]:
    """BASE with ``fields`` replaced; a dict field is merged over BASE's (a None value drops that entry)."""
    new = copy.deepcopy(BASE)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(new.get(key), dict) and key not in ("startup_probe", "liveness_probe"):
            new[key] = {k: v for k, v in {**new[key], **value}.items() if v is not None}
        else:
            new[key] = value
    return new


def one(what: str, before: str, after: str) -> list[dict[str, str]]:
    return [{"what": what, "before": before, "after": after}]


@pytest.mark.parametrize(("new", "expected"), [
    pytest.param(BASE, [], id="identical"),
    pytest.param(changed(image="gcr.io/acme-prod/orders@sha256:ab12"),
                 one("image", "gcr.io/acme-prod/orders:1", "gcr.io/acme-prod/orders@sha256:ab12"), id="image-digest"),
    pytest.param(changed(memory="1Gi"), one("memory", "512Mi", "1Gi"), id="memory"),
    pytest.param(changed(cpu="2"), one("cpu", "1000m", "2"), id="cpu"),
    pytest.param(changed(gpu="1"), one("gpu", NONE, "1"), id="gpu-added"),
    pytest.param(changed(cpu_idle=False), one("CPU allocation", "only during requests", "always allocated"), id="cpu-always"),
    pytest.param(changed(startup_cpu_boost=True), one("startup CPU boost", "no", "yes"), id="cpu-boost"),
    pytest.param(changed(min_instances=2), one("min instances", "0", "2"), id="min-instances"),
    pytest.param(changed(max_instances=10), one("max instances", "100", "10"), id="max-instances"),
    pytest.param(changed(concurrency=1), one("concurrency", "80", "1"), id="concurrency"),
    pytest.param(changed(env={"APP_ENV": "staging"}), one("env APP_ENV", "production", "staging"), id="env-changed"),
    pytest.param(changed(env={"FEATURE_X": "on"}), one("env FEATURE_X", ADDED, "on"), id="env-added"),
    pytest.param(changed(env={"APP_ENV": None}), one("env APP_ENV", "production", REMOVED), id="env-removed"),
    pytest.param(changed(env={"DB_PASSWORD": "other-secret-value"}), one("env DB_PASSWORD", MARKER, MARKER),
                 id="env-secret-name-hidden"),
    pytest.param(changed(env={"DB_PASSWORD": None}), one("env DB_PASSWORD", MARKER, REMOVED), id="env-secret-name-removed"),
    pytest.param(changed(secret_env={"STRIPE_KEY": {"secret": "projects/p/secrets/stripe", "version": "4"}}),
                 one("secret env STRIPE_KEY", "projects/p/secrets/stripe version 3", "projects/p/secrets/stripe version 4"),
                 id="secret-version"),
    pytest.param(changed(secret_env={"DB_URL": {"secret": "db-url", "version": ""}}),
                 one("secret env DB_URL", ADDED, "db-url version latest"), id="secret-env-added"),
    pytest.param(changed(secret_env={"STRIPE_KEY": None}),
                 one("secret env STRIPE_KEY", "projects/p/secrets/stripe version 3", REMOVED), id="secret-env-removed"),
    pytest.param(changed(secret_volumes={"config": {"secret": "orders-config", "mount": "/etc/orders",
                                                    "items": {"config.json": "4"}}}),
                 one("secret volume config", "orders-config (config.json version 3) at /etc/orders",
                     "orders-config (config.json version 4) at /etc/orders"), id="secret-volume-version"),
    pytest.param(changed(secret_volumes={"tls": {"secret": "tls", "mount": "/tls", "items": {}}}),
                 one("secret volume tls", ADDED, "tls version latest at /tls"), id="secret-volume-added"),
    pytest.param(changed(timeout="900s"), one("timeout", "300s", "900s"), id="timeout"),
    pytest.param(changed(service_account="other@acme-prod.iam.gserviceaccount.com"),
                 one("service account", "orders@acme-prod.iam.gserviceaccount.com", "other@acme-prod.iam.gserviceaccount.com"),
                 id="service-account"),
    pytest.param(changed(startup_probe={**TCP, "type": "http", "path": "/healthz", "headers": ["X-Probe"],
                                        "period_s": 10, "failure_threshold": 3}),
                 one("startup probe", "tcp port 8080, initial delay 0s, period 240s, timeout 240s, failure threshold 1",
                     "http /healthz port 8080 headers X-Probe, initial delay 0s, period 10s, timeout 240s, failure "
                     "threshold 3"), id="startup-probe"),
    pytest.param(changed(liveness_probe={"type": "grpc", "port": 0, "service": "health", "initial_delay_s": 0,
                                         "timeout_s": 1, "period_s": 10, "failure_threshold": 3}),
                 one("liveness probe", NONE, "grpc port default service health, initial delay 0s, period 10s, timeout 1s, "
                     "failure threshold 3"), id="liveness-probe-added"),
    pytest.param(changed(vpc_connector="projects/p/locations/r/connectors/c", vpc_egress="all-traffic"),
                 [{"what": "VPC connector", "before": NONE, "after": "projects/p/locations/r/connectors/c"},
                  {"what": "VPC egress", "before": NONE, "after": "all-traffic"}], id="vpc-connector"),
    pytest.param(changed(vpc_network_interfaces=[{"network": "default", "subnetwork": "run", "tags": ["a", "b"]}]),
                 one("VPC network interfaces", NONE, "default/run tags a, b"), id="direct-vpc"),
    pytest.param(changed(execution_environment="gen1"), one("execution environment", "gen2", "gen1"), id="gen1"),
    pytest.param(changed(session_affinity=True), one("session affinity", "no", "yes"), id="session-affinity"),
    pytest.param(changed(cloud_sql_instances=["p:r:db"]), one("Cloud SQL instances", NONE, "p:r:db"), id="cloud-sql"),
    pytest.param(changed(args=["--workers", "4"]), one("args", NONE, "--workers 4"), id="args"),
    pytest.param(changed(sidecars={"otel": "otel/collector:1"}), one("sidecar otel", ADDED, "otel/collector:1"), id="sidecar"),
    pytest.param(changed(other_volumes={"scratch": "in-memory at /tmp"}), one("volume scratch", ADDED, "in-memory at /tmp"),
                 id="volume"),
])
def test_one_change(new: dict[str, Any], expected: list[dict[str, str]]) -> None:
    assert changes(BASE, new) == expected


def test_order_is_image_resources_scaling_env_secrets_then_the_rest() -> None:
    new = changed(timeout="60s", env={"A": "1"}, secret_env={"S": {"secret": "s", "version": "1"}}, max_instances=3,
                  memory="1Gi", image="gcr.io/acme-prod/orders:2", session_affinity=True, cpu="2")
    after = {**SERVICE, "ingress": "internal", "service_min_instances": 1}
    assert [c["what"] for c in changes(BASE, new, SERVICE, after)] == [
        "image", "cpu", "memory", "max instances", "service min instances", "env A", "secret env S", "timeout",
        "session affinity", "ingress"]


@pytest.mark.parametrize(("before", "now", "expected"), [
    pytest.param(SERVICE, {**SERVICE, "ingress": "internal"}, one("ingress", "all", "internal"), id="ingress"),
    pytest.param(SERVICE, {**SERVICE, "invoker_iam_disabled": True}, one("invoker IAM check disabled", "no", "yes"),
                 id="public"),
    pytest.param(None, {**SERVICE, "ingress": "internal"}, [], id="no-before-nothing-compared"),
    pytest.param(SERVICE, None, [], id="no-now-nothing-compared"),
    pytest.param(SERVICE, SERVICE, [], id="same"),
])
def test_service_settings_are_compared_only_when_both_are_known(before: dict[str, Any] | None,
                                                                now: dict[str, Any] | None, expected: list[Any]) -> None:
    assert changes(BASE, BASE, before, now) == expected


def test_a_key_missing_on_either_side_is_not_compared() -> None:
    older = {k: v for k, v in BASE.items() if k not in ("session_affinity", "env")}
    new = changed(session_affinity=True, env={"A": "1"}, memory="1Gi")
    assert changes(older, new) == one("memory", "512Mi", "1Gi")
    assert changes(new, older) == one("memory", "1Gi", "512Mi")


def test_no_secret_value_appears_whatever_changes() -> None:
    moved = changed(env={"DB_PASSWORD": None, "API_TOKEN": SENTINEL},
                    secret_env={"DB_PASSWORD": {"secret": "projects/p/secrets/db", "version": "4"}})
    found = changes(BASE, moved) + changes(moved, BASE)
    assert {"what": "secret env DB_PASSWORD", "before": ADDED, "after": "projects/p/secrets/db version 4"} in found
    assert {"what": "env API_TOKEN", "before": ADDED, "after": MARKER} in found
    assert SENTINEL not in json.dumps(found)


def info(name: str, config: dict[str, Any]) -> RevisionInfo:
    return RevisionInfo(name, config=config)


NEW, OLD = "orders-00042-new", "orders-00041-old"


@pytest.mark.parametrize(("target", "unknown"), [
    pytest.param(Target("orders", previous_revision=OLD), "the new revision's configuration was not read", id="unresolved"),
    pytest.param(Target("orders", revision=NEW, revision_info=info(NEW, {})),
                 "the new revision's configuration was not read", id="no-config"),
    pytest.param(Target("orders", revision=NEW, revision_info=info(NEW, BASE)),
                 "there is no previous revision to compare with", id="first-revision"),
    pytest.param(Target("orders", revision=NEW, previous_revision=OLD, revision_info=info(NEW, BASE)),
                 f"revision {OLD} was not among the revisions read", id="previous-not-listed"),
    pytest.param(Target("orders", revision=NEW, previous_revision=OLD, revision_info=info(NEW, BASE),
                        previous_info=info("orders-00040-x", BASE)),
                 f"the configuration read is of orders-00040-x, not of {OLD}, the revision this validation compares with",
                 id="rerun-with-another-previous"),
    pytest.param(Target("orders", revision=NEW, previous_revision=OLD, revision_info=info(NEW, BASE),
                        previous_info=info(OLD, {})), f"the configuration of {OLD} was not read", id="previous-no-config"),
])
def test_target_changes_says_why_it_cannot_compare(target: Target, unknown: str) -> None:
    assert target_changes(target) == {"previous": target.previous_revision, "changes": [], "unknown": unknown,
                                      "service": {}}


def test_target_changes_compares_the_previous_revision_and_hands_the_service_settings_on() -> None:
    now = {**SERVICE, "ingress": "internal"}
    target = Target("orders", revision=NEW, previous_revision=OLD, revision_info=info(NEW, changed(memory="1Gi")),
                    previous_info=info(OLD, BASE), service_config=now)
    assert target_changes(target) == {"previous": OLD, "changes": one("memory", "512Mi", "1Gi"), "unknown": "",
                                      "service": now}
    assert target_changes(target, SERVICE)["changes"] == one("memory", "512Mi", "1Gi") + one("ingress", "all", "internal")
