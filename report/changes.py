"""What changed between the previous revision and the new one, from what the Cloud Run Admin API v2 says of each.

Pure. ``changes`` compares two ``RevisionInfo.config`` dicts (``sources.cloud_run.revision_config``) and, when both
are given, the service's own settings before and now (``sources.cloud_run.service_config``: ingress, …; the API keeps
no history of them, so "before" comes from the previous report). ``target_changes`` does it for a resolved Target and
says why when it cannot. Each change is ``{"what", "before", "after"}``, all strings, in a stable order: image, then
resources, scaling, env, secrets, the rest. A key missing from either side is not compared (an older config).

No secret values, ever. The API gives an env var or a volume from Secret Manager as a reference (``projects/p/secrets/S``
or ``S``) and a version, never the payload, and only those are compared and shown: ``secret env DB_PASSWORD``,
``projects/p/secrets/db version 3`` → ``projects/p/secrets/db version 4``. A plain env var's value is shown, except
under a name that says secret (``…_PASSWORD``, ``…TOKEN``, ``api_key``: core.redact), which is shown as MARKER on both
sides while the change is still listed; probe headers are compared by name only. The report still redacts every string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.model import Target
from core.redact import MARKER, names_secret, secret_name

ADDED = "(added)"  # the "before" of something the new revision added
REMOVED = "(removed)"  # the "after" of something it dropped
NONE = "(none)"

Change = dict[str, str]
Format = Callable[[Any], str]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or NONE
    return str(value) if value not in ("", None) else NONE


def _words(value: Any) -> str:
    return " ".join(str(v) for v in value) if value else NONE


def _cpu_idle(value: Any) -> str:
    return "only during requests" if value else "always allocated"


def _probe(p: Any) -> str:
    if not p:
        return NONE
    kind = p.get("type", "?")
    where = f"{p.get('path', '')} port {p.get('port', 0) or 'default'}".lstrip()
    headers = f" headers {', '.join(p['headers'])}" if p.get("headers") else ""
    service = f" service {p['service']}" if p.get("service") else ""
    return (f"{kind} {where}{headers}{service}, initial delay {p.get('initial_delay_s', 0)}s, period "
            f"{p.get('period_s', 0)}s, timeout {p.get('timeout_s', 0)}s, failure threshold {p.get('failure_threshold', 0)}")


def _interfaces(value: Any) -> str:
    shown = [f"{n.get('network', '') or '?'}/{n.get('subnetwork', '') or '?'}"
             + (f" tags {', '.join(n['tags'])}" if n.get("tags") else "") for n in value or []]
    return "; ".join(shown) or NONE


def _secret(ref: Any) -> str:
    return f"{ref.get('secret', '?')} version {ref.get('version') or 'latest'}"


def _secret_volume(v: Any) -> str:
    items = v.get("items") or {}
    versions = ", ".join(f"{path} version {version or 'latest'}" for path, version in sorted(items.items()))
    at = f" at {v['mount']}" if v.get("mount") else ""
    return f"{v.get('secret', '?')} ({versions}){at}" if versions else f"{v.get('secret', '?')} version latest{at}"


# (config key, what the report calls it, how a value reads), in report order within each group.
IMAGE_AND_RESOURCES: tuple[tuple[str, str, Format], ...] = (
    ("image", "image", _text),
    ("cpu", "cpu", _text),
    ("memory", "memory", _text),
    ("gpu", "gpu", _text),
    ("cpu_idle", "CPU allocation", _cpu_idle),
    ("startup_cpu_boost", "startup CPU boost", _text),
)
SCALING: tuple[tuple[str, str, Format], ...] = (
    ("min_instances", "min instances", _text),
    ("max_instances", "max instances", _text),
    ("concurrency", "concurrency", _text),
)
SERVICE_SCALING: tuple[tuple[str, str, Format], ...] = (
    ("service_min_instances", "service min instances", _text),
)
REST: tuple[tuple[str, str, Format], ...] = (
    ("timeout", "timeout", _text),
    ("service_account", "service account", _text),
    ("startup_probe", "startup probe", _probe),
    ("liveness_probe", "liveness probe", _probe),
    ("vpc_connector", "VPC connector", _text),
    ("vpc_egress", "VPC egress", _text),
    ("vpc_network_interfaces", "VPC network interfaces", _interfaces),
    ("execution_environment", "execution environment", _text),
    ("session_affinity", "session affinity", _text),
    ("cloud_sql_instances", "Cloud SQL instances", _text),
    ("command", "command", _words),
    ("args", "args", _words),
    ("port", "port", _text),
    ("encryption_key", "encryption key", _text),
)
SERVICE_REST: tuple[tuple[str, str, Format], ...] = (
    ("ingress", "ingress", _text),
    ("invoker_iam_disabled", "invoker IAM check disabled", _text),
    ("iap_enabled", "IAP", _text),
    ("default_uri_disabled", "default URL disabled", _text),
)


def _fields(before: Mapping[str, Any], after: Mapping[str, Any], table: tuple[tuple[str, str, Format], ...]) -> list[Change]:
    return [{"what": what, "before": show(before[key]), "after": show(after[key])}
            for key, what, show in table if key in before and key in after and before[key] != after[key]]


def _keyed(prefix: str, before: Any, after: Any, show: Format) -> list[Change]:
    """Entries of two {name: value} dicts that differ, by name; none when either side was not read."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return []
    return [{"what": f"{prefix} {name}", "before": show(before[name]) if name in before else ADDED,
             "after": show(after[name]) if name in after else REMOVED}
            for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]


