"""Report storage: a local folder and Cloud Storage (gcp-storage-emulator behind a precondition proxy)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from report.store import GcsStore, LocalStore, open_store
from sources.gcp import storage_client
from tests.servers.gcs_proxy import PreconditionProxy


def test_local_store_writes_utf8_and_claims_once(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    link = store.write("svc/b1/report.md", "café ✓\n")
    assert Path(link).read_bytes() == "café ✓\n".encode()
    assert store.claim("svc/b1/claim-r1.txt", "run-a") is True
    assert store.claim("svc/b1/claim-r1.txt", "run-b") is False
    store.release("svc/b1/claim-r1.txt")
    assert store.claim("svc/b1/claim-r1.txt", "run-c") is True


def test_local_store_links_are_paths_whatever_the_link_lifetime(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    assert store.with_link_ttl(86400) is store
    assert store.write("svc/b1/report.md", "x") == store.link("svc/b1/report.md") == str(tmp_path / "svc/b1/report.md")
    assert store.link_problem == ""


def test_local_store_refuses_names_outside_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected a name inside"):
        LocalStore(str(tmp_path)).write("../escape.txt", "x")


def test_open_store_picks_by_spec(tmp_path: Path, gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    store = open_store(f"gs://{bucket}/team/reports")
    assert isinstance(store, GcsStore) and store.prefix == "team/reports"


def test_gcs_store_writes_with_charset_and_links(gcs: tuple[PreconditionProxy, str]) -> None:
    proxy, bucket = gcs
    store = GcsStore(bucket, "reports")
    link = store.write("orders/b1/report.html", "<p>café</p>")
    assert link == f"https://storage.cloud.google.com/{bucket}/reports/orders/b1/report.html"
    blob = storage_client().bucket(bucket).get_blob("reports/orders/b1/report.html")
    # The emulator drops content-type parameters, so read the charset off the upload the client sent.
    assert blob.content_type.startswith("text/html")
    assert any(b"content-type: text/html; charset=utf-8\r\n\r\n<p>caf" in body for body in proxy.bodies)
    assert blob.download_as_bytes() == "<p>café</p>".encode()
    assert store.read("orders/b1/report.html") == "<p>café</p>"
    assert store.read("orders/b1/nothing.json") is None


def test_gcs_claim_is_create_only(gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    store = GcsStore(bucket)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda i=i: results.append(store.claim("orders/b1/claim-r.txt", f"run-{i}")))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    store.release("orders/b1/claim-r.txt")
    assert store.claim("orders/b1/claim-r.txt", "after-release") is True


def test_gcs_claim_recognises_its_own_retried_write(gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    store = GcsStore(bucket)
    assert store.claim("o/b/claim.txt", "run-1") is True
    assert store.claim("o/b/claim.txt", "run-1") is True  # the same run's retry meets its own object
    assert store.claim("o/b/claim.txt", "run-2") is False


def test_gcs_server_errors_are_transient(gcs: tuple[PreconditionProxy, str]) -> None:
    proxy, bucket = gcs
    store = GcsStore(bucket, retry_deadline_s=1.0)
    proxy.fail_next(50, status=503)
    with pytest.raises(StorageUnavailable, match="claiming gs://"):
        store.claim("o/b/claim.txt", "run-1")


def _append_concurrently(store: LocalStore | GcsStore, name: str, writers: int, each: int) -> None:
    def append(current: str | None, line: str) -> str:
        return (current or "") + line + "\n"

    def writer(w: int) -> None:
        for i in range(each):
            store.update(name, functools.partial(append, line=f"w{w}-{i}"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_gcs_update_loses_no_concurrent_change(gcs: tuple[PreconditionProxy, str]) -> None:
    proxy, bucket = gcs
    store = GcsStore(bucket)
    _append_concurrently(store, "orders/index.json", writers=4, each=5)
    lines = (store.read("orders/index.json") or "").splitlines()
    assert sorted(lines) == sorted(f"w{w}-{i}" for w in range(4) for i in range(5))
    # the writers did collide, and the precondition turned each collision into a re-read, not a lost line
    assert 412 in proxy.statuses


def test_gcs_update_gives_up_on_endless_contention(gcs: tuple[PreconditionProxy, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("report.store.UPDATE_PAUSE_S", 0)  # the pauses between rounds only spread real writers out
    _, bucket = gcs
    store = GcsStore(bucket)
    store.write("o/index.json", "start\n")
    rival = GcsStore(bucket)

    def change(current: str | None) -> str:
        rival.write("o/index.json", f"{current}rival\n")  # someone always writes in between
        return f"{current}mine\n"

    with pytest.raises(StorageUnavailable, match="changed by other writers 8 times in a row"):
        store.update("o/index.json", change)
    assert "mine" not in (store.read("o/index.json") or "")


def test_local_update_loses_no_concurrent_change(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    _append_concurrently(store, "orders/index.json", writers=4, each=10)
    assert len((store.read("orders/index.json") or "").splitlines()) == 40


def test_gcs_take_over_loses_to_a_rewrite_in_between(gcs: tuple[PreconditionProxy, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the generation read may be replaced: a rewrite after the takeover read its text wins."""
    proxy, bucket = gcs
    store, rival = GcsStore(bucket), GcsStore(bucket)
    store.write("o/b/claim.txt", "stale-run")
    handle = proxy._handle
    rewritten = threading.Event()

    def rewrite_after_first_download(method: str, target: str, headers: list[tuple[str, str]],
                                     body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        answer = handle(method, target, headers, body)
        if method == "GET" and "alt=media" in target and not rewritten.is_set():
            rewritten.set()
            rival.write("o/b/claim.txt", "rival-run")
        return answer

    monkeypatch.setattr(proxy, "_handle", rewrite_after_first_download)
    assert store.take_over("o/b/claim.txt", "stale-run", "my-run") is False
    assert rewritten.is_set() and store.read("o/b/claim.txt") == "rival-run"


# --- no caller can make a store write outside its prefix ----------------------------------------------------------

HOSTILE_NAMES = ["../escape.txt", "a/../../escape.txt", "a/../b.txt", "..", ".", "a/./b.txt", "/etc/passwd", "a//b.txt",
                 "a/", "", "a\\..\\b.txt", "a/b\n.txt", "a/\x00.txt", "a/\x7f.txt", "a/b\r.txt", "a/\ud800.txt"]
HOSTILE_IDS = ["dot-dot-first", "dot-dot-climbing", "dot-dot-inside", "only-dot-dot", "only-dot", "dot-segment",
               "absolute", "empty-segment", "trailing-slash", "empty", "backslash", "newline", "nul", "delete", "cr",
               "lone-surrogate"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=HOSTILE_IDS)
def test_local_store_refuses_every_name_that_is_not_a_plain_relative_path(tmp_path: Path, name: str) -> None:
    root = tmp_path / "reports"
    store = LocalStore(str(root))
    for action in (lambda: store.write(name, "x"), lambda: store.read(name), lambda: store.claim(name, "x"),
                   lambda: store.release(name), lambda: store.update(name, lambda current: "x"),
                   lambda: store.take_over(name, "", "x")):
        with pytest.raises(ValueError) as caught:
            action()
        assert str(caught.value).startswith(f"expected a name inside {root}: relative, of non-empty segments "
                                            "that are not '.' or '..', without '\\' or control characters; found "), caught.value
        assert str(caught.value).endswith(repr(name))
    assert list(tmp_path.rglob("*")) == []


def test_local_store_refuses_a_symlink_out_of_its_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "reports", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "svc").symlink_to(outside)
    with pytest.raises(ValueError, match="expected a name inside"):
        LocalStore(str(root)).write("svc/report.md", "x")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=HOSTILE_IDS)
