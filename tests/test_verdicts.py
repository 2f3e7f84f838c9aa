"""The verdicts a team can trust, through the whole pipeline against a real sample service on loopback.

Each case is one way a real deploy breaks (or one way postdeploy itself cannot measure) and the verdict it must
get: a failed check is never outvoted, and postdeploy's own problems are never blamed on the deploy.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.config import Config
from core.model import RevisionInfo, Target, stamp
from core.pipeline import Adapters, local_log_source, local_probe_runner, manual_build, url_settings, validate_target
from demo.sample_service import SampleService
from report.store import LocalStore
from sources.monitoring import CloudMonitoringSource

NEW, OLD = "shop-00002-new", "shop-00001-old"
# The latency budget is not under test here: a loaded machine must not turn these verdicts.
WINDOW = "    window: {window_s: 1.5, interval_s: 0.1, paths: [/ok], max_p95_ms: 60000}\n"
HEALTH = "    health: {path: /health, tries: 1}\n"


def validate(url: str, tmp_path: Path, checks: str = "", *, revision: bool = False, **adapters: Any) -> dict[str, Any]:
    """The report of one validation of ``url`` with ``checks`` (YAML under defaults.checks) and the given adapters."""
    settings = Config.parse(f"version: 1\ndefaults:\n  checks:\n{checks or HEALTH}", "t.yaml").defaults
    target = Target(service="shop", url=url, match_rule="given URL")
    if revision:
        created = datetime.now(UTC) - timedelta(minutes=2)
        target = Target(service="shop", project="acme-prod", region="us-central1", url=url, revision=NEW,
                        previous_revision=OLD, revision_info=RevisionInfo(NEW, created))
    made = Adapters(revisions=lambda: None, store=lambda: LocalStore(tmp_path / "reports"), webhook=lambda: "",  # type: ignore[arg-type,return-value]
                    **adapters)
    validation = asyncio.run(validate_target(target, manual_build(), url_settings(settings), made, time.monotonic() + 120))
    assert validation is not None
    return validation.report


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["checks"] if c["name"] == name)
    return found


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_a_revision_that_dies_mid_window_fails_the_deploy(tmp_path: Path) -> None:
    with SampleService() as service:
        timer = later(0.6, service.stop)
        report = validate(service.url, tmp_path, HEALTH + WINDOW)
        timer.join()
    assert report["verdict"] == "FAIL", report["reasons"]
    assert check(report, "window")["status"] == "FAIL" and check(report, "window")["critical"]
    assert report["reasons"][0].startswith("window: availability")


def test_one_probe_in_six_answering_5xx_fails_the_deploy(sample: SampleService, tmp_path: Path) -> None:
    report = validate(sample.url, tmp_path, HEALTH + "    window: {window_s: 1.5, interval_s: 0.1, paths: ['/flaky?every=6']}\n")
    assert report["verdict"] == "FAIL", report["reasons"]
    assert "status 500" in check(report, "window")["summary"]


def test_a_revision_that_starts_hanging_fails_the_deploy(sample: SampleService, tmp_path: Path) -> None:
    timer = later(0.6, lambda: setattr(sample, "mode", "hanging"))
    report = validate(sample.url, tmp_path, HEALTH + "    window: {window_s: 1.5, interval_s: 0.1, paths: [/ok], request_timeout_s: 8}\n")
    timer.join()
    assert report["verdict"] == "FAIL", report["reasons"]
    assert "when the window closed" in check(report, "window")["summary"]


def test_a_non_critical_golden_path_failing_every_run_caps_the_verdict_at_warn(sample: SampleService, tmp_path: Path) -> None:
    paths = ("    smoke:\n      paths:\n"
             + "".join(f"        - {{name: ok{i}, steps: [{{http: {{path: /ok}}}}]}}\n" for i in range(3))
             + "        - {name: refunds, steps: [{http: {path: /status/500, method: POST}}]}\n")
    report = validate(sample.url, tmp_path, HEALTH + WINDOW + paths)
    assert report["verdict"] == "WARN", (report["score"], report["reasons"])
    assert report["score"] >= 75 and check(report, "smoke")["status"] == "FAIL" and not check(report, "smoke")["critical"]
    # health 20 + window 20 + smoke FAIL graded 3/4 (0.4 × 0.75 = 0.3 → 6 of 20) = 46 of 60: 76.7
    assert report["reasons"][0].startswith("smoke: 3/4 golden paths pass; refunds:")
    assert not any(step.startswith("roll back") for step in report["next_steps"])


def test_a_non_critical_read_only_path_broken_in_the_window_is_not_counted_twice(sample: SampleService,
                                                                                 tmp_path: Path) -> None:
    paths = "    smoke:\n      paths: [{name: refunds, steps: [{http: {path: /status/500}}]}]\n"
    report = validate(sample.url, tmp_path, HEALTH + WINDOW.replace("}", ", smoke: [refunds]}") + paths)
    window = check(report, "window")
    assert window["status"] == "PASS", window["summary"]  # the smoke check already failed it: judged once
    assert "non-critical smoke refunds failed every run during the window (the smoke check judges it)" in window["reasons"]
    assert check(report, "smoke")["status"] == "FAIL" and report["verdict"] == "FAIL"  # 20 + 20 + 0 of 60: by the score


def test_a_403_from_a_service_that_is_not_cloud_run_is_reported_as_403(sample: SampleService, tmp_path: Path) -> None:
    asked: list[str] = []
    report = validate(sample.url, tmp_path, "    health: {path: /status/403, tries: 1}\n    window: {window_s: 0}\n",
                      token_source=asked.append)
    assert report["verdict"] == "FAIL"
    assert check(report, "health")["summary"] == "expected status 200 from /status/403, got 403"
    assert asked == []


def test_a_missing_interpreter_is_not_measured_never_a_failed_deploy(sample: SampleService, tmp_path: Path) -> None:
    report = validate(sample.url, tmp_path, HEALTH + WINDOW + "    imports: {modules: [json]}\n",
                      probe_runner=local_probe_runner(str(tmp_path / "no-such-python")))
    assert report["verdict"] == "PASS", report["reasons"]
    assert check(report, "imports")["status"] == "ERROR" and check(report, "imports")["score"] is None
    assert [n["check"] for n in report["not_measured"]] == ["imports"]
    assert not any(step.startswith("roll back") for step in report["next_steps"])


def test_no_monitoring_credentials_is_not_measured_never_a_failed_deploy(sample: SampleService, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application default credentials here
    report = validate(sample.url, tmp_path, HEALTH + WINDOW + "    metrics: {wait_for_data_s: 0}\n    logs: {enabled: false}\n",
                      revision=True, metric_source=lambda target, settings: CloudMonitoringSource(backoff_s=0.01))
    assert report["verdict"] == "PASS", report["reasons"]
    metrics = check(report, "metrics")
    assert metrics["status"] == "ERROR" and metrics["summary"].startswith("no Google credentials to read Cloud Monitoring")
    assert "application-default login" in report["not_measured"][0]["fix"]


def test_unreadable_test_results_are_not_measured_never_a_failed_deploy(sample: SampleService, tmp_path: Path) -> None:
    (tmp_path / "results.xml").mkdir()  # matches the pattern, but no file can be read from it
    report = validate(sample.url, tmp_path, HEALTH + WINDOW + f"    tests: {{patterns: ['{tmp_path}/*.xml']}}\n")
    assert report["verdict"] in ("PASS", "INCONCLUSIVE"), report["reasons"]
    assert check(report, "tests")["status"] == "ERROR" and check(report, "tests")["score"] is None


def write_log(path: Path, revision: str, when: datetime, *, error: bool = False) -> None:
    """One request line, or one traceback, of a revision, in the JSON shape Cloud Run takes from stdout."""
    line: dict[str, Any] = {"timestamp": stamp(when), "severity": "INFO", "message": "GET /ok 200",
                            "httpRequest": {"requestMethod": "GET", "requestUrl": "/ok", "status": 200},
                            "logging.googleapis.com/labels": {"revision_name": revision}}
    if error:
        line.update(severity="ERROR", message='Traceback (most recent call last):\n  File "/app/shop/cart.py", line 9, in '
                    "total\n    return sum(prices)\nTypeError: unsupported operand type(s) for +: 'int' and 'str'")
        del line["httpRequest"]
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@pytest.mark.parametrize(("errors", "logs_status", "verdict"), [
    pytest.param(3, "FAIL", "FAIL", id="a-recurring-new-error-fails-the-deploy"),
    pytest.param(1, "WARN", "WARN", id="a-single-new-error-warns"),  # health 20 + logs 20 × 0.65 = 33 of 40: 82.5
    pytest.param(0, "PASS", "PASS", id="no-new-error-passes"),
])
def test_new_errors_since_the_deploy(sample: SampleService, tmp_path: Path, errors: int, logs_status: str, verdict: str) -> None:
    log = tmp_path / "shop.log"
    now = datetime.now(UTC)
    for minutes in range(8, 3, -1):
        write_log(log, OLD, now - timedelta(minutes=minutes))
    for i in range(4):
        write_log(log, NEW, now - timedelta(seconds=60 - i), error=i < errors)
    report = validate(sample.url, tmp_path, HEALTH + "    window: {window_s: 0}\n    logs: {settle_s: 0}\n    metrics: {enabled: false}\n",
                      revision=True, log_source=local_log_source(log))
    logs = check(report, "logs")
    assert (logs["status"], report["verdict"]) == (logs_status, verdict), logs["summary"]
    assert logs["critical"] is True  # a previous revision to compare with: new errors are critical
