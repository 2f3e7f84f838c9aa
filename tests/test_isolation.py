"""The suite's own environment: nothing in it reaches the GCE metadata server, and under `make test` nothing leaves the machine."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ISOLATED = ROOT / "tests" / "isolated.sh"
GUARD = {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"}
# RFC 5737 TEST-NET-1: routed nowhere; only ever dialled once the test has seen that loopback is the sole interface.
UNROUTABLE = ("192.0.2.1", 80)
FAST_S = 2.0


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30).returncode == 0


def _without_guard() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in GUARD and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def test_google_auth_never_probes_the_metadata_server() -> None:
    if "MAKELEVEL" not in os.environ and "NO_GCE_CHECK" not in os.environ:
        pytest.skip("plain pytest: neither make nor tests/conftest.py set the GCE guard")
    from google.auth.compute_engine import _metadata
    from google.auth.transport.requests import Request

    assert {name: os.environ.get(name) for name in GUARD} == GUARD
    # google-auth reads these once, at import: the suite must have set them before anything imported it.
    assert (_metadata._NO_GCE_CHECK, _metadata._GCE_METADATA_HOST) == (True, "127.0.0.1:9")
    started = time.monotonic()
    assert _metadata.is_on_gce(Request()) is False
    # GCE_METADATA_IP: a closed port on loopback refuses at once (one attempt: the retries only add google-auth's backoff).
    assert _metadata.ping(Request(), retry_count=1) is False
    assert time.monotonic() - started < FAST_S


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_every_make_recipe_exports_the_guard() -> None:
    probe = ".PHONY: probe\nprobe:\n\t@echo $$NO_GCE_CHECK $$GCE_METADATA_HOST $$GCE_METADATA_IP\n"  # phony: probe/ is a folder
    done = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "probe"], input=probe, cwd=ROOT,
                          capture_output=True, text=True, timeout=30, env=_without_guard())
    assert (done.returncode, done.stdout.split()) == (0, list(GUARD.values())), done.stderr


def test_make_test_leaves_only_loopback() -> None:
    if os.environ.get("POSTDEPLOY_TEST_NETWORK") != "loopback-only":
        pytest.skip("not run through tests/isolated.sh in a network namespace")
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    started = time.monotonic()
    with pytest.raises(OSError) as refused:
        socket.create_connection(UNROUTABLE, timeout=FAST_S).close()
    assert refused.value.errno == errno.ENETUNREACH
    assert time.monotonic() - started < FAST_S


LOOPBACK_PROBE = """
import os, socket
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname(), timeout=2).close()
print(*sorted(name for _, name in socket.if_nameindex()), os.environ["POSTDEPLOY_TEST_NETWORK"])
"""


@pytest.mark.skipif(not _unshare_works(), reason="unshare -rn does not work here")
def test_isolated_runs_the_command_with_loopback_up_and_nothing_else() -> None:
    done = subprocess.run(["bash", str(ISOLATED), sys.executable, "-c", LOOPBACK_PROBE], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "lo loopback-only\n", "")


def test_isolated_without_unshare_runs_the_command_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "unshare").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    (tmp_path / "unshare").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ISOLATED), "sh", "-c", "echo $POSTDEPLOY_TEST_NETWORK; exit 7"], capture_output=True,
                          text=True, timeout=30, env=env)
    assert (done.returncode, done.stdout) == (7, "host\n")
    assert done.stderr == ("note: unshare -rn does not work here (needs root or user namespaces, and ip): running sh with the "
                           "host network\n")
