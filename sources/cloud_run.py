"""Cloud Run Admin API v2 (google-cloud-run) behind ``core.model.RevisionSource``: services, their traffic and revisions;
and the one write postdeploy makes to a service, moving its traffic (a rollback)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import AccessDenied, ConcurrentModification, RequestRejected, RunApiUnavailable, TargetNotFound
from core.model import Condition, RevisionInfo, ServiceInfo, TrafficInfo
from sources.gcp import RUN_ENDPOINT_ENV, RUN_TIMEOUT_S, client_kwargs, short

READ_ROLE = "roles/run.viewer"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
FIX_UPDATE = ("run deploy/deploy.sh again with --service SERVICE: with on_fail: rollback in the config it grants "
              "run.services.update on that service only; if Cloud Run also asks for iam.serviceAccounts.actAs on the "
              "service's runtime account (its docs list it for changing traffic), grant that on the account alone, "
              "or set on_fail: report")
# requests/urllib3 refuse a timeout <= 0 with a ValueError that would read as a refused name: a spent budget still
# sends with this much, and ends as a timeout.
MIN_TIMEOUT_S = 0.1


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
    )


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
        return ServiceInfo(
            name=name, project=project, region=region, uri=svc.uri,
            latest_created_revision=short(svc.latest_created_revision),
            latest_ready_revision=short(svc.latest_ready_revision), traffic=_traffic(svc.traffic_statuses),
        )

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
