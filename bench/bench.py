"""Benchmarks for the function's cold path. Prints figures; asserts nothing.

P1  cold import of `main` vs `import functions_framework` alone (fresh interpreters, medians, ratio)
P2  time to ack a filtered message in-process (a QUEUED build and a non-deploy SUCCESS build)
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
ACKS = 2000
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

    data = base64.b64encode(json.dumps(build).encode()).decode()
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/",
                       "id": "1"}, {"message": {"data": data, "messageId": "1", "attributes": {}}})


def ack_time(on_build: object, build: dict[str, object]) -> float:
    """Median seconds for on_build to return on a message it must ignore."""
    ce = event(build)
    times = []
    for _ in range(ACKS):
        started = time.perf_counter()
        on_build(ce)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ff = cold_import("functions_framework")
    ours = cold_import("main")
    print(f"P1 cold import (median of {RUNS}): functions_framework {ff * 1000:.1f} ms, main {ours * 1000:.1f} ms, "
          f"ratio main/functions_framework = {ours / ff:.2f}")

    from main import on_build

    docker_only = json.loads((ROOT / "tests/data/builds/docker_only.json").read_text())
    deploy = json.loads((ROOT / "tests/data/builds/console_cd_trigger.json").read_text())
    queued = ack_time(on_build, {**deploy, "status": "QUEUED"})
    foreign = ack_time(on_build, docker_only)
    sdk = sorted(m for m in sys.modules if m.startswith(("google.cloud.run", "google.cloud.storage", "google.cloud.logging",
                                                          "google.auth", "google.api_core")))
    print(f"P2 ack a filtered message in-process (median of {ACKS}): QUEUED deploy build {queued * 1e6:.0f} µs, "
          f"non-deploy SUCCESS build {foreign * 1e6:.0f} µs; Google SDK modules imported: {len(sdk)}")


if __name__ == "__main__":
    main()
