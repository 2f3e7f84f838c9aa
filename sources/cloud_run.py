"""Cloud Run Admin API v2 (google-cloud-run) behind ``core.model.RevisionSource``: services, their traffic and revisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.errors import AccessDenied, RequestRejected, RunApiUnavailable, TargetNotFound
from core.model import Condition, RevisionInfo, ServiceInfo, TrafficInfo
from sources.gcp import RUN_ENDPOINT_ENV, RUN_TIMEOUT_S, client_kwargs, short


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


class RunRevisionSource:
    """RevisionSource over the Cloud Run Admin API v2 (google-cloud-run)."""

    def __init__(self) -> None:
        from google.cloud import run_v2

        kwargs = client_kwargs(RUN_ENDPOINT_ENV)
        self._services = run_v2.ServicesClient(**kwargs)
        self._revisions = run_v2.RevisionsClient(**kwargs)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """Call the API (lists are read to the end here, so a later page's error is wrapped too)."""
        from google.api_core import exceptions as gexc

        try:
            result = fn(timeout=RUN_TIMEOUT_S, **kwargs)
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
            raise AccessDenied(f"permission denied on {what}; grant roles/run.viewer to the function's "
                               f"service account ({exc.message})") from exc
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API failed on {what}: {exc}") from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API unreachable on {what}: {exc}") from exc

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo:
        """The service, or TargetNotFound."""
        path = f"projects/{project}/locations/{region}/services/{name}"
        svc = self._call(f"get {path}", self._services.get_service, name=path)
        traffic = tuple(
            TrafficInfo(
                revision=short(t.revision), percent=int(t.percent), tag=t.tag, uri=t.uri,
                latest=t.type_.name == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST",
            )
            for t in svc.traffic_statuses
        )
        return ServiceInfo(
            name=name, project=project, region=region, uri=svc.uri,
            latest_created_revision=short(svc.latest_created_revision),
            latest_ready_revision=short(svc.latest_ready_revision), traffic=traffic,
        )

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]:
        """Every revision of the service (the API has no server-side filter)."""
        parent = f"projects/{project}/locations/{region}/services/{service}"
        pager = self._call(f"list revisions of {parent}", self._revisions.list_revisions, parent=parent)
        revisions = []
        for r in pager:
            revisions.append(RevisionInfo(
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
            ))
        return revisions
