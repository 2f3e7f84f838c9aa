"""Cloud Run Admin API v2 (google-cloud-run) behind ``core.model.RevisionSource``: services, their traffic and revisions;
and the one write postdeploy makes to a service, moving its traffic (a rollback)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import AccessDenied, ConcurrentModification, RequestRejected, RunApiUnavailable, TargetNotFound
from core.model import Condition, RevisionInfo, ServiceInfo, TrafficInfo
from sources.gcp import MIN_TIMEOUT_S, RUN_ENDPOINT_ENV, RUN_TIMEOUT_S, client_kwargs, short

READ_ROLE = "roles/run.viewer"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
FIX_UPDATE = ("run deploy/deploy.sh again with --service SERVICE: with on_fail: rollback in the config it grants "
              "run.services.update on that service only; if Cloud Run also asks for iam.serviceAccounts.actAs on the "
              "service's runtime account (its docs list it for changing traffic), grant that on the account alone, "
              "or set on_fail: report")
# requests/urllib3 refuse a timeout <= 0 with a ValueError that would read as a refused name: a spent budget still
# sends with this much, and ends as a timeout.


@dataclass(frozen=True)
class TrafficState:
    """A service's traffic as configured (``traffic``, not the observed statuses) and the etag it was read at."""

    traffic: tuple[TrafficInfo, ...]
    etag: str = ""
    latest_ready_revision: str = ""
    latest_created_revision: str = ""


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _revision_info(r: Any) -> RevisionInfo:
    return RevisionInfo(
        name=short(r.name),
        create_time=_time(r.create_time),
        image=r.containers[0].image if r.containers else "",
        labels=dict(r.labels),
        conditions=tuple(
            Condition(type=c.type_, state=c.state.name, message=c.message, reason=c.reason.name if c.reason else "")
            for c in r.conditions
        ),
        service_account=r.service_account,
        log_uri=r.log_uri,
        config=revision_config(r),
    )


def revision_config(r: Any) -> dict[str, Any]:
    """What a v2 Revision runs with, JSON-safe, for ``report.changes``: a secret appears only as its name and version.

    Its serving container (the one with a port, else the first) is flattened: ``image``, ``cpu``, ``memory``, ``gpu``,
    ``cpu_idle`` (CPU only during requests), ``startup_cpu_boost``, ``env`` (plain values), ``secret_env`` ({NAME:
    {secret, version}}), ``startup_probe``/``liveness_probe``, ``command``, ``args``, ``port``; other containers are
    ``sidecars`` {name: image}. Then ``min_instances``, ``max_instances``, ``concurrency``, ``timeout``,
    ``service_account``, ``execution_environment``, ``vpc_connector``, ``vpc_egress``, ``vpc_network_interfaces``,
    ``session_affinity``, ``secret_volumes``, ``cloud_sql_instances``, ``other_volumes``, ``encryption_key``.
    """
    containers = list(r.containers)
    main = next((c for c in containers if c.ports), containers[0] if containers else None)
    config: dict[str, Any] = _container(main) if main is not None else {}
    mounts = {m.name: m.mount_path for m in main.volume_mounts} if main is not None else {}
    vpc = r.vpc_access
    config.update(
        sidecars={c.name: c.image for c in containers if c is not main},
        min_instances=int(r.scaling.min_instance_count), max_instances=int(r.scaling.max_instance_count),
        concurrency=int(r.max_instance_request_concurrency), timeout=_duration(r.timeout),
        service_account=r.service_account, execution_environment=_enum(r.execution_environment, "EXECUTION_ENVIRONMENT_"),
        vpc_connector=vpc.connector, vpc_egress=_enum(vpc.egress, ""),
        vpc_network_interfaces=[{"network": n.network, "subnetwork": n.subnetwork, "tags": sorted(n.tags)}
                                for n in vpc.network_interfaces],
        session_affinity=bool(getattr(r, "session_affinity", False)),
        secret_volumes={v.name: {"secret": v.secret.secret, "mount": mounts.get(v.name, ""),
                                 "items": {i.path: i.version for i in v.secret.items}}
                        for v in r.volumes if "secret" in v},
        cloud_sql_instances=sorted(i for v in r.volumes if "cloud_sql_instance" in v for i in v.cloud_sql_instance.instances),
        other_volumes={v.name: _volume(v, mounts.get(v.name, "")) for v in r.volumes
                       if "secret" not in v and "cloud_sql_instance" not in v},
        encryption_key=r.encryption_key,
    )
    return config


