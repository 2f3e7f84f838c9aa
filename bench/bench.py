"""Benchmarks for the function's cold path. Prints figures; asserts nothing.

P1  cold import of `main` vs `import functions_framework` alone (fresh interpreters, medians, ratio)
P2  time to ack a filtered message in-process (a QUEUED build and a non-deploy SUCCESS build)
P3  validation wall time vs the slowest check, with injected latencies: concurrent run_checks vs one check after another
P6  Logging API calls per validation: the logs check over the official client against tests/servers/fake_logging
P7  time to verdict of `validate --url` with the default 60 s observation window: a revision dead from the start
    (nothing listens), and the overhead beyond the configured waits for a healthy one (the sample service)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
ACKS = 2000
LATENCIES_S = (0.2, 0.4, 0.6, 0.8)
P3_RUNS = 5
P7_RUNS = 3
P7_HEALTHY_WINDOW_S = 10.0
TIMER = "import time, sys; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def cold_import(module: str) -> float:
    """Median seconds to import a module in a fresh interpreter."""
    times = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", TIMER.format(module=module)], cwd=ROOT, check=True,
                             capture_output=True, text=True)
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def event(build: dict[str, object]) -> object:
    from cloudevents.http import CloudEvent

    from tests.servers.data import pubsub_message

    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/",
                       "id": "1"}, {"message": pubsub_message(build, "1", attributes={})})


def ack_time(on_build: object, build: dict[str, object]) -> float:
    """Median seconds for on_build to return on a message it must ignore."""
    ce = event(build)
    times = []
    for _ in range(ACKS):
        started = time.perf_counter()
        on_build(ce)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sleeping_check(name: str, seconds: float) -> ModuleType:
    """A check module that only waits: its latency is the injected one."""
    from core.model import CheckResult, Status

    module = ModuleType(name)

    async def run(target: object, config: object, ctx: object) -> CheckResult:
        await asyncio.sleep(seconds)
        return CheckResult(Status.PASS, f"slept {seconds} s")

    module.NAME, module.CATEGORY, module.run = name, "Bench", run  # type: ignore[attr-defined]
    return module


def wall_times() -> tuple[float, float]:
    """Seconds for run_checks over the sleeping checks: all at once, and one registry entry after another."""
    from core.model import CheckContext, Target
    from core.runner import run_checks

    registry = {f"sleep{i}": sleeping_check(f"sleep{i}", d) for i, d in enumerate(LATENCIES_S)}
    config = SimpleNamespace(enabled=True, timeout_s=30.0, critical=False, category="")
    settings = SimpleNamespace(checks=SimpleNamespace(**dict.fromkeys(registry, config)))
    target = Target(service="bench", url="http://127.0.0.1:9")

    async def concurrent() -> float:
        started = time.perf_counter()
        await run_checks(target, settings, registry, CheckContext(http=None, deadline=time.monotonic() + 60))
        return time.perf_counter() - started

    async def sequential() -> float:
        started = time.perf_counter()
        for name, module in registry.items():
            await run_checks(target, settings, {name: module}, CheckContext(http=None, deadline=time.monotonic() + 60))
        return time.perf_counter() - started

    return asyncio.run(concurrent()), asyncio.run(sequential())


def logging_calls() -> dict[str, int]:
    """entries.list requests the logs check sends per validation, by what the revisions logged."""
    from checks import logs
    from core.model import CheckContext
    from sources.cloud_logging import CloudLoggingSource
    from sources.gcp import LOGGING_ENDPOINT_ENV
    from tests.checks.helpers import revision_target
    from tests.servers.data import NEW, OLD
    from tests.servers.data import recorded_entry as entry
    from tests.servers.fake_logging import FakeLogging

    created = datetime.now(UTC) - timedelta(minutes=2)
    cases = {
        "new errors": [entry("python_traceback", created + timedelta(seconds=10 + i), NEW) for i in range(6)]
        + [entry("json_stack_trace", created - timedelta(minutes=3), OLD)],
        "no errors, request logs": [entry("request_200", created + timedelta(seconds=5), NEW)],
        "nothing ingested yet": [entry("python_traceback", created - timedelta(minutes=1), OLD)],
    }
    target = revision_target(created)
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "bench")
    counts = {}
    with FakeLogging() as fake, mock.patch.dict(os.environ, {LOGGING_ENDPOINT_ENV: fake.endpoint, "GOOGLE_CLOUD_PROJECT": project}):
        for case, entries in cases.items():
            fake.entries[:] = entries
            fake.requests.clear()
            ctx = CheckContext(http=None, log_source=CloudLoggingSource())
            result = asyncio.run(logs.run(target, logs.Config(settle_s=0), ctx))
            counts[f"{case} ({result.status.value})"] = len(fake.requests)
    return counts


def time_to_verdict(url: str, window: dict[str, float] | None = None) -> tuple[float, str]:
    """Seconds from the start of a URL validation (default config, window overridden) to its report, and its verdict."""
    import tempfile

    from core.config import Config
    from core.pipeline import Adapters, manual_build, url_settings, url_target, validate_target
    from report.store import LocalStore

    settings = url_settings(Config.default().defaults)
    if window:
        current: Any = settings.checks  # a model built from the registry, opaque to mypy
        checks = current.model_copy(update={"window": settings.check("window").model_copy(update=window)})
        settings = settings.model_copy(update={"checks": checks})
    with tempfile.TemporaryDirectory(prefix="postdeploy-bench-") as out:
        adapters = Adapters(revisions=lambda: None, store=lambda: LocalStore(out), webhook=lambda: "")  # type: ignore[arg-type,return-value]
        started = time.perf_counter()
        validation = asyncio.run(validate_target(url_target(url, "bench"), manual_build(), settings, adapters,
                                                 time.monotonic() + settings.deadline_s))
        seconds = time.perf_counter() - started
    assert validation is not None
    return seconds, str(validation.report["verdict"])


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ff = cold_import("functions_framework")
    ours = cold_import("main")
    print(f"P1 cold import (median of {RUNS}): functions_framework {ff * 1000:.1f} ms, main {ours * 1000:.1f} ms, "
          f"ratio main/functions_framework = {ours / ff:.2f}")

    from main import on_build
    from tests.servers.data import load_build

    docker_only = load_build("docker_only")
    deploy = load_build("console_cd_trigger")
    queued = ack_time(on_build, {**deploy, "status": "QUEUED"})
    foreign = ack_time(on_build, docker_only)
    sdk = sorted(m for m in sys.modules if m.startswith(("google.cloud.run", "google.cloud.storage", "google.cloud.logging",
                                                          "google.auth", "google.api_core")))
    print(f"P2 ack a filtered message in-process (median of {ACKS}): QUEUED deploy build {queued * 1e6:.0f} µs, "
          f"non-deploy SUCCESS build {foreign * 1e6:.0f} µs; Google SDK modules imported: {len(sdk)}")

    runs = [wall_times() for _ in range(P3_RUNS)]
    concurrent = statistics.median(r[0] for r in runs)
    sequential = statistics.median(r[1] for r in runs)
    slowest = max(LATENCIES_S)
    print(f"P3 checks sleeping {', '.join(f'{d:g}' for d in LATENCIES_S)} s (median of {P3_RUNS}): slowest check "
          f"{slowest * 1000:.0f} ms, concurrent wall {concurrent * 1000:.0f} ms, sequential wall {sequential * 1000:.0f} ms; "
          f"concurrent/slowest = {concurrent / slowest:.3f}, sequential/concurrent = {sequential / concurrent:.2f}")

    calls = logging_calls()
    print("P6 entries.list calls per validation (new + previous revision): "
          + ", ".join(f"{case} {n}" for case, n in calls.items()))

    from core.logs import use_console
    from demo.sample_service import SampleService
    from tests.servers.processes import free_port

    use_console()
    dead = [time_to_verdict(f"http://127.0.0.1:{free_port()}") for _ in range(P7_RUNS)]
    with SampleService() as service:
        healthy = [time_to_verdict(service.url, {"window_s": P7_HEALTHY_WINDOW_S, "interval_s": 1.0}) for _ in range(P7_RUNS)]
    dead_s = statistics.median(s for s, _ in dead)
    overhead = statistics.median(s for s, _ in healthy) - P7_HEALTHY_WINDOW_S
    print(f"P7 time to verdict (median of {P7_RUNS}): dead from the start with a 60 s window {dead_s:.2f} s "
          f"({', '.join(sorted({v for _, v in dead}))}); healthy with a {P7_HEALTHY_WINDOW_S:g} s window: "
          f"{overhead:+.2f} s beyond the window ({', '.join(sorted({v for _, v in healthy}))})")


if __name__ == "__main__":
    main()
