"""The bench's P3 and P6 measurements return what they claim to measure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# bench/ is a script folder, not a package: loaded by path.
_spec = importlib.util.spec_from_file_location("postdeploy_bench", Path(__file__).resolve().parent.parent / "bench" / "bench.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_p3_concurrent_wall_time_follows_the_slowest_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "LATENCIES_S", (0.05, 0.1, 0.15, 0.2))  # a quarter of the bench's own: same shape, faster
    concurrent, sequential = bench.wall_times()
    assert max(bench.LATENCIES_S) <= concurrent < max(bench.LATENCIES_S) + 0.3
    assert sequential >= sum(bench.LATENCIES_S)


def test_p6_counts_logging_calls_per_validation() -> None:
    assert bench.logging_calls() == {"new errors (FAIL)": 2, "no errors, request logs (PASS)": 3,
                                     "nothing ingested yet (SKIPPED)": 3}


def test_p7_times_a_validation_to_its_verdict() -> None:
    from demo.sample_service import SampleService
    from tests.servers.processes import free_port

    seconds, verdict = bench.time_to_verdict(f"http://127.0.0.1:{free_port()}")
    assert verdict == "FAIL" and seconds > 0
    with SampleService() as service:
        seconds, verdict = bench.time_to_verdict(service.url, {"window_s": 0.5, "interval_s": 0.25})
    assert verdict == "PASS" and seconds >= 0.5