def _container(c: Any) -> dict[str, Any]:
    """The serving container's settings; an env var from Secret Manager keeps only its secret's name and version."""
    limits = dict(c.resources.limits)
    return {
        "image": c.image, "cpu": limits.get("cpu", ""), "memory": limits.get("memory", ""),
        "gpu": limits.get("nvidia.com/gpu", ""), "cpu_idle": bool(c.resources.cpu_idle),
        "startup_cpu_boost": bool(c.resources.startup_cpu_boost),
        "env": {e.name: e.value for e in c.env if "value_source" not in e},
        "secret_env": {e.name: {"secret": e.value_source.secret_key_ref.secret,
                                "version": e.value_source.secret_key_ref.version}
                       for e in c.env if "value_source" in e},
        "startup_probe": _probe(c.startup_probe) if "startup_probe" in c else {},
        "liveness_probe": _probe(c.liveness_probe) if "liveness_probe" in c else {},
        "command": list(c.command), "args": list(c.args), "port": int(c.ports[0].container_port) if c.ports else 0,
    }


def _probe(p: Any) -> dict[str, Any]:
    """A probe's action and timing; of its HTTP headers only the names (a value may be a token)."""
    if "http_get" in p:
        action: dict[str, Any] = {"type": "http", "path": p.http_get.path, "port": int(p.http_get.port),
                                  "headers": sorted(h.name for h in p.http_get.http_headers)}
    elif "grpc" in p:
        action = {"type": "grpc", "port": int(p.grpc.port), "service": p.grpc.service}
    else:
        action = {"type": "tcp", "port": int(p.tcp_socket.port)}
    return {**action, "initial_delay_s": int(p.initial_delay_seconds), "timeout_s": int(p.timeout_seconds),
            "period_s": int(p.period_seconds), "failure_threshold": int(p.failure_threshold)}


def _volume(v: Any, mount: str) -> str:
    """A volume other than a secret or Cloud SQL, in a few words."""
    if "gcs" in v:
        what = f"Cloud Storage bucket {v.gcs.bucket}{' (read-only)' if v.gcs.read_only else ''}"
    elif "nfs" in v:
        what = f"NFS {v.nfs.server}:{v.nfs.path}{' (read-only)' if v.nfs.read_only else ''}"
    elif "empty_dir" in v:
        what = f"in-memory{' ' + v.empty_dir.size_limit if v.empty_dir.size_limit else ''}"
    else:
        what = "volume"
    return f"{what} at {mount}" if mount else what


def service_config(svc: Any) -> dict[str, Any]:
    """A v2 Service's own settings that no revision holds: ``ingress``, ``invoker_iam_disabled``,
    ``default_uri_disabled``, ``iap_enabled``, ``service_min_instances`` (service-level scaling)."""
    ingress = _enum(svc.ingress, "INGRESS_TRAFFIC_")
    return {
        "ingress": _INGRESS.get(ingress, ingress),
        "invoker_iam_disabled": bool(getattr(svc, "invoker_iam_disabled", False)),
        "default_uri_disabled": bool(getattr(svc, "default_uri_disabled", False)),
        "iap_enabled": bool(getattr(svc, "iap_enabled", False)),
        "service_min_instances": int(svc.scaling.min_instance_count) if "scaling" in svc else 0,
    }


# The v2 enum names as gcloud's --ingress flag spells them.
_INGRESS = {"internal-only": "internal", "internal-load-balancer": "internal-and-cloud-load-balancing"}


