"""Run the external emulators as process groups; Pub/Sub emulator REST helpers."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PUBSUB_START_TIMEOUT_S = 60.0
STORAGE_START_TIMEOUT_S = 20.0
FUNCTION_START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LOG_TAIL_CHARS = 2000
BIN_DIR = Path(sys.executable).parent


class ProcessStartError(RuntimeError):
    """An emulator exited or did not open its port in time."""


@dataclass(frozen=True)
class RunningProcess:
    """A started subprocess's base URL and combined stdout/stderr log."""

    url: str
    log_path: Path

    def read_log(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL whatever outlives a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.wait()
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)


@contextmanager
def _spawn(
    name: str,
    argv: list[str],
    port: int,
    url: str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Iterator[RunningProcess]:
    fd, log_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    running = RunningProcess(url=url, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                what = (
                    f"exited with {process.returncode}"
                    if process.returncode is not None
                    else (f"did not open port {port} within {timeout_s:.0f}s")
                )
                tail = running.read_log()[-LOG_TAIL_CHARS:]
                raise ProcessStartError(f"{name} {what}; output tail:\n{tail}")
            time.sleep(0.2)
        yield running
    finally:
        _stop_group(process)
        log_path.unlink(missing_ok=True)


@contextmanager
def pubsub_emulator(port: int) -> Iterator[str]:
    """Run the Pub/Sub emulator; yield `host:port` for PUBSUB_EMULATOR_HOST."""
    host = f"127.0.0.1:{port}"
    argv = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}",
        "--project=test",
    ]
    # gcloud forks a JVM that outlives it, hence the whole-group stop in _spawn. Nothing of gcloud's own may reach
    # out: no metadata probe, no usage report, no update check (also under plain `pytest`, without make).
    quiet = {"CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
             "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true"}
    with _spawn("pubsub-emulator", argv, port, host, PUBSUB_START_TIMEOUT_S, quiet):
        yield host


@contextmanager
def storage_emulator(port: int) -> Iterator[str]:
    """Run gcp-storage-emulator in memory; yield its URL for STORAGE_EMULATOR_HOST."""
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN_DIR / "gcp-storage-emulator"),
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
        "--in-memory",
    ]
    with _spawn("storage-emulator", argv, port, url, STORAGE_START_TIMEOUT_S):
        yield url


@contextmanager
def functions_framework(
    port: int, env: Mapping[str, str], cwd: str | Path, target: str = "on_build", signature_type: str = "cloudevent"
) -> Iterator[RunningProcess]:
    """Serve `main.py:TARGET` (by default `on_build`, a CloudEvent function); yield its URL and log file."""
    argv = [
        str(BIN_DIR / "functions-framework"),
        f"--target={target}",
        f"--signature-type={signature_type}",
        "--source=main.py",
        f"--port={port}",
        "--host=127.0.0.1",
    ]
    url = f"http://127.0.0.1:{port}"
    with _spawn(
        "functions-framework", argv, port, url, FUNCTION_START_TIMEOUT_S, env, cwd
    ) as running:
        yield running


def create_topic(host: str, project: str, topic: str) -> None:
    """Create a topic on the Pub/Sub emulator."""
    response = httpx.put(f"http://{host}/v1/projects/{project}/topics/{topic}", json={})
    response.raise_for_status()


def create_push_subscription(
    host: str,
    project: str,
    sub: str,
    topic: str,
    push_endpoint: str,
    ack_deadline_s: int = 60,
) -> None:
    """Create a push subscription on the Pub/Sub emulator."""
    body = {
        "topic": f"projects/{project}/topics/{topic}",
        "pushConfig": {"pushEndpoint": push_endpoint},
        "ackDeadlineSeconds": ack_deadline_s,
    }
    response = httpx.put(
        f"http://{host}/v1/projects/{project}/subscriptions/{sub}", json=body
    )
    response.raise_for_status()


def publish(
    host: str, project: str, topic: str, data: bytes, attributes: Mapping[str, str]
) -> str:
    """Publish one message to the Pub/Sub emulator and return its message id."""
    message = {"data": base64.b64encode(data).decode(), "attributes": dict(attributes)}
    response = httpx.post(
        f"http://{host}/v1/projects/{project}/topics/{topic}:publish",
        json={"messages": [message]},
    )
    response.raise_for_status()
    return str(response.json()["messageIds"][0])


def create_pull_subscription(host: str, project: str, sub: str, topic: str) -> None:
    """Create an ordered pull subscription on the Pub/Sub emulator."""
    body = {"topic": f"projects/{project}/topics/{topic}", "enableMessageOrdering": True}
    response = httpx.put(f"http://{host}/v1/projects/{project}/subscriptions/{sub}", json=body)
    response.raise_for_status()


def pull(host: str, project: str, sub: str, max_messages: int = 100) -> list[dict[str, Any]]:
    """The messages waiting on a pull subscription (acked), each as the API returns it (data base64-decoded)."""
    response = httpx.post(f"http://{host}/v1/projects/{project}/subscriptions/{sub}:pull",
                          json={"maxMessages": max_messages, "returnImmediately": True}, timeout=30)
    response.raise_for_status()
    received = response.json().get("receivedMessages", [])
    if received:
        httpx.post(f"http://{host}/v1/projects/{project}/subscriptions/{sub}:acknowledge",
                   json={"ackIds": [r["ackId"] for r in received]}, timeout=30).raise_for_status()
    return [{**r["message"], "data": base64.b64decode(r["message"].get("data", ""))} for r in received]
