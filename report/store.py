"""Where reports go: a local folder (default) or Cloud Storage; plus the create-only claim."""

from __future__ import annotations

import copy
import datetime
import os
import random
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from core.errors import PostdeployError, StorageUnavailable
from core.logs import log
from sources.gcp import split_gs, storage_client, storage_error, storage_faults, storage_retry, url_signer

DEFAULT_REPORTS = "./reports"
RETRY_DEADLINE_S = 30.0
UPDATE_ATTEMPTS = 8  # read-change-write rounds before a contended object counts as unavailable
UPDATE_PAUSE_S = 0.025
MAX_LINK_TTL_S = 7 * 86400  # the longest a V4 signed URL may be valid
WRITER_GRANT = ("storage.objects.create, get and delete on the bucket to the function's service account "
                "(deploy/deploy.sh grants them on the report bucket only)")
NAME_EXPECTED = "relative, of non-empty segments that are not '.' or '..', without '\\' or control characters"
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

    def take_over(self, name: str, expected: str, text: str) -> bool:
        """Replace ``name`` only if it still holds ``expected`` (one winner among racing takeovers)."""

    def update(self, name: str, change: Callable[[str | None], str]) -> str:
        """Write ``change(current text or None)`` without losing a concurrent update; return the link.

        ``change`` may run more than once (each time on the newest text), so it must be a pure function.
        """

    def location(self, name: str) -> str:
        """Where ``name`` is, for a message: a local path or ``gs://bucket/object``."""

    def link(self, name: str) -> str:
        """The link ``write`` returns for ``name``, without writing it (a report an earlier run stored)."""

    def with_link_ttl(self, ttl_s: int) -> ReportStore:
        """This store, whose links open for ``ttl_s`` seconds to anyone holding them (0: its usual links)."""

    @property
    def link_problem(self) -> str:
        """Why links are not what ``with_link_ttl`` asked for (then they are the usual ones); "" when they are."""


def plain_name(name: str) -> bool:
    """True for a relative object name of non-empty segments, none of them "." or "..", with no backslash, control
    character or lone surrogate: one that stays inside any folder or prefix it is put under."""
    return (bool(name) and all(part not in ("", ".", "..") for part in name.split("/"))
            and not any(c == "\\" or unicodedata.category(c) in ("Cc", "Cs") for c in name))


def checked_name(name: str, where: str) -> str:
    """``name`` when it is a plain name, else ValueError: callers make safe names; this is the last line of defence."""
    if not plain_name(name):
        raise ValueError(f"expected a name inside {where}: {NAME_EXPECTED}; found {name!r}")
    return name


def checked_ttl(ttl_s: int) -> int:
    """``ttl_s`` when it is a signed link's lifetime (0 for none), else ValueError."""
    if not 0 <= ttl_s <= MAX_LINK_TTL_S:
        raise ValueError(f"expected a link lifetime from 0 (not signed) to {MAX_LINK_TTL_S} s (7 days), found {ttl_s}")
    return ttl_s


class _Signer:
    """The credentials that sign links, found once per store (the views of one store share them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: object = None

    def credentials(self) -> object:
        with self._lock:
            if self._credentials is None:  # a failure is not kept: the next validation looks again
                self._credentials = url_signer()
            return self._credentials


def content_type(name: str) -> str:
    """Content type with charset for a report object."""
    return CONTENT_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")


class LocalStore:
    """Reports in a folder; the claim is an O_EXCL create."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()
        self._update_lock = threading.Lock()

    def _path(self, name: str) -> Path:
        path = (self.root / checked_name(name, str(self.root))).resolve()
        if self.root not in path.parents:  # a symbolic link on the way that leads out
            raise ValueError(f"expected a name inside {self.root}, found {name!r}, which leads to {path}")
        return path

    def write(self, name: str, text: str) -> str:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of this thread's own: two validations writing latest.json together each replace it whole.
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
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

    def take_over(self, name: str, expected: str, text: str) -> bool:
        # One process writes a local folder (the CLI), so compare-then-write is enough here.
        if self.read(name) != expected:
            return False
        self.write(name, text)
        return True

    def location(self, name: str) -> str:
        return str(self.root / name)

    def link(self, name: str) -> str:
        return self.location(name)

    def with_link_ttl(self, ttl_s: int) -> LocalStore:
        checked_ttl(ttl_s)
        return self  # a path is a path: whoever can open it needs no signature

    @property
    def link_problem(self) -> str:
        return ""

    def update(self, name: str, change: Callable[[str | None], str]) -> str:
        with self._update_lock:  # one process writes a local folder; its threads take turns
            return self.write(name, change(self.read(name)))


