"""`python main.py …` as a user runs it: real subprocesses against loopback servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.sample_service import SampleService
from tests.conftest import add_orders_service
from tests.servers.data import load_build, push_body
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_monitoring import FakeMonitoring
from tests.servers.fake_run import FakeCloudRun

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ("version: 1\ndefaults:\n  checks:\n    health: {path: /health, expect_json: ['status == \"healthy\"'], tries: 2, interval_s: 0}\n"
          "    logs: {settle_s: 0}\n    metrics: {wait_for_data_s: 0}\n    window: {window_s: 0}\n")


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})


NEW_SIGNATURE = "KeyError at orders/api.py:7 load_customer"


def report_of(done: subprocess.CompletedProcess[str], out: Path) -> dict[str, Any]:
    paths = [Path(line.strip()) for line in done.stdout.splitlines() if line.strip().startswith(str(out))]
    assert {p.name for p in paths} == {"report.md", "report.html", "report.json"}
    report: dict[str, Any] = json.loads(next(p for p in paths if p.suffix == ".json").read_text(encoding="utf-8"))
    return report


def check_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def test_demo_passes_and_writes_reports(tmp_path: Path) -> None:
    done = cli("demo", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "PASS  sample-app" in done.stdout
    report = report_of(done, tmp_path)
    assert report["verdict"] == "PASS"
    assert report["target"]["match_rule"].startswith("label gcb-build-id=demo-")
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    # A subset: checks added to the registry later (metrics, needing Cloud Monitoring) are SKIPPED in the demo.
    assert statuses.items() >= {"deployment": "PASS", "health": "PASS", "imports": "PASS", "logs": "PASS", "smoke": "PASS",
                                "tests": "PASS"}.items()
    assert set(statuses.values()) <= {"PASS", "SKIPPED"}
    imports = check_of(report, "imports")
    assert any("demo.sample_legacy" in e["what"] and "DeprecationWarning" in str(e["measured"]) for e in imports["evidence"])
    assert "6/6 tests passed" in done.stdout and "3/3 golden paths pass" in done.stdout
    assert "logs        PASS    no errors logged by sample-app-00002-dem since " in done.stdout
    logs = {e["what"]: e for e in check_of(report, "logs")["evidence"]}
    gone = logs["gone signature: payment gateway timed out after <n> s for order <id>"]
    assert (gone["measured"], gone["previous"]) == ("0× since deploy", "3× (0.3/min)")
    assert logs["entries.list calls"]["measured"] == "2 for sample-app-00002-dem, 1 for sample-app-00001-abc"


def test_demo_broken_shows_a_fail_with_reasons(tmp_path: Path) -> None:
    done = cli("demo", "--broken", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "FAIL  sample-app" in done.stdout
    assert "expected status 200 from /health, got 503 after 3 tries" in done.stdout
    assert "roll back: gcloud run services update-traffic sample-app" in done.stdout
    assert "create-order (critical): expected status 201 from POST /orders, got 500" in done.stdout
    assert "5/6 tests passed" in done.stdout and "tests.e2e.test_checkout failed" in done.stdout
    # The count grows with the checks' own probes of the raising service (logs run after them).
    assert f"logs        FAIL    new error since deploy: {NEW_SIGNATURE} (" in done.stdout
    logs = check_of(report_of(done, tmp_path), "logs")
    assert logs["status"] == "FAIL"
    assert logs["reasons"][0].startswith(f"new error since deploy: {NEW_SIGNATURE} (")
    assert any(r.startswith("new error since deploy") and "HTTP 500 POST /orders (" in r for r in logs["reasons"][1:])
    shown = {e["what"]: e for e in logs["evidence"]}
    assert "KeyError: 'customer_id'" in shown[f"new signature: {NEW_SIGNATURE}"]["measured"]
    assert "gone signature: payment gateway timed out after <n> s for order <id>" in shown


def test_a_new_exception_after_deploy_is_the_first_reason(tmp_path: Path) -> None:
    """The service stays healthy but starts raising: only the logs check can tell, and it names the signature first."""
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH.replace("{settle_s: 0}", "{settle_s: 0, critical: true}"), encoding="utf-8")
    log = tmp_path / "service.log"
    with SampleService(log_path=log) as service:
        httpx.get(f"{service.url}/orders", timeout=5).raise_for_status()
        service.mode = "raising"
        httpx.get(f"{service.url}/orders", timeout=5).raise_for_status()
        done = cli("validate", "--url", service.url, "--service", "sample", "--config", str(config),
                   "--log-file", str(log), "--out", str(tmp_path / "r"))
    assert done.returncode == 2, done.stdout + done.stderr
    report = report_of(done, tmp_path / "r")
    assert report["verdict"] == "FAIL"
    assert report["reasons"][0].startswith(f"logs: new error since deploy: {NEW_SIGNATURE} (")
    assert report["summary"] == report["reasons"][0]
    assert check_of(report, "health")["status"] == "PASS"


@pytest.mark.parametrize(("mode", "code", "verdict"), [("healthy", 0, "PASS"), ("broken", 2, "FAIL")])
def test_validate_url_exit_code_follows_the_verdict(tmp_path: Path, mode: str, code: int, verdict: str) -> None:
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH, encoding="utf-8")
    with SampleService(mode=mode) as service:
        done = cli("validate", "--url", service.url, "--service", "sample", "--config", str(config), "--out", str(tmp_path / "r"))
    assert done.returncode == code, done.stdout + done.stderr
    assert f"{verdict}  sample" in done.stdout
    assert "Deployment" in done.stdout and "   health" in done.stdout
    assert " deployment " not in done.stdout  # no Cloud Run facts with only a URL: left out, not SKIPPED


def test_validate_service_through_the_cloud_run_api(fake_run: FakeCloudRun, fake_logging: FakeLogging,
                                                    fake_monitoring: FakeMonitoring, sample: SampleService, tmp_path: Path) -> None:
    add_orders_service(fake_run, sample.url, "some-build")
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH, encoding="utf-8")
    done = cli("validate", "--project", "acme-prod", "--region", "us-central1", "--service", "orders", "--config", str(config),
               "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders-00042-new" in done.stdout


def _push_file(tmp_path: Path, build: dict[str, Any]) -> Path:
    path = tmp_path / "message.json"
    path.write_text(json.dumps(push_body(build, "42", status=None, subscription="s")), encoding="utf-8")
    return path


def test_replay_runs_the_function_path(fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, tmp_path: Path,
                                       orders_build: dict[str, Any]) -> None:
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH, encoding="utf-8")
    message = _push_file(tmp_path, orders_build)
    first = cli("replay", str(message), "--config", str(config), "--out", str(tmp_path / "r"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "r" / "orders" / orders_build["id"] / "report.json").exists()
    again = cli("replay", str(message), "--config", str(config), "--out", str(tmp_path / "r"))
    assert again.returncode == 0 and "already validated" in again.stdout


def test_replay_of_a_queued_build_is_ignored(tmp_path: Path) -> None:
    done = cli("replay", str(_push_file(tmp_path, {**load_build("console_cd_trigger"), "status": "QUEUED"})))
    assert done.returncode == 0 and done.stdout.startswith("ignored: build 5f1c2a9e")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate"], "expected --url URL, or --project, --region and --service"),
        (["validate", "--url", "ftp://x"], "expected --url http(s)://host[/path], found 'ftp://x'"),
        (["frobnicate"], "invalid choice"),
        (["check-config", "/nonexistent.yaml"], "check-config FILE: expected a readable YAML config file, found nothing at /nonexistent"),
    ],
    ids=["validate-nothing", "validate-bad-url", "unknown-command", "check-config-missing"],
)
def test_usage_errors_exit_4(args: list[str], message: str) -> None:
    done = cli(*args)
    assert done.returncode == 4
    assert message in done.stderr


def test_what_the_cli_prints_about_bad_input_is_redacted(tmp_path: Path) -> None:
    done = cli("validate", "--url", "ftp://bob:S3cret-pw-9@host.example")
    assert done.returncode == 4
    assert "bob:[REDACTED]@host.example" in done.stderr and "S3cret-pw-9" not in done.stderr
    token = "ghp_" + "A1b2C3d4" * 5  # a GitHub token as a build id: the reason quotes what it found
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"id": f"leak {token}", "status": "SUCCESS"}), encoding="utf-8")
    done = cli("replay", str(path))
    assert done.returncode == 4 and "[REDACTED]" in done.stdout + done.stderr
    assert token not in done.stdout + done.stderr


def test_replay_of_garbage_exits_4(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"message": {"data": "@@@", "messageId": "7"}}', encoding="utf-8")
    done = cli("replay", str(path))
    assert done.returncode == 4 and "invalid base64" in done.stdout


def test_a_filtered_message_imports_no_google_sdk() -> None:
    probe = (
        "import base64, json, sys\n"
        "from cloudevents.http import CloudEvent\n"
        "import main\n"
        "build = json.load(open('tests/data/builds/docker_only.json'))\n"
        "data = base64.b64encode(json.dumps(build).encode()).decode()\n"
        "main.on_build(CloudEvent({'type': 't', 'source': 's', 'id': '1'}, {'message': {'data': data, 'messageId': '1'}}))\n"
        "queued = dict(json.load(open('tests/data/builds/console_cd_trigger.json')), status='QUEUED')\n"
        "data = base64.b64encode(json.dumps(queued).encode()).decode()\n"
        "main.on_build(CloudEvent({'type': 't', 'source': 's', 'id': '2'}, {'message': {'data': data, 'messageId': '2'}}))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.run', 'google.cloud.storage', "
        "'google.cloud.logging', 'google.auth', 'google.api_core', 'pydantic', 'httpx'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_invalid_config_is_reported_not_skipped(tmp_path: Path, orders_build: dict[str, Any]) -> None:
    bad = tmp_path / "postdeploy.yaml"
    bad.write_text("version: 1\ndefaults: {checks: {helth: {}}}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "main.py", "replay", str(_push_file(tmp_path, orders_build)), "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "POSTDEPLOY_CONFIG": str(bad)})
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads((tmp_path / "r" / "orders" / orders_build["id"] / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "INCONCLUSIVE"
    assert report["summary"].startswith(f"postdeploy config {bad} is invalid, nothing was checked: defaults.checks.helth: unknown key")


URL = "http://127.0.0.1:9/"  # never reached: every case below stops before anything runs
LOG_FILE = "--log-file: expected a readable JSON-lines or text log file, found "
PYTHON = "--python: expected an executable Python interpreter (a path, or a name on PATH), found "
CONFIG = "--config: expected a readable YAML config file, found "
PATTERN = "checks.tests.patterns[{i}]: expected a glob matching at least one readable file, found "
SLACK = ("--slack: expected a webhook URL in POSTDEPLOY_SLACK_WEBHOOK, a Secret Manager version in "
         "POSTDEPLOY_SLACK_WEBHOOK_SECRET or notify routes in the config, found none of them")
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")


def _tests_config(tmp: Path, patterns: list[str], service: str | None = None) -> str:
    section = {"checks": {"tests": {"patterns": patterns}}}
    body = {"version": 1, "services": {service: section}} if service else {"version": 1, "defaults": section}
    path = tmp / "patterns.yaml"
    path.write_text(json.dumps(body), encoding="utf-8")  # JSON is YAML
    return str(path)


def _fill(text: str, tmp: Path) -> str:
    return text.format(tmp=tmp, root=ROOT)


@pytest.mark.parametrize(
    ("args", "message", "env"),
    [
        (["--log-file", "{tmp}/gone/app.log"], LOG_FILE + "nothing at {tmp}/gone/app.log", {}),
        (["--log-file", "{tmp}/file.txt/app.log"], LOG_FILE + "nothing at {tmp}/file.txt/app.log", {}),
        (["--log-file", "{tmp}"], LOG_FILE + "a directory at {tmp}", {}),
        (["--log-file", "{tmp}/pipe"], LOG_FILE + "a named pipe at {tmp}/pipe", {}),
        (["--log-file", "/dev/null"], LOG_FILE + "a character device at /dev/null", {}),
        pytest.param(["--log-file", "{tmp}/secret.log"], LOG_FILE + "an unreadable file at {tmp}/secret.log (Permission denied)",
                     {}, marks=AS_ROOT, id="log-file-unreadable"),
        (["--python", "{tmp}/venv/bin/python"], PYTHON + "nothing at {tmp}/venv/bin/python", {}),
        (["--python", "postdeploy-no-such-python"], PYTHON + "no postdeploy-no-such-python on PATH", {}),
        (["--python", "{tmp}/file.txt"], PYTHON + "a file without execute permission at {tmp}/file.txt", {}),
        (["--python", "{tmp}"], PYTHON + "a directory at {tmp}", {}),
        (["--config", "{tmp}/postdeploy.yaml"], CONFIG + "nothing at {tmp}/postdeploy.yaml", {}),
        (["--config", "{tmp}"], CONFIG + "a directory at {tmp}", {}),
        pytest.param(["--config", "{tmp}/secret.log"], CONFIG + "an unreadable file at {tmp}/secret.log (Permission denied)",
                     {}, marks=AS_ROOT, id="config-unreadable"),
        (["--slack"], SLACK, {}),
        (["--slack"], SLACK, {"POSTDEPLOY_SLACK_WEBHOOK": "", "POSTDEPLOY_SLACK_WEBHOOK_SECRET": " "}),
    ],
    ids=["log-file-missing", "log-file-under-a-file", "log-file-directory", "log-file-pipe", "log-file-device",
         "log-file-unreadable", "python-missing", "python-not-on-path", "python-not-executable", "python-directory",
         "config-missing", "config-directory", "config-unreadable", "slack-unset", "slack-empty"],
)
def test_a_flag_that_cannot_work_is_a_usage_error_before_anything_runs(tmp_path: Path, args: list[str], message: str,
                                                                       env: dict[str, str]) -> None:
    (tmp_path / "file.txt").write_text("not a program\n", encoding="utf-8")
    os.mkfifo(tmp_path / "pipe")  # opening it for reading would block: only its type may be looked at
    secret = tmp_path / "secret.log"
    secret.write_text("{}\n", encoding="utf-8")
    secret.chmod(0)
    out = tmp_path / "reports"
    done = cli("validate", "--url", URL, "--out", str(out), *(_fill(a, tmp_path) for a in args), env=env, timeout=30)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (4, [_fill(message, tmp_path)], "")
    assert not out.exists()


@pytest.mark.parametrize(
    ("patterns", "service", "message"),
    [
        (["no-such-results/*.xml"], None,
         PATTERN.format(i=0) + "no match for no-such-results/*.xml from {root} (service sample, config {tmp}/patterns.yaml)"),
        (["gs://results-bucket/*.xml", "${{BUILD_ID}}/junit.xml", "$SHORT_SHA/*.xml", "tests/data/junit/none-*.xml"], None,
         PATTERN.format(i=3) + "no match for tests/data/junit/none-*.xml from {root} (service sample, config {tmp}/patterns.yaml)"),
        (["tests/data/junit/*.xml", "tests/data/junit"], "sample",
         PATTERN.format(i=1) + "no match for tests/data/junit from {root} (service sample, config {tmp}/patterns.yaml)"),
        (["{tmp}/*.xml"], "sam*",
         "checks.tests.patterns[0]: expected a glob matching at least one readable file inside {root} (where validate reads "
         "local results), found {tmp}/*.xml (service sample, config {tmp}/patterns.yaml)"),
    ],
    ids=["relative-no-match", "cloud-and-variable-patterns-are-left-to-the-run", "a-folder-is-not-a-file", "outside-the-folder"],
)
def test_a_tests_pattern_that_finds_nothing_is_a_usage_error(tmp_path: Path, patterns: list[str], service: str | None,
                                                             message: str) -> None:
    (tmp_path / "junit.xml").write_text("<testsuite tests='0'/>\n", encoding="utf-8")
    config = _tests_config(tmp_path, [_fill(p, tmp_path) for p in patterns], service)
    out = tmp_path / "reports"
    done = cli("validate", "--url", URL, "--service", "sample", "--config", config, "--out", str(out), timeout=30)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (4, [_fill(message, tmp_path)], "")
    assert not out.exists()


def test_a_pattern_that_finds_results_runs_the_validation(tmp_path: Path) -> None:
    """Only the validated service's effective settings count: the orders section's pattern is not this run's."""
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH + "    tests: {patterns: [tests/data/junit/all_passed.xml]}\n"
                      "services:\n  orders:\n    checks:\n      tests: {patterns: [no-such-results/*.xml]}\n", encoding="utf-8")
    with SampleService() as service:
        done = cli("validate", "--url", service.url, "--service", "sample", "--config", str(config), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert check_of(report_of(done, tmp_path / "r"), "tests")["summary"].startswith("3/3 tests passed")


def test_replay_with_a_missing_config_is_a_usage_error(tmp_path: Path, orders_build: dict[str, Any]) -> None:
    out = tmp_path / "reports"
    done = cli("replay", str(_push_file(tmp_path, orders_build)), "--config", str(tmp_path / "gone.yaml"), "--out", str(out),
               timeout=30)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (4, [f"{CONFIG}nothing at {tmp_path}/gone.yaml"], "")
    assert not out.exists()


def test_an_invalid_config_lists_its_problems_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "postdeploy.yaml"
    config.write_text("version: 1\ndefaults: {checks: {helth: {}}}\n", encoding="utf-8")
    out = tmp_path / "reports"
    done = cli("validate", "--url", URL, "--config", str(config), "--out", str(out), timeout=30)
    first, second, *_ = done.stderr.splitlines()
    assert (done.returncode, first) == (4, f"{config}: invalid config")
    assert second.startswith("  defaults.checks.helth: unknown key; valid keys: ")
    assert not out.exists()
