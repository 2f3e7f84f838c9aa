"""Artifact sources: a local folder and Cloud Storage (gcp-storage-emulator behind the proxy)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import AccessDenied, StorageUnavailable
from sources.artifacts import Artifacts, GcsArtifacts, LocalArtifacts, glob_prefix, glob_regex, open_artifacts
from sources.gcp import storage_client
from tests.servers.gcs_proxy import PreconditionProxy


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("results/b1/*.xml", "results/b1/junit.xml", True),
        ("results/b1/*.xml", "results/b1/e2e/junit.xml", False),
        ("results/b1/*.xml", "results/b10/junit.xml", False),
        ("results/b1/*.xml", "results/b1/junit.xml.bak", False),
        ("results/**/*.xml", "results/b1/e2e/junit.xml", True),
        ("results/**/*.xml", "results/junit.xml", True),
        ("results/TEST-?.xml", "results/TEST-1.xml", True),
        ("results/TEST-?.xml", "results/TEST-12.xml", False),
        ("results/[!c]*.xml", "results/coverage.xml", False),
        ("results/[!c]*.xml", "results/junit.xml", True),
        ("results/a+b (1).xml", "results/a+b (1).xml", True),
        ("results/a+b (1).xml", "results/aab (1).xml", False),
    ],
    ids=["star", "star-stays-in-segment", "no-prefix-leak", "anchored-end", "double-star-nested", "double-star-zero-dirs",
         "question-mark", "question-mark-one-char", "negated-class-excludes", "negated-class-admits",
         "regex-chars-literal", "regex-chars-not-special"],
)
def test_glob_regex(pattern: str, name: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(name)) is matches


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("results/b1/*.xml", "results/b1/"), ("results/TEST-*.xml", "results/TEST-"), ("results/b1/junit.xml", "results/b1/junit.xml"),
     ("*.xml", "")],
    ids=["folder", "partial-name", "no-wildcard", "wildcard-first"],
)
def test_glob_prefix(pattern: str, prefix: str) -> None:
    assert glob_prefix(pattern) == prefix


def _tree(root: Path) -> None:
    for name in ("results/junit.xml", "results/TEST-a.xml", "results/e2e/junit.xml", "results/notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"<{name}/>", encoding="utf-8")


def test_local_find_globs_under_the_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    local = LocalArtifacts(str(tmp_path))
    assert local.find("results/*.xml") == ["results/TEST-a.xml", "results/junit.xml"]
    assert local.find("results/**/*.xml") == ["results/TEST-a.xml", "results/e2e/junit.xml", "results/junit.xml"]
    assert local.find("results/none-*.xml") == []
    with pytest.raises(FileNotFoundError, match=r"expected a folder at .*nothing for 'nothing/\*.xml', found nothing"):
        local.find("nothing/*.xml")  # a folder that is not there: a wrong pattern, not an empty result
    inside = str(tmp_path / "results" / "*.xml")
    assert local.find(inside) == [str(tmp_path / "results" / "TEST-a.xml"), str(tmp_path / "results" / "junit.xml")]


def test_local_read_caps_bytes(tmp_path: Path) -> None:
    (tmp_path / "big.xml").write_bytes(b"x" * 5000)
    local = LocalArtifacts(str(tmp_path))
    assert local.read("big.xml", 1000) == b"x" * 1000
    assert local.read("big.xml", 10_000) == b"x" * 5000


@pytest.mark.parametrize("pattern", ["../*.xml", "results/../../*.xml", "/etc/*.conf"], ids=["parent", "climbing", "absolute-outside"])
def test_local_find_refuses_patterns_outside_the_root(tmp_path: Path, pattern: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ValueError, match="expected a pattern inside"):
        LocalArtifacts(str(root)).find(pattern)


def test_local_read_refuses_escapes_and_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "results").mkdir(parents=True)
    (tmp_path / "secret.xml").write_text("<secret/>", encoding="utf-8")
    (root / "results" / "link.xml").symlink_to(tmp_path / "secret.xml")
    local = LocalArtifacts(str(root))
    assert local.find("results/*.xml") == ["results/link.xml"]  # found, but …
    for name in ("results/link.xml", "../secret.xml", str(tmp_path / "secret.xml")):
        with pytest.raises(ValueError, match="expected a file inside"):
            local.read(name, 100)


def _upload(bucket: str, names: dict[str, bytes]) -> None:
    b = storage_client().bucket(bucket)
    for name, data in names.items():
        b.blob(name).upload_from_string(data, content_type="application/xml")


def test_gcs_find_lists_by_prefix_and_matches_the_glob(gcs: tuple[PreconditionProxy, str]) -> None:
    proxy, bucket = gcs
    _upload(bucket, {
        "results/b1/junit.xml": b"<a/>", "results/b1/TEST-x.xml": b"<b/>", "results/b1/e2e/junit.xml": b"<c/>",
        "results/b1/log.txt": b"log", "results/b10/junit.xml": b"<d/>", "other/b1/junit.xml": b"<e/>",
    })
    source = GcsArtifacts()
    assert source.find(f"gs://{bucket}/results/b1/*.xml") == [f"gs://{bucket}/results/b1/TEST-x.xml", f"gs://{bucket}/results/b1/junit.xml"]
    assert source.find(f"gs://{bucket}/results/b1/**/junit.xml") == [f"gs://{bucket}/results/b1/e2e/junit.xml",
                                                                      f"gs://{bucket}/results/b1/junit.xml"]
    assert source.find(f"gs://{bucket}/results/b2/*.xml") == []
    listings = [target for method, target in proxy.requests if method == "GET" and target.startswith(f"/storage/v1/b/{bucket}/o?")]
    assert listings and all("prefix=results%2Fb1%2F" in t or "prefix=results%2Fb2%2F" in t for t in listings), listings


def test_gcs_read_is_capped_and_handles_empty_objects(gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    _upload(bucket, {"r/big.xml": b"0123456789" * 1000, "r/empty.xml": b""})
    client = storage_client()
    wire: list[tuple[str, int]] = []
    client._http.hooks["response"].append(lambda response, *args, **kwargs: wire.append((response.request.url, len(response.content))))
    source = GcsArtifacts(client=client)
    assert source.read(f"gs://{bucket}/r/big.xml", 25) == b"0123456789012345678901234"
    assert [size for url, size in wire if "/download/" in url] == [25]  # the cap is a ranged request, not a full download cut short
    assert source.read(f"gs://{bucket}/r/big.xml", 1_000_000) == b"0123456789" * 1000
    assert source.read(f"gs://{bucket}/r/empty.xml", 100) == b""


def test_gcs_missing_objects_and_buckets_are_named(gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    source = GcsArtifacts()
    with pytest.raises(FileNotFoundError, match=re.escape(f"expected gs://{bucket}/r/gone.xml to exist")):
        source.read(f"gs://{bucket}/r/gone.xml", 100)
    with pytest.raises(FileNotFoundError, match=re.escape("expected gs://no-such-bucket-x1/r/*.xml to exist")):
        source.find("gs://no-such-bucket-x1/r/*.xml")


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [(403, AccessDenied, "grant roles/storage.objectViewer"), (503, StorageUnavailable, "injected failure 503")],
    ids=["403-names-the-role", "503-is-transient"],
)
def test_gcs_errors_are_wrapped(gcs: tuple[PreconditionProxy, str], status: int, error: type[Exception], message: str) -> None:
    proxy, bucket = gcs
    _upload(bucket, {"r/a.xml": b"<a/>"})
    source = GcsArtifacts(retry_deadline_s=0.5)
    proxy.fail_next(50, status=status)
    with pytest.raises(error, match=message):
        source.find(f"gs://{bucket}/r/*.xml")
    with pytest.raises(error, match=f"reading gs://{bucket}/r/a.xml"):
        source.read(f"gs://{bucket}/r/a.xml", 100)


def test_gcs_refuses_patterns_that_are_not_gs() -> None:
    with pytest.raises(ValueError, match="expected a gs://bucket/path pattern"):
        GcsArtifacts().find("results/*.xml")
    with pytest.raises(ValueError, match="without wildcards"):
        GcsArtifacts().find("gs://acme-*/results/*.xml")


def test_router_picks_the_source_by_prefix_and_creates_no_client_for_local_names(tmp_path: Path) -> None:
    _tree(tmp_path)
    router = open_artifacts(str(tmp_path))
    assert isinstance(router, Artifacts)
    assert router.find("results/*.xml") == ["results/TEST-a.xml", "results/junit.xml"]
    assert router.read("results/junit.xml", 100) == b"<results/junit.xml/>"
    assert router._gcs is None
    assert isinstance(router.source_for("gs://b/r/*.xml"), GcsArtifacts)
    assert isinstance(router.source_for("results/*.xml"), LocalArtifacts)


def test_router_reads_gcs_names(gcs: tuple[PreconditionProxy, str], tmp_path: Path) -> None:
    _, bucket = gcs
    _upload(bucket, {"r/a.xml": b"<a/>"})
    router = open_artifacts(str(tmp_path))
    assert router.find(f"gs://{bucket}/r/*.xml") == [f"gs://{bucket}/r/a.xml"]
    assert router.read(f"gs://{bucket}/r/a.xml", 100) == b"<a/>"
