"""The one exception tree of postdeploy.

    PostdeployError
    ├── BadMessage          permanent: the Pub/Sub message cannot be decoded (ack and log)
    ├── ConfigError         permanent: postdeploy.yaml is invalid (lists every problem)
    ├── TargetNotFound      permanent: the service or revision is not there (INCONCLUSIVE report)
    ├── AccessDenied        permanent: a Google API answered 403; the message names the role to grant
    ├── NoCredentials       permanent: no Google credentials where postdeploy runs (``fix`` says how to give some)
    ├── RequestRejected     permanent: a Google API (400) or its client refused the request as invalid
    ├── ConcurrentModification  permanent: a write met a newer version of the resource (409 / 412); nothing written
    └── Transient           retry by redelivery: raised only before anything user-visible was sent
        ├── RunApiUnavailable     Cloud Run Admin API 5xx / timeouts
        ├── StorageUnavailable    Cloud Storage 5xx / timeouts
        ├── LoggingUnavailable    Cloud Logging 429 / 5xx after bounded retries
        ├── MonitoringUnavailable Cloud Monitoring 429 / 5xx after bounded retries
        └── Busy                  another delivery is validating this (build, revision) right now

Library errors are wrapped at the boundary with ``raise ... from exc``. Every one of them is postdeploy's own
problem, never the revision's: a check that meets one reports "not measured" with ``fix``, never FAIL.
"""

from __future__ import annotations


class PostdeployError(Exception):
    """Base of every error postdeploy raises on purpose; ``fix`` says what would let postdeploy do its job."""

    fix: str = ""

    def __init__(self, *args: object, fix: str = "") -> None:
        super().__init__(*args)
        if fix:
            self.fix = fix


class BadMessage(PostdeployError):
    """The message is not a Cloud Build notification we can read; acked, never retried."""

    def __init__(self, reason: str, message_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id


class ConfigError(PostdeployError):
    """The config file is invalid; ``problems`` holds one ``path: message`` line per error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class TargetNotFound(PostdeployError):
    """The service or the revision the build deployed does not exist."""


class Transient(PostdeployError):
    """An infrastructure fault worth a redelivery."""


class RunApiUnavailable(Transient):
    """The Cloud Run Admin API answered 5xx or timed out."""


class StorageUnavailable(Transient):
    """Cloud Storage answered 5xx or timed out."""


class AccessDenied(PostdeployError):
    """A Google API refused the function's service account."""


class NoCredentials(PostdeployError):
    """No Google credentials where postdeploy runs (a laptop without ADC, a key file that is not there)."""

    fix = ("give postdeploy Google credentials: `gcloud auth application-default login` on a laptop, "
           "the function's service account in the cloud")


class RequestRejected(PostdeployError):
    """A Google API refused a request as invalid (400): retrying the same request cannot help."""


class Busy(Transient):
    """Another delivery holds the claim and may still be running; ask Pub/Sub to come back later."""


class LoggingUnavailable(Transient):
    """Cloud Logging answered 429/5xx or could not be reached, after bounded retries."""


class MonitoringUnavailable(Transient):
    """Cloud Monitoring answered 429/5xx or could not be reached, after bounded retries."""


def api_fix(exc: PostdeployError, role: str) -> str:
    """The fix for a Google API error met while measuring: its own, else grant ``role``, else try again later."""
    if exc.fix:
        return exc.fix
    if isinstance(exc, AccessDenied):
        return f"grant {role} to postdeploy's service account"
    if isinstance(exc, Transient):
        return "validate again later: the API kept answering 429/5xx or could not be reached"
    return "a postdeploy bug: report it with the function's logs"


class ConcurrentModification(PostdeployError):
    """A write met a newer version of the resource (409 ABORTED on an etag mismatch, or 412): nothing was written."""
