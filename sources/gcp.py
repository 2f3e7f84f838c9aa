"""The official Google clients as postdeploy builds them (endpoints, credentials), each imported lazily so the cold
start stays small; and the small reads several sources share: Cloud Storage text, secrets, ID tokens."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import AccessDenied, NoCredentials, StorageUnavailable, TargetNotFound, Transient
from core.signals import RevisionScope

RUN_ENDPOINT_ENV = "POSTDEPLOY_RUN_API_ENDPOINT"
LOGGING_ENDPOINT_ENV = "POSTDEPLOY_LOGGING_API_ENDPOINT"
MONITORING_ENDPOINT_ENV = "POSTDEPLOY_MONITORING_API_ENDPOINT"
TASKS_EMULATOR_ENV = "CLOUD_TASKS_EMULATOR_HOST"
RUN_TIMEOUT_S = 30.0
MIN_TIMEOUT_S = 0.1  # a call is never given less: a deadline already past still gets one short try
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


def tasks_client() -> Any:
    """A Cloud Tasks CloudTasksClient; a plaintext gRPC channel to ``host:port`` when CLOUD_TASKS_EMULATOR_HOST is set."""
    from google.cloud import tasks_v2

    host = os.environ.get(TASKS_EMULATOR_ENV, "")
    if not host:
        return with_credentials("Cloud Tasks", tasks_v2.CloudTasksClient)
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    # Unlike Pub/Sub and Storage, the Cloud Tasks client has no emulator switch of its own; a given channel carries
    # no credentials, so nothing looks for any.
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host)))


def storage_client() -> Any:
    """A google-cloud-storage client; STORAGE_EMULATOR_HOST is honoured by the client itself."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials())
    return storage.Client()


def publisher_client() -> Any:
    """A google-cloud-pubsub publisher that keeps the order of messages with the same ordering key (one per service);
    PUBSUB_EMULATOR_HOST is honoured by the client itself."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient(publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))


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


IAM_CREDENTIALS_ENDPOINT_ENV = "POSTDEPLOY_IAM_CREDENTIALS_API_ENDPOINT"
IAM_CREDENTIALS_ENDPOINT = "https://iamcredentials.googleapis.com"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SIGN_TIMEOUT_S = 10.0  # per signBlob call; a link that cannot be signed in time is the authenticated one
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
SIGNER_FIX = ("run postdeploy as a service account: the function's own, or a key file in GOOGLE_APPLICATION_CREDENTIALS "
              "(user credentials cannot sign URLs)")


def token_creator_fix(email: str) -> str:
    """How to let ``email`` sign URLs through IAM: the role on itself, and the API enabled."""
    return (f"grant {TOKEN_CREATOR} on the service account {email} to itself (gcloud iam service-accounts "
            f"add-iam-policy-binding {email} --member=serviceAccount:{email} --role={TOKEN_CREATOR}) and enable "
            "iamcredentials.googleapis.com")


def url_signer() -> Any:
    """Credentials that can sign a V4 signed URL (``google.auth.credentials.Signing``): a key file's sign locally; the
    function's own service account (Compute Engine credentials, no key) signs through the IAM Credentials signBlob API.

    NoCredentials when there are neither (no credentials, user credentials, an account whose email cannot be read)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth import credentials as gcredentials
    from google.auth import exceptions as gauth

    credentials, _ = with_credentials("a service account to sign report links",
                                      lambda: google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE]))
    if isinstance(credentials, gcredentials.Signing):
        return credentials
    kind = f"{type(credentials).__module__}.{type(credentials).__name__}"
    if not hasattr(credentials, "service_account_email"):
        raise NoCredentials(f"expected service account credentials to sign report links, found {kind}", fix=SIGNER_FIX)
    if not credentials.valid:
        # Compute Engine credentials name their account "default" until a refresh reads its email.
        try:
            credentials.refresh(google.auth.transport.requests.Request())
        except gauth.GoogleAuthError as exc:
            raise NoCredentials(f"expected an access token for the service account of {kind} to sign report links, "
                                f"found none: {exc}", fix=SIGNER_FIX) from exc
    email = credentials.service_account_email or ""
    if "@" not in email:
        raise NoCredentials(f"expected the email of the service account to sign report links as, found {email!r} "
                            f"({kind})", fix=SIGNER_FIX)
    gcredentials.Signing.register(IamSigner)  # a virtual subclass: google.auth stays out of this module's import
    return IamSigner(credentials, email)


class IamSigner:
    """Signs as ``email`` through IAM Credentials ``signBlob`` (POSTDEPLOY_IAM_CREDENTIALS_API_ENDPOINT: a local fake).

    google-cloud-storage can do this itself (``generate_signed_url(service_account_email=…, access_token=…)``), but it
    calls a fixed https://iamcredentials.… URL with a 120 s timeout under a 120 s retry: a validation has a deadline
    to keep, so the call is made here, bounded, and answers 403 with the role to grant."""

    def __init__(self, credentials: Any, email: str) -> None:
        from google.auth.transport.requests import AuthorizedSession

        self._session = AuthorizedSession(credentials)
        self._email = email

    @property
    def signer_email(self) -> str:
        return self._email

    @property
    def signer(self) -> None:
        """No key here to hand out: every signature is made by IAM."""
        return None

    def sign_bytes(self, message: bytes) -> bytes:
        """The RSA-SHA256 signature of ``message`` by the service account's Google-managed key."""
        import base64

        import requests
        from google.auth import exceptions as gauth

        endpoint = os.environ.get(IAM_CREDENTIALS_ENDPOINT_ENV, "") or IAM_CREDENTIALS_ENDPOINT
        url = f"{endpoint.rstrip('/')}/v1/projects/-/serviceAccounts/{self._email}:signBlob"
        what = f"signing a report link as {self._email}"
        try:
            response = self._session.post(url, json={"payload": base64.b64encode(message).decode("ascii")},
                                          timeout=SIGN_TIMEOUT_S)
        except (requests.RequestException, gauth.GoogleAuthError) as exc:
            raise Transient(f"{what}: IAM Credentials signBlob unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 403:
            raise AccessDenied(f"permission denied {what}: {_api_message(response)}", fix=token_creator_fix(self._email))
        if response.status_code != 200:
            raise Transient(f"{what}: expected 200 from IAM Credentials signBlob, got {response.status_code}: "
                            f"{_api_message(response)}")
        try:
            return base64.b64decode(response.json()["signedBlob"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise Transient(f"{what}: expected a base64 signedBlob from IAM Credentials signBlob, found "
                            f"{response.text[:200]!r}") from exc


def _api_message(response: Any) -> str:
    """The ``error.message`` of a Google API error body, else the start of the body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(response.text[:200])
