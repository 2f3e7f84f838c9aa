"""Files a build left behind, behind core.model.ArtifactSource: a local folder or Cloud Storage."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

RETRY_DEADLINE_S = 20.0
REQUEST_TIMEOUT_S = 15.0
READER_GRANT = "roles/storage.objectViewer on the bucket to the function's service account"
_GLOB_CHARS = re.compile(r"[*?\[]")


def glob_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: ``results/b1/*.xml`` → ``results/b1/``."""
    m = _GLOB_CHARS.search(pattern)
    return pattern[: m.start()] if m else pattern


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over ``/``-separated names as a regex: ``*`` and ``?`` stay inside one segment, ``**`` crosses them."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/*.xml`` → (``bucket``, ``a/*.xml``); unlike sources.gcp.split_gs a trailing ``/`` is kept."""
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def _faults() -> tuple[type[Exception], ...]:
    """What ``GcsArtifacts._wrap`` maps: the storage faults, a missing object, any network error."""
    from google.api_core import exceptions as gexc

    from sources.gcp import storage_faults

    return (*storage_faults(), gexc.NotFound, OSError)


class LocalArtifacts:
    """ArtifactSource over a folder; names are relative to it (or absolute inside it), never outside."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def _inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def find(self, pattern: str) -> list[str]:
        """Files matching the glob (``**`` recurses), sorted; ValueError when the pattern points outside the folder,
        FileNotFoundError when the folder before its first wildcard does not exist."""
        base = Path(glob_prefix(pattern)) if Path(pattern).is_absolute() else self.root / glob_prefix(pattern)
        if not self._inside(base.resolve()):
            raise ValueError(f"expected a pattern inside {self.root}, found {pattern!r}")
        folder = base if glob_prefix(pattern).endswith("/") else base.parent
        if not folder.is_dir():  # a folder that is not there is a wrong pattern, not an empty result
            raise FileNotFoundError(f"expected a folder at {folder} for {pattern!r}, found nothing")
        if Path(pattern).is_absolute():
            found = glob.glob(pattern, recursive=True)
        else:
            found = glob.glob(pattern, root_dir=self.root, recursive=True)
        return sorted(name for name in found if (self.root / name).is_file())

    def read(self, name: str, max_bytes: int) -> bytes:
        """At most ``max_bytes`` of the file; ValueError when it resolves (symlinks too) outside the folder."""
        path = (self.root / name).resolve()
        if not self._inside(path):
            raise ValueError(f"expected a file inside {self.root}, found {name!r}")
        with path.open("rb") as handle:
            return handle.read(max_bytes)


class GcsArtifacts:
    """ArtifactSource over Cloud Storage (google-cloud-storage, imported on first use)."""

    def __init__(self, retry_deadline_s: float = RETRY_DEADLINE_S, client: Any = None) -> None:
        self._retry_deadline_s = retry_deadline_s
        self._storage = client

    def _client(self) -> Any:
        if self._storage is None:
            from sources.gcp import storage_client

            self._storage = storage_client()
        return self._storage

    def _retry(self) -> Any:
        from sources.gcp import storage_retry

        return storage_retry(self._retry_deadline_s)

    def _wrap(self, action: str, where: str, exc: Exception) -> Exception:
        """Library errors → ours: 403 names the role to grant, 404 is a missing file, the rest is transient."""
        from google.api_core import exceptions as gexc

        from sources.gcp import storage_error

        if isinstance(exc, gexc.NotFound):
            return FileNotFoundError(f"expected {where} to exist, found nothing ({exc.message})")
        return storage_error(action, where, exc, READER_GRANT)

    def find(self, pattern: str) -> list[str]:
        """``gs://bucket/prefix/*.xml``: list by the part before the first wildcard, then match the rest."""
        if not pattern.startswith("gs://"):
            raise ValueError(f"expected a gs://bucket/path pattern, found {pattern!r}")
        bucket, path = split_gs(pattern)
        if not bucket or _GLOB_CHARS.search(bucket):
            raise ValueError(f"expected a bucket name without wildcards in {pattern!r}")
        wanted = glob_regex(path)
        try:
            blobs = self._client().list_blobs(bucket, prefix=glob_prefix(path) or None, retry=self._retry(),
                                              timeout=REQUEST_TIMEOUT_S)
            names = [b.name for b in blobs if not b.name.endswith("/") and wanted.match(b.name)]
        except _faults() as exc:
            raise self._wrap("listing", pattern, exc) from exc
        return sorted(f"gs://{bucket}/{name}" for name in names)

    def read(self, name: str, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of ``gs://bucket/object`` (one ranged download)."""
        from google.api_core import exceptions as gexc

        bucket, path = split_gs(name)
        if max_bytes <= 0:
            return b""
        blob = self._client().bucket(bucket).blob(path)
        try:
            data: bytes = blob.download_as_bytes(start=0, end=max_bytes - 1, retry=self._retry(), timeout=REQUEST_TIMEOUT_S)
        except gexc.RequestRangeNotSatisfiable:
            return b""  # GCS answers 416 to a ranged read of an empty object
        except _faults() as exc:
            raise self._wrap("reading", name, exc) from exc
        # Decompressive transcoding (Content-Encoding: gzip) ignores the range: cap it here too.
        return data[:max_bytes]


class Artifacts:
    """ArtifactSource that routes ``gs://`` names to Cloud Storage and everything else to a local folder."""

    def __init__(self, local_root: str = ".", gcs: GcsArtifacts | None = None) -> None:
        self.local = LocalArtifacts(local_root)
        self._gcs = gcs

    @property
    def gcs(self) -> GcsArtifacts:
        if self._gcs is None:
            self._gcs = GcsArtifacts()
        return self._gcs

    def source_for(self, name: str) -> LocalArtifacts | GcsArtifacts:
        """The source that serves this name or pattern."""
        return self.gcs if name.startswith("gs://") else self.local

    def find(self, pattern: str) -> list[str]:
        """Names matching the glob, from the source the pattern points at."""
        return self.source_for(pattern).find(pattern)

    def read(self, name: str, max_bytes: int) -> bytes:
        """At most ``max_bytes`` of one file."""
        return self.source_for(name).read(name, max_bytes)


def open_artifacts(local_root: str = ".") -> Artifacts:
    """The ArtifactSource for CheckContext.artifacts: Cloud Storage for gs:// names, else ``local_root``."""
    return Artifacts(local_root)
