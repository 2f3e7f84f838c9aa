"""Shared fixtures: real local servers and emulators, and an isolated environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.logs import use_console
from core.redact import forget
from demo.sample_service import SampleService
from sources.gcp import LOGGING_ENDPOINT_ENV, MONITORING_ENDPOINT_ENV
from tests.servers import processes
from tests.servers.data import DATA, IMAGE, load_build
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_monitoring import FakeMonitoring
from tests.servers.fake_run import TRAFFIC_LATEST, FakeCloudRun
from tests.servers.gcs_proxy import PreconditionProxy
from tests.servers.slack import SlackReceiver
from tests.servers.tasks_emulator import VENV as TASKS_EMULATOR_VENV
from tests.servers.tasks_emulator import cloud_tasks_emulator, create_queue, delete_queue
from tests.servers.tasks_emulator import installed as tasks_emulator_installed

ENV_VARS = (
    "POSTDEPLOY_CONFIG", "POSTDEPLOY_REPORTS", "POSTDEPLOY_SLACK_WEBHOOK", "POSTDEPLOY_SLACK_WEBHOOK_SECRET",
    "POSTDEPLOY_RUN_API_ENDPOINT", "POSTDEPLOY_LOGGING_API_ENDPOINT", "POSTDEPLOY_MONITORING_API_ENDPOINT",
    "STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
    "POSTDEPLOY_TASKS_QUEUE", "POSTDEPLOY_TASKS_URL", "POSTDEPLOY_TASKS_SERVICE_ACCOUNT", "CLOUD_TASKS_EMULATOR_HOST",
    "POSTDEPLOY_IAM_CREDENTIALS_API_ENDPOINT",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's cloud settings, nor a secret an earlier test registered; logs go to the console handler."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    use_console()
    forget()


@pytest.fixture
def sample() -> Iterator[SampleService]:
    with SampleService(token="test-id-token") as service:
        yield service


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudRun]:
    with FakeCloudRun() as fake:
        monkeypatch.setenv("POSTDEPLOY_RUN_API_ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def fake_monitoring(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMonitoring]:
    with FakeMonitoring() as fake:
        monkeypatch.setenv(MONITORING_ENDPOINT_ENV, fake.endpoint)
        yield fake


@pytest.fixture
def fake_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLogging]:
    with FakeLogging() as fake:
        monkeypatch.setenv(LOGGING_ENDPOINT_ENV, fake.endpoint)
        yield fake


def make_probe_venv(root: Path) -> Path:
    """A throwaway virtualenv (no pip: fast) with tests/data/probe/probe_sample installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    shutil.copytree(DATA / "probe" / "probe_sample", Path(purelib) / "probe_sample", ignore=shutil.ignore_patterns("__pycache__"))
    return python


@pytest.fixture(scope="session")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of one probe virtualenv shared by the session (tests only run it, never install into it)."""
    return str(make_probe_venv(tmp_path_factory.mktemp("probe-venv")))


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[str]:
    with processes.storage_emulator(processes.free_port()) as url:
        yield url


@pytest.fixture
def gcs(storage_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PreconditionProxy, str]]:
    """A fresh bucket behind the precondition-enforcing proxy; yields (proxy, bucket)."""
    from sources.gcp import storage_client

    with PreconditionProxy(storage_emulator) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
        bucket = f"reports-{uuid.uuid4().hex[:10]}"
        storage_client().create_bucket(bucket)
        yield proxy, bucket


@pytest.fixture
def bucket(gcs: tuple[PreconditionProxy, str]) -> str:
    """The fresh bucket of `gcs`, for tests that need no proxy."""
    return gcs[1]


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    with processes.pubsub_emulator(processes.free_port()) as host:
        yield host


@pytest.fixture(scope="session")
def tasks_emulator() -> Iterator[str]:
    """The Cloud Tasks emulator for the session: its ``127.0.0.1:port``."""
    if not tasks_emulator_installed():
        pytest.skip(f"the Cloud Tasks emulator is not installed in {TASKS_EMULATOR_VENV}: run `make test` (it builds that venv)")
    with cloud_tasks_emulator(processes.free_port()) as host:
        yield host


@pytest.fixture
def tasks_queue(tasks_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh queue on the emulator, CLOUD_TASKS_EMULATOR_HOST pointing at it; yields ``projects/P/locations/L/queues/Q``."""
    from sources.gcp import TASKS_EMULATOR_ENV

    monkeypatch.setenv(TASKS_EMULATOR_ENV, tasks_emulator)
    name = f"projects/test/locations/us-central1/queues/checks-{uuid.uuid4().hex[:10]}"
    create_queue(tasks_emulator, name)
    yield name
    delete_queue(tasks_emulator, name)


def add_orders_service(fake: FakeCloudRun, url: str, build_id: str, *, image: str = IMAGE, ready: bool = True) -> None:
    """`orders` in acme-prod/us-central1 with an old revision and the one this build created."""
    fake.add_revision("acme-prod", "us-central1", "orders", "orders-00041-old", image=image.replace("9d2b1c0e4f", "8c1a0b9d3e"),
                      create_time="2026-11-20T09:00:00.000000Z")
    fake.add_revision("acme-prod", "us-central1", "orders", "orders-00042-new", image=image,
                      labels={"gcb-build-id": build_id, "managed-by": "gcp-cloud-build-deploy-cloud-run"},
                      create_time="2026-11-25T10:03:30.123456Z", ready=ready,
                      ready_message="" if ready else "Container failed to start and listen on PORT=8080")
    fake.add_service("acme-prod", "us-central1", "orders", uri=url, latest_created="orders-00042-new",
                     latest_ready="orders-00042-new" if ready else "orders-00041-old",
                     traffic=[{"type": TRAFFIC_LATEST, "percent": 100}])


@pytest.fixture
def cd_build() -> dict[str, Any]:
    """The recorded console_cd_trigger build: it deploys `orders`."""
    return load_build("console_cd_trigger")


@pytest.fixture
def orders_build(cd_build: dict[str, Any], fake_run: FakeCloudRun, sample: SampleService) -> dict[str, Any]:
    """`cd_build`, with the `orders` service it deployed on the fake Cloud Run API, served by `sample`."""
    add_orders_service(fake_run, sample.url, cd_build["id"])
    return cd_build


@pytest.fixture
def cloud(fake_run: FakeCloudRun, fake_logging: FakeLogging) -> FakeCloudRun:
    """The fake Admin API holding the `orders` revision (recorded shape), wired to publish execution logs."""
    revision = json.loads((DATA / "probe" / "revision_orders.json").read_text(encoding="utf-8"))
    fake_run.revisions[revision["name"]] = revision
    fake_run.logging = fake_logging
    return fake_run
