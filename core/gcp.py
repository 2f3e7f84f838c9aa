"""Adapters over the official Google clients, each imported lazily (cold start stays small)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.errors import AccessDenied, NoCredentials, RunApiUnavailable, StorageUnavailable, TargetNotFound
from core.model import Condition, RevisionInfo, RevisionScope, ServiceInfo, TrafficInfo

RUN_ENDPOINT_ENV = "POSTDEPLOY_RUN_API_ENDPOINT"
LOGGING_ENDPOINT_ENV = "POSTDEPLOY_LOGGING_API_ENDPOINT"
MONITORING_ENDPOINT_ENV = "POSTDEPLOY_MONITORING_API_ENDPOINT"
RUN_TIMEOUT_S = 30.0
_Client = TypeVar("_Client")


def with_credentials(what: str, make: Callable[[], _Client]) -> _Client:
    """``make()`` a client; no Google credentials (a laptop without ADC) becomes NoCredentials, postdeploy's problem."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return make()
    except DefaultCredentialsError as exc:
        raise NoCredentials(f"no Google credentials to read {what}: {exc}") from exc


def client_kwargs(endpoint_env: str) -> dict[str, Any]:
    """Point a client at a local fake when the endpoint override is set (REST, no credentials)."""
    endpoint = os.environ.get(endpoint_env, "")
    if not endpoint:
        return {}
    from google.auth.credentials import AnonymousCredentials

    return {"transport": "rest", "client_options": {"api_endpoint": endpoint}, "credentials": AnonymousCredentials()}


def filter_string(value: str) -> str:
    """A string literal of the Logging and Monitoring filter languages: quoted, backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def revision_clauses(scope: RevisionScope) -> list[str]:
    """The filter clauses that pick a Cloud Run revision's resource (a service's, when no revision is named)."""
    clauses = ['resource.type="cloud_run_revision"', f"resource.labels.service_name={filter_string(scope.service)}"]
    if scope.revision:
        clauses.append(f"resource.labels.revision_name={filter_string(scope.revision)}")
    if scope.region:
        clauses.append(f"resource.labels.location={filter_string(scope.region)}")
    return clauses


def short(name: str) -> str:
    """``projects/p/locations/l/services/s/revisions/r`` → ``r``."""
    return name.rsplit("/", 1)[-1] if name else ""


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

    def list_services(self, project: str, region: str) -> list[str]:
        """Short names of the services in a region (for 'not found, found instead: …')."""
        parent = f"projects/{project}/locations/{region}"
        pager = self._call(f"list services in {parent}", self._services.list_services, parent=parent)
        return [short(s.name) for s in pager]

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


def logging_client(project: str = "") -> Any:
    """A google-cloud-logging client over REST (its HTTP connection sends our entries.list requests);
    anonymous and pointed at a local fake when POSTDEPLOY_LOGGING_API_ENDPOINT is set."""
    from google.cloud import logging as cloud_logging

    endpoint = os.environ.get(LOGGING_ENDPOINT_ENV, "")
    if not endpoint:
        return with_credentials("Cloud Logging", lambda: cloud_logging.Client(project=project or None, _use_grpc=False))
    from google.auth.credentials import AnonymousCredentials

    return cloud_logging.Client(project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "test"),
                                credentials=AnonymousCredentials(), _use_grpc=False,
                                client_options={"api_endpoint": endpoint})


def monitoring_client() -> Any:
    """A Cloud Monitoring MetricServiceClient; a plaintext gRPC channel when POSTDEPLOY_MONITORING_API_ENDPOINT is set."""
    from google.cloud import monitoring_v3

    endpoint = os.environ.get(MONITORING_ENDPOINT_ENV, "")
    if not endpoint:
        return with_credentials("Cloud Monitoring", monitoring_v3.MetricServiceClient)
    import grpc
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

    # google-cloud-monitoring ships gRPC transports only (no transport="rest"), so a local fake speaks gRPC;
    # a given channel carries no credentials.
    host = endpoint.split("://", 1)[-1].rstrip("/")
    return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(host)))


def storage_client() -> Any:
    """A google-cloud-storage client; STORAGE_EMULATOR_HOST is honoured by the client itself."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials())
    return storage.Client()


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` → (``bucket``, ``a/b``)."""
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path.strip("/")


def storage_retry(deadline_s: float) -> Any:
    """The storage client's default retry, cut from its 120 s to ``deadline_s`` (a validation has a deadline to keep)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(deadline_s)


def storage_faults() -> tuple[type[Exception], ...]:
    """The Cloud Storage errors ``storage_error`` maps: 403, 429, 5xx, a retry that ran out, a lost connection."""
    from google.api_core import exceptions as gexc

    return (gexc.Forbidden, gexc.ServerError, gexc.TooManyRequests, gexc.RetryError, ConnectionError)


def storage_error(action: str, where: str, exc: Exception, grant: str) -> Exception:
    """A Cloud Storage error as ours: 403 is AccessDenied saying what to ``grant``, anything else StorageUnavailable."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.Forbidden):
        return AccessDenied(f"permission denied {action} {where}; grant {grant} ({exc.message})")
    return StorageUnavailable(f"{action} {where}: {exc}")


def read_gcs_text(uri: str) -> str:
    """The text of one gs:// object."""
    from google.api_core import exceptions as gexc

    bucket, name = split_gs(uri)
    try:
        text: str = storage_client().bucket(bucket).blob(name).download_as_text(encoding="utf-8", timeout=RUN_TIMEOUT_S)
    except gexc.NotFound as exc:
        raise TargetNotFound(f"expected an object at {uri}, found nothing") from exc
    except storage_faults() as exc:
        raise storage_error("reading", uri, exc, "roles/storage.objectViewer") from exc
    return text


def secret_value(version: str) -> str:
    """Read a Secret Manager version (``projects/p/secrets/s/versions/latest``)."""
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    data: bytes = client.access_secret_version(name=version).payload.data
    return data.decode("utf-8").strip()


def fetch_id_token(audience: str) -> str:
    """A Google ID token for a private Cloud Run service (metadata server or key file)."""
    import google.auth.transport.requests
    from google.oauth2 import id_token

    token: str = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


def resolve_secret(ref: str) -> str:
    """``env:NAME`` from the environment, ``secret:projects/P/secrets/S/versions/V`` from Secret Manager."""
    kind, _, name = ref.partition(":")
    if kind == "env":
        if name not in os.environ:
            raise KeyError(f"expected environment variable {name} to be set, found nothing")
        return os.environ[name]
    if kind == "secret":
        return secret_value(name)
    raise ValueError(f"expected a reference 'env:NAME' or 'secret:projects/…/versions/V', found {ref!r}")