def _enum(value: Any, prefix: str) -> str:
    """An enum's name without ``prefix``, lower case with hyphens ("" when unspecified); a number the client does not
    know yet stays a number."""
    name = getattr(value, "name", None)
    if name is None:
        return str(value)
    spelled = name.removeprefix(prefix).lower().replace("_", "-")
    return "" if spelled.endswith("unspecified") else spelled


def _duration(value: Any) -> str:
    """A Duration (proto-plus gives a timedelta) as "300s"; "" when unset."""
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else 0
    return f"{seconds:g}s" if seconds else ""


def _traffic(entries: Any) -> tuple[TrafficInfo, ...]:
    """TrafficTarget or TrafficTargetStatus messages as TrafficInfo (short revision names)."""
    return tuple(
        TrafficInfo(revision=short(t.revision), percent=int(t.percent), tag=t.tag, uri=getattr(t, "uri", ""),
                    latest=t.type_.name == LATEST)
        for t in entries
    )


class RunRevisionSource:
    """RevisionSource over the Cloud Run Admin API v2 (google-cloud-run)."""

    def __init__(self) -> None:
        from google.cloud import run_v2

        kwargs = client_kwargs(RUN_ENDPOINT_ENV)
        self._services = run_v2.ServicesClient(**kwargs)
        self._revisions = run_v2.RevisionsClient(**kwargs)
        self._service_configs: dict[str, dict[str, Any]] = {}  # service path -> service_config() of its last read

    def _call(self, what: str, fn: Any, *, timeout: float = RUN_TIMEOUT_S, denied: str = "",
              denied_fix: str = "", **kwargs: Any) -> Any:
        """Call the API (lists are read to the end here, so a later page's error is wrapped too)."""
        from google.api_core import exceptions as gexc

        try:
            result = fn(timeout=max(timeout, MIN_TIMEOUT_S), **kwargs)
            return list(result) if hasattr(result, "pages") else result
        except ValueError as exc:
            # The client matches the name against the API's path template before sending anything: a "/" in a
            # segment, an empty one, or one that is "." or ".." is refused here, and a retry cannot change that.
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise RequestRejected(f"{what}: the Cloud Run client refused the resource name ({reason})") from exc
        except gexc.BadRequest as exc:  # 400 INVALID_ARGUMENT: the same request would be refused again
            raise RequestRejected(f"Cloud Run Admin API refused {what} as invalid ({exc.message})") from exc
        except gexc.NotFound as exc:
            raise TargetNotFound(f"{what}: not found ({exc.message})") from exc
        except gexc.Forbidden as exc:  # REST answers Forbidden; gRPC its subclass PermissionDenied
            advice = denied or f"grant {READ_ROLE} to the function's service account"
            raise AccessDenied(f"permission denied on {what}; {advice} ({exc.message})", fix=denied_fix) from exc
        except (gexc.Conflict, gexc.PreconditionFailed) as exc:  # 409 (ABORTED on an etag mismatch) or 412
            raise ConcurrentModification(f"Cloud Run Admin API refused {what}: the service changed since it was "
                                         f"read ({exc.code} {exc.message})") from exc
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API failed on {what}: {exc}") from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API unreachable on {what}: {exc}") from exc

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo:
        """The service, or TargetNotFound."""
        path = _service_path(project, region, name)
        svc = self._call(f"get {path}", self._services.get_service, name=path)
        self._service_configs[path] = service_config(svc)
        return ServiceInfo(
            name=name, project=project, region=region, uri=svc.uri,
            latest_created_revision=short(svc.latest_created_revision),
            latest_ready_revision=short(svc.latest_ready_revision), traffic=_traffic(svc.traffic_statuses),
        )

    def service_config(self, project: str, region: str, name: str) -> dict[str, Any]:
        """The service's own settings (``service_config``: ingress, …) as ``get_service`` last read them, {} before
        any read: no call of its own, since resolving a target has just read the service."""
        return dict(self._service_configs.get(_service_path(project, region, name), {}))

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]:
        """Every revision of the service (the API has no server-side filter)."""
        parent = _service_path(project, region, service)
        pager = self._call(f"list revisions of {parent}", self._revisions.list_revisions, parent=parent)
        return [_revision_info(r) for r in pager]

    def get_revision(self, project: str, region: str, service: str, revision: str,
                     timeout_s: float = RUN_TIMEOUT_S) -> RevisionInfo:
        """One revision of the service, or TargetNotFound."""
        path = f"{_service_path(project, region, service)}/revisions/{revision}"
        return _revision_info(self._call(f"get {path}", self._revisions.get_revision, name=path,
                                         timeout=min(timeout_s, RUN_TIMEOUT_S)))

    def get_traffic(self, project: str, region: str, name: str, timeout_s: float = RUN_TIMEOUT_S) -> TrafficState:
        """The service's configured traffic split and its etag, or TargetNotFound."""
        path = _service_path(project, region, name)
        svc = self._call(f"get {path}", self._services.get_service, name=path, timeout=min(timeout_s, RUN_TIMEOUT_S))
        return _state(svc)

    def update_traffic(self, project: str, region: str, name: str, traffic: tuple[TrafficInfo, ...], *,
                       etag: str, timeout_s: float, poll_s: float = 1.0) -> TrafficState:
        """Set the service's traffic to exactly ``traffic`` and wait for the operation, at most ``timeout_s`` in all.

        One PATCH with ``updateMask=traffic`` (nothing else of the service is touched) carrying ``etag``, so the
        API refuses it when the service changed since that read: ConcurrentModification, nothing written. 403 is
        AccessDenied naming run.services.update; 5xx, an unreachable API or an operation still running at
        ``timeout_s`` is RunApiUnavailable (in the last case the update may still land). Never retried here.
        """
        from google.api_core.future import polling
        from google.cloud import run_v2
        from google.protobuf import field_mask_pb2

        path = _service_path(project, region, name)
        kind = run_v2.TrafficTargetAllocationType
        targets = [
            run_v2.TrafficTarget(type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=t.percent, tag=t.tag)
            if t.latest else
            run_v2.TrafficTarget(type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=t.revision,
                                 percent=t.percent, tag=t.tag)
            for t in traffic
        ]
        request = run_v2.UpdateServiceRequest(service=run_v2.Service(name=path, traffic=targets, etag=etag),
                                              update_mask=field_mask_pb2.FieldMask(paths=["traffic"]))
        what = f"update traffic of {path}"
        denied = (f"postdeploy's service account needs run.services.update on service {name} to roll it back "
                  "(deploy/deploy.sh grants it with on_fail: rollback and --service)")
        end = time.monotonic() + timeout_s
        operation = self._call(what, self._services.update_service, request=request,
                               timeout=min(timeout_s, RUN_TIMEOUT_S), denied=denied, denied_fix=FIX_UPDATE)
        left = end - time.monotonic()
        every = polling.DEFAULT_POLLING.with_delay(initial=poll_s, maximum=max(poll_s, 1.0), multiplier=1.5)

        def wait(timeout: float) -> Any:
            try:
                return operation.result(timeout=timeout, polling=every)
            except TimeoutError as exc:  # concurrent.futures.TimeoutError: the operation outlived our budget
                raise RunApiUnavailable(f"{what}: the API accepted the update but it had not finished after "
                                        f"{timeout_s:g} s; it may still take effect") from exc

        return _state(self._call(what, wait, timeout=left, denied=denied, denied_fix=FIX_UPDATE))


def _service_path(project: str, region: str, name: str) -> str:
    return f"projects/{project}/locations/{region}/services/{name}"


def _state(svc: Any) -> TrafficState:
    return TrafficState(traffic=_traffic(svc.traffic), etag=svc.etag,
                        latest_ready_revision=short(svc.latest_ready_revision),
                        latest_created_revision=short(svc.latest_created_revision))