class GcsStore:
    """Reports in a bucket via google-cloud-storage.

    The claim is an upload with ``if_generation_match=0``: GCS answers 412 when the object exists.
    gcp-storage-emulator ignores that precondition, so tests put a small proxy in front of the
    emulator that enforces it (tests/servers/gcs_proxy.py); the code path here is the real one.

    Links are ``https://storage.cloud.google.com/BUCKET/OBJECT`` (the viewer signs in and needs read access), or,
    with ``link_ttl_s``, V4 signed URLs anyone holding them can open for that long. A link that cannot be signed
    is the authenticated one, and ``link_problem`` says why: the report is stored either way.
    """

    def __init__(self, bucket: str, prefix: str = "", retry_deadline_s: float = RETRY_DEADLINE_S,
                 link_ttl_s: int = 0) -> None:
        self.link_ttl_s = checked_ttl(link_ttl_s)
        self._link_problem = ""
        self._signer = _Signer()
        self._retry = storage_retry(retry_deadline_s)
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        if self.prefix and not plain_name(self.prefix):
            raise ValueError(f"expected a report prefix in gs://{bucket}/ of non-empty segments that are not '.' or '..', "
                             f"without '\\' or control characters; found {prefix!r}")
        self._bucket = storage_client().bucket(bucket)

    def _object(self, name: str) -> str:
        checked_name(name, f"gs://{self.bucket_name}/{self.prefix}".rstrip("/"))
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{self._object(name)}"

    def link(self, name: str) -> str:
        plain = f"https://storage.cloud.google.com/{self.bucket_name}/{self._object(name)}"
        if not self.link_ttl_s or self._link_problem:  # once refused, the other links of this view are not tried
            return plain
        try:
            url: str = self._bucket.blob(self._object(name)).generate_signed_url(
                version="v4", method="GET", expiration=datetime.timedelta(seconds=self.link_ttl_s),
                credentials=self._signer.credentials())
        except Exception as exc:  # a link that cannot be signed must not lose the stored report
            fix = f"; fix: {exc.fix}" if isinstance(exc, PostdeployError) and exc.fix else ""
            self._link_problem = (f"report links are not signed (they open only for people with read access to "
                                  f"gs://{self.bucket_name}): {type(exc).__name__}: {exc}{fix}")
            log("WARNING", self._link_problem)
            return plain
        return url

    def with_link_ttl(self, ttl_s: int) -> GcsStore:
        view = copy.copy(self)  # shares the client, the bucket and the signing credentials
        view.link_ttl_s = checked_ttl(ttl_s)
        view._link_problem = ""
        return view

    @property
    def link_problem(self) -> str:
        return self._link_problem

    def _wrap(self, action: str, name: str, exc: Exception) -> Exception:
        """Library errors → ours: 403 is a permanent AccessDenied, everything else a Transient fault."""
        return storage_error(action, self.location(name), exc, WRITER_GRANT)

    def _write(self, name: str, text: str, **precondition: int) -> None:
        """Upload ``text`` (only while ``if_generation_match`` holds, when given)."""
        blob = self._bucket.blob(self._object(name))
        blob.upload_from_string(text.encode("utf-8"), content_type=content_type(name), retry=self._retry, **precondition)

    def _read_versioned(self, name: str) -> tuple[str | None, int]:
        """The object's text and the generation read (None and 0 when absent), for a write over exactly that one."""
        blob = self._bucket.get_blob(self._object(name), retry=self._retry)
        if blob is None:
            return None, 0
        generation = int(blob.generation)  # read first: a download resets it
        return blob.download_as_text(encoding="utf-8", retry=self._retry), generation

    def write(self, name: str, text: str) -> str:
        try:
            self._write(name, text)
        except storage_faults() as exc:
            raise self._wrap("writing", name, exc) from exc
        return self.link(name)  # after the upload: a link that cannot be signed never costs the report

    def read(self, name: str) -> str | None:
        from google.api_core import exceptions as gexc

        try:
            text: str = self._bucket.blob(self._object(name)).download_as_text(encoding="utf-8", retry=self._retry)
        except gexc.NotFound:
            return None
        except storage_faults() as exc:
            raise self._wrap("reading", name, exc) from exc
        return text

    def claim(self, name: str, text: str) -> bool:
        from google.api_core import exceptions as gexc

        try:
            self._write(name, text, if_generation_match=0)
        except gexc.PreconditionFailed:
            # The client retries uploads; a retry after a lost response meets our own object.
            return self.read(name) == text
        except storage_faults() as exc:
            raise self._wrap("claiming", name, exc) from exc
        return True

    def release(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            self._bucket.blob(self._object(name)).delete(retry=self._retry)
        except gexc.NotFound:
            return
        except storage_faults() as exc:
            raise self._wrap("releasing", name, exc) from exc

    def take_over(self, name: str, expected: str, text: str) -> bool:
        from google.api_core import exceptions as gexc

        try:
            current, generation = self._read_versioned(name)
            if current != expected:
                return False
            # Only the generation read may be replaced: of two racing takeovers, one gets 412.
            self._write(name, text, if_generation_match=generation)
        except gexc.PreconditionFailed:
            return False
        except storage_faults() as exc:
            raise self._wrap("taking over", name, exc) from exc
        return True

    def update(self, name: str, change: Callable[[str | None], str]) -> str:
        from google.api_core import exceptions as gexc

        for attempt in range(UPDATE_ATTEMPTS):
            if attempt:  # writers that collided spread out (random, growing pauses), or they collide again
                time.sleep(random.uniform(0, min(UPDATE_PAUSE_S * 2**attempt, 1.0)))
            try:
                current, generation = self._read_versioned(name)
                # Written only over the generation read (0: only if still absent); else someone wrote first.
                self._write(name, change(current), if_generation_match=generation)
                return self.link(name)
            except (gexc.PreconditionFailed, gexc.NotFound):
                continue  # written (or the generation read replaced) by someone else in between: read again
            except storage_faults() as exc:
                raise self._wrap("updating", name, exc) from exc
        raise StorageUnavailable(f"updating {self.location(name)}: changed by other writers "
                                 f"{UPDATE_ATTEMPTS} times in a row")


def open_store(spec: str | None = None) -> ReportStore:
    """POSTDEPLOY_REPORTS: ``gs://bucket[/prefix]`` or a local folder (default ./reports)."""
    target = spec or os.environ.get("POSTDEPLOY_REPORTS", "") or DEFAULT_REPORTS
    if target.startswith("gs://"):
        bucket, prefix = split_gs(target)
        return GcsStore(bucket, prefix)
    return LocalStore(target)
