"""Run gcloud-tasks-emulator (from its own venv, `make test` builds it) as a process group; queue helpers.

The emulator pins protobuf 4.25 and an old google-cloud-tasks, so it lives in ``.venv/tasks-emulator/``; the tests
talk to it with our own google-cloud-tasks over plaintext gRPC (``sources.gcp.tasks_client``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servers.processes import ProcessStartError, _spawn

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "tasks-emulator"
EMULATOR = VENV / "bin" / "gcloud-tasks-emulator"
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 5.0
# A task whose receiver is gone (a finished test's) is retried every 0.1 s, forever by default: cap it.
MAX_RETRIES = 5


def installed() -> bool:
    """Whether `make test` has built the emulator's venv."""
    return EMULATOR.is_file()


def client(host: str) -> Any:
    """Our google-cloud-tasks client over plaintext gRPC to the emulator at ``host`` (``127.0.0.1:port``)."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host)))


def _wait_serving(host: str, timeout_s: float, running: Any) -> None:
    """Until the emulator answers a ListQueues (an open port is not yet a gRPC server that answers)."""
    from google.api_core import exceptions as gexc

    tasks = client(host)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            tasks.list_queues(parent="projects/test/locations/here", retry=None, timeout=CALL_TIMEOUT_S)
            return
        except gexc.GoogleAPICallError as exc:
            if time.monotonic() > deadline:
                raise ProcessStartError(f"tasks-emulator did not answer ListQueues within {timeout_s:.0f}s ({exc}); "
                                        f"output tail:\n{running.read_log()[-2000:]}") from exc
            time.sleep(0.2)


@contextmanager
def cloud_tasks_emulator(port: int) -> Iterator[str]:
    """Run the emulator on ``port``; yield ``127.0.0.1:port`` for CLOUD_TASKS_EMULATOR_HOST."""
    host = f"127.0.0.1:{port}"
    # It binds [::]:port whatever it is told (tests run in a loopback-only namespace under `make test`); it calls a
    # task's URL with urllib, which would honour a proxy from the environment: never for the test receivers.
    argv = [str(EMULATOR), "start", f"--port={port}", f"--max-retries={MAX_RETRIES}"]
    no_proxy = {"NO_PROXY": "*", "no_proxy": "*"}
    with _spawn("tasks-emulator", argv, port, host, START_TIMEOUT_S, no_proxy) as running:
        _wait_serving(host, START_TIMEOUT_S, running)
        yield host


def create_queue(host: str, name: str) -> None:
    """Create the queue ``projects/P/locations/L/queues/Q`` on the emulator."""
    parent = name.rsplit("/queues/", 1)[0]
    client(host).create_queue(parent=parent, queue={"name": name}, timeout=CALL_TIMEOUT_S)


def delete_queue(host: str, name: str) -> None:
    """Delete the queue and its tasks: the emulator stops calling their URLs."""
    client(host).delete_queue(name=name, timeout=CALL_TIMEOUT_S)