def test_gcs_store_refuses_every_name_that_is_not_a_plain_relative_path(gcs: tuple[PreconditionProxy, str], name: str) -> None:
    proxy, bucket = gcs
    store = GcsStore(bucket, "reports")
    sent = len(proxy.statuses)
    for action in (lambda: store.write(name, "x"), lambda: store.read(name), lambda: store.claim(name, "x"),
                   lambda: store.release(name), lambda: store.update(name, lambda current: "x"),
                   lambda: store.take_over(name, "", "x")):
        with pytest.raises(ValueError) as caught:
            action()
        assert str(caught.value).startswith(f"expected a name inside gs://{bucket}/reports: relative, of non-empty "
                                            "segments that are not '.' or '..', without '\\' or control characters; "
                                            "found "), caught.value
    assert len(proxy.statuses) == sent  # refused before any request


@pytest.mark.parametrize("prefix", ["../x", "a/../b", "a//b", "a/./b", "a\nb"])
def test_gcs_store_refuses_a_prefix_that_is_not_a_plain_path(gcs: tuple[PreconditionProxy, str], prefix: str) -> None:
    _, bucket = gcs
    with pytest.raises(ValueError, match=rf"^expected a report prefix in gs://{bucket}/ of non-empty segments"):
        GcsStore(bucket, prefix)


@pytest.mark.parametrize("name", ["orders/b1/report.md", "café-orders/5f1c2a9e/report.html", "a-b_0123456789ab/latest.json",
                                  "svc/b.1/claim-svc-00001-abc.txt", "x..y/z"])
def test_plain_names_are_accepted(tmp_path: Path, gcs: tuple[PreconditionProxy, str], name: str) -> None:
    _, bucket = gcs
    for store in (LocalStore(str(tmp_path)), GcsStore(bucket, "reports")):
        store.write(name, "ok")
        assert store.read(name) == "ok"
