"""The window's timeline, kept in report.json so the report can draw it: every probe (bounded), the abort point."""

from __future__ import annotations

import pytest

from checks import window
from checks.window import MAX_SAMPLES, Probe, timeline
from core.model import CheckContext, CheckResult, Status, Target
from demo.sample_service import SampleService
from probe.golden.session import Session
from tests.checks.test_window import observe
from tests.servers.processes import free_port


def probe(at_s: float, ok: bool = True, path: str = "GET /ok", ms: float = 12.345, detail: str = "") -> Probe:
    return Probe(at_s, path, ok, ms, detail)


def test_every_probe_is_kept_with_a_failures_detail_only() -> None:
    probes = [probe(0.0), probe(1.23456, ok=False, detail="status 500"), probe(2.0, path="smoke orders", ms=80.06)]
    assert timeline(probes, 60.0, None) == {"window_s": 60.0, "aborted_at_s": None, "probes": 3, "samples": [
        {"at_s": 0.0, "path": "GET /ok", "ok": True, "ms": 12.3},
        {"at_s": 1.235, "path": "GET /ok", "ok": False, "ms": 12.3, "detail": "status 500"},
        {"at_s": 2.0, "path": "smoke orders", "ok": True, "ms": 80.1}]}


def test_the_abort_point_is_kept() -> None:
    assert timeline([probe(0.0, ok=False)], 60.0, 4.56789)["aborted_at_s"] == 4.568
    assert timeline([probe(0.0, ok=False)], 60.0, 0.0)["aborted_at_s"] == 0.0  # aborted at once is not "never"


@pytest.mark.parametrize(("good", "bad"), [(MAX_SAMPLES, 1), (3 * MAX_SAMPLES, 7), (10, MAX_SAMPLES + 5)])
def test_a_long_window_keeps_every_failure_then_answers_spread_evenly(good: int, bad: int) -> None:
    probes = [probe(i * 0.1) for i in range(good)] + [probe(good * 0.1 + i, ok=False) for i in range(bad)]
    kept = timeline(probes, 600.0, None)
    samples = kept["samples"]
    assert kept["probes"] == good + bad and len(samples) == MAX_SAMPLES
    failed = [s for s in samples if not s["ok"]]
    assert len(failed) == min(bad, MAX_SAMPLES)
    answers = [s["at_s"] for s in samples if s["ok"]]
    assert answers == sorted(answers) and len(answers) == MAX_SAMPLES - len(failed)
    if answers:  # spread over the whole run of answers, not its first part
        assert answers[0] == 0.0 and answers[-1] >= (good - 1) * 0.1 * 0.99 - good * 0.1 / max(len(answers), 1)
    assert [s["at_s"] for s in samples] == sorted(s["at_s"] for s in samples)  # in time order


def test_exactly_max_samples_are_all_kept() -> None:
    probes = [probe(i * 0.1) for i in range(MAX_SAMPLES)]
    assert [s["at_s"] for s in timeline(probes, 600.0, None)["samples"]] == [round(p.at_s, 3) for p in probes]


def test_a_real_window_keeps_its_probes(sample: SampleService) -> None:
    result = observe(sample.url, window_s=1.0, interval_s=0.2, paths=["/ok", "/flaky?every=3"], abort_after=0,
                    fail_below=0.0, warn_below=0.0)  # judged as it goes, never cut short
    line = result.data["timeline"]
    assert line["window_s"] == 1.0 and line["aborted_at_s"] is None
    assert line["probes"] == len(line["samples"]) >= 10
    assert {s["path"] for s in line["samples"]} == {"GET /ok", "GET /flaky?every=3"}
    failed = [s for s in line["samples"] if not s["ok"]]
    assert failed and all(s["path"] == "GET /flaky?every=3" and s["detail"] == "status 500" for s in failed)


def test_a_dead_revision_marks_where_the_window_stopped() -> None:
    result = observe(f"http://127.0.0.1:{free_port()}", window_s=6.0, interval_s=0.5, paths=["/health"])
    line = result.data["timeline"]
    assert line["aborted_at_s"] is not None and line["aborted_at_s"] < 6.0
    assert [s["ok"] for s in line["samples"]] == [False] and line["samples"][0]["detail"].startswith("ConnectError")


def test_a_secret_the_run_held_is_scrubbed_from_the_timeline_too() -> None:
    secret = "s3cr3t-order-token-9f8e7d"
    result = CheckResult(Status.FAIL, "x", data={"timeline": timeline(
        [probe(0.0, ok=False, detail=f"status 401: token {secret} refused")], 60.0, None)})
    session = Session(Target(service="sample", url="http://127.0.0.1:9"), window.Config(), CheckContext(http=None))  # type: ignore[arg-type]
    session.scrubbed.append(secret)
    detail = session.scrubbed_result(result).data["timeline"]["samples"][0]["detail"]
    assert secret not in detail and detail.startswith("status 401: token ") and detail.endswith(" refused")
