"""Where reports go: a local folder (default) or Cloud Storage; plus the create-only claim."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from core.errors import StorageUnavailable

DEFAULT_REPORTS = "./reports"
RETRY_DEADLINE_S = 30.0
CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class ReportStore(Protocol):
    """A place to write report objects and to claim (build id, revision) exactly once."""

    def write(self, name: str, text: str) -> str:
        """Write UTF-8 text under ``name`` (relative), return a link a person can open."""

    def read(self, name: str) -> str | None:
        """The text under ``name``, or None."""

    def claim(self, name: str, text: str) -> bool:
        """Create ``name`` only if absent; False when another run created it (a duplicate delivery).

        ``text`` must be unique to this run: it tells our own retried write from someone else's.
        """

    def release(self, name: str) -> None:
        """Drop a claim so a redelivery can try again."""


def content_type(name: str) -> str:
    """Content type with charset for a report object."""
    return CONTENT_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")


class LocalStore:
    """Reports in a folder; the claim is an O_EXCL create."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if self.root not in path.parents:
            raise ValueError(f"expected a name inside {self.root}, found {name!r}")
        return path

    def write(self, name: str, text: str) -> str:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return str(path)

    def read(self, name: str) -> str | None:
        path = self._path(name)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def claim(self, name: str, text: str) -> bool:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True

    def release(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


class GcsStore:
    """Reports in a bucket via google-cloud-storage.

    The claim is an upload with ``if_generation_match=0``: GCS answers 412 when the object exists.
    gcp-storage-emulator ignores that precondition, so tests put a small proxy in front of the
    emulator that enforces it (tests/servers/gcs_proxy.py); the code path here is the real one.
    """

    def __init__(self, bucket: str, prefix: str = "", retry_deadline_s: float = RETRY_DEADLINE_S) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        from core.gcp import storage_client

        # The client's default retry runs for 120 s; a validation has a deadline to keep.
        self._retry = DEFAULT_RETRY.with_timeout(retry_deadline_s)
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._bucket = storage_client().bucket(bucket)

    def _object(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def write(self, name: str, text: str) -> str:
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self._object(name))
        try:
            blob.upload_from_string(text.encode("utf-8"), content_type=content_type(name), retry=self._retry)
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError, ConnectionError) as exc:
            raise StorageUnavailable(f"writing gs://{self.bucket_name}/{self._object(name)}: {exc}") from exc
        return f"https://storage.cloud.google.com/{self.bucket_name}/{self._object(name)}"

    def read(self, name: str) -> str | None:
        from google.api_core import exceptions as gexc

        try:
            text: str = self._bucket.blob(self._object(name)).download_as_text(encoding="utf-8", retry=self._retry)
        except gexc.NotFound:
            return None
        except (gexc.ServerError, gexc.RetryError, ConnectionError) as exc:
            raise StorageUnavailable(f"reading gs://{self.bucket_name}/{self._object(name)}: {exc}") from exc
        return text

    def claim(self, name: str, text: str) -> bool:
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self._object(name))
        try:
            blob.upload_from_string(text.encode("utf-8"), content_type=content_type(name), if_generation_match=0,
                                  retry=self._retry)
        except gexc.PreconditionFailed:
            # The client retries uploads; a retry after a lost response meets our own object.
            return self.read(name) == text
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError, ConnectionError) as exc:
            raise StorageUnavailable(f"claiming gs://{self.bucket_name}/{self._object(name)}: {exc}") from exc
        return True

    def release(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(self._object(name)).delete()


def open_store(spec: str | None = None) -> ReportStore:
    """POSTDEPLOY_REPORTS: ``gs://bucket[/prefix]`` or a local folder (default ./reports)."""
    target = spec or os.environ.get("POSTDEPLOY_REPORTS", "") or DEFAULT_REPORTS
    if target.startswith("gs://"):
        from core.gcp import split_gs

        bucket, prefix = split_gs(target)
        return GcsStore(bucket, prefix)
    return LocalStore(target)