def _env(before: Any, after: Any) -> list[Change]:
    """Plain env vars; the value of one whose name says secret is MARKER."""
    found = _keyed("env", before, after, str)
    for change in found:
        name = change["what"].removeprefix("env ")
        if secret_name(name) or names_secret(name):
            change.update({side: MARKER for side in ("before", "after") if change[side] not in (ADDED, REMOVED)})
    return found


def changes(previous: Mapping[str, Any], new: Mapping[str, Any], service_before: Mapping[str, Any] | None = None,
            service_now: Mapping[str, Any] | None = None) -> list[Change]:
    """What differs from ``previous`` to ``new`` (revision configs), and from ``service_before`` to ``service_now``
    when both are given; ``[]`` when nothing does. Never a secret's value (see the module's docstring)."""
    service = service_before is not None and service_now is not None
    before_s, now_s = (service_before or {}, service_now or {}) if service else ({}, {})
    return [
        *_fields(previous, new, IMAGE_AND_RESOURCES),
        *_fields(previous, new, SCALING),
        *_fields(before_s, now_s, SERVICE_SCALING),
        *_env(previous.get("env"), new.get("env")),
        *_keyed("secret env", previous.get("secret_env"), new.get("secret_env"), _secret),
        *_keyed("secret volume", previous.get("secret_volumes"), new.get("secret_volumes"), _secret_volume),
        *_fields(previous, new, REST),
        *_fields(before_s, now_s, SERVICE_REST),
        *_keyed("sidecar", previous.get("sidecars"), new.get("sidecars"), _text),
        *_keyed("volume", previous.get("other_volumes"), new.get("other_volumes"), _text),
    ]


def target_changes(target: Target, service_before: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``changes`` entry: ``{"previous": NAME, "changes": [...], "unknown": "", "service": {...}}``.

    ``unknown`` says why nothing was compared (then ``changes`` is empty); ``service`` is the service's own settings
    now, for the next report to pass back as ``service_before`` (the API keeps no history of ingress and the like).
    """
    prev, new, info = target.previous_revision, target.revision_info, target.previous_info
    unknown = ""
    if new is None or not new.config:
        unknown = "the new revision's configuration was not read"
    elif not prev:
        unknown = "there is no previous revision to compare with"
    elif info is None:
        unknown = f"revision {prev} was not among the revisions read"
    elif info.name != prev:  # a rerun keeps its stored report's previous revision
        unknown = f"the configuration read is of {info.name}, not of {prev}, the revision this validation compares with"
    elif not info.config:
        unknown = f"the configuration of {prev} was not read"
    found = [] if unknown or info is None or new is None else changes(info.config, new.config, service_before,
                                                                      target.service_config)
    return {"previous": prev, "changes": found, "unknown": unknown, "service": dict(target.service_config)}
