"""Both probe runners: local (process group, budget, interpreter) and Cloud Run jobs through the official clients."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import AccessDenied, NoCredentials, PostdeployError, RunApiUnavailable
from core.model import Build, ProbeRun, Target
from probe import runners
from probe.runners import CloudRunJobRunner, LocalRunner, job_id_for, pinned_image
from probe.script import BUDGET_ENV, RESULT_MARKER, parse_result
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_run import FakeCloudRun

P, R, S, REV = "acme-prod", "us-central1", "orders", "orders-00042-new"
IMAGE = "us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f"
TARGET = Target(service=S, project=P, region=R, revision=REV, image=IMAGE)
JOB = f"projects/{P}/locations/{R}/jobs/postdeploy-probe-orders"


def local(python: str, script: str, timeout_s: float = 30.0) -> ProbeRun:
    return asyncio.run(LocalRunner(python).run(Target(service="sample"), "python", script, timeout_s))


def test_local_runner_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(PostdeployError) as caught:
        local(sys.executable, script, timeout_s=1.5)
    assert str(caught.value) == f"the probe in local {sys.executable} did not report within 1.5 s"
    assert caught.value.fix == runners.FIX_TIMEOUT
    assert time.monotonic() - started < 5
    child = int(pid_file.read_text())
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {child} survived the timeout")


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.parametrize(
    ("runner", "fix"),
    [
        (LocalRunner(python="/nonexistent/bin/python3"), "pass --python an interpreter that exists on this machine"),
        (LocalRunner(), "set checks.imports.python to an interpreter that exists on this machine, or pass --python"),
    ],
    ids=["from-python-flag", "from-config"],
)
def test_local_runner_without_the_interpreter_cannot_measure(runner: LocalRunner, fix: str) -> None:
    with pytest.raises(PostdeployError) as caught:
        asyncio.run(runner.run(Target(service="sample"), "/nonexistent/bin/python3", "print(1)", 30))
    assert str(caught.value).startswith("could not start /nonexistent/bin/python3: [Errno 2] No such file or directory")
    assert caught.value.fix.startswith(fix)


def test_local_runner_passes_the_budget_and_uses_the_config_interpreter_by_default() -> None:
    run = asyncio.run(LocalRunner().run(Target("x"), sys.executable, f"import os; print(os.environ[{BUDGET_ENV!r}])", 12))
    assert (run.exit_code, run.stdout.strip()) == (0, "10")


@pytest.mark.parametrize(
    ("service", "job_id"),
    [
        ("orders", "postdeploy-probe-orders"),
        ("Orders_API.v2", "postdeploy-probe-orders-api-v2"),
        ("a" * 49, "postdeploy-probe-" + "a" * 39 + "-" + __import__("hashlib").sha256(b"a" * 49).hexdigest()[:6]),
    ],
    ids=["plain", "sanitized", "too-long"],
)
def test_job_id(service: str, job_id: str) -> None:
    assert job_id_for(service) == job_id
    assert len(job_id) <= 63


@pytest.mark.parametrize(
    ("image", "digests", "expected"),
    [
        (IMAGE, {IMAGE: "sha256:abc"}, IMAGE.rsplit(":", 1)[0] + "@sha256:abc"),
        (IMAGE, {IMAGE.rsplit(":", 1)[0]: "sha256:abc"}, IMAGE.rsplit(":", 1)[0] + "@sha256:abc"),
        (IMAGE, {"gcr.io/other/image:1": "sha256:abc"}, IMAGE),
        ("gcr.io/acme/orders@sha256:def", {"gcr.io/acme/orders": "sha256:abc"}, "gcr.io/acme/orders@sha256:def"),
        ("localhost:5000/orders", {"localhost:5000/orders:latest": "sha256:abc"}, "localhost:5000/orders@sha256:abc"),
    ],
    ids=["tagged-key", "untagged-key", "other-image", "already-pinned", "registry-port"],
)
def test_pinned_image(image: str, digests: dict[str, str], expected: str) -> None:
    assert pinned_image(image, Build(id="b", status="SUCCESS", image_digests=digests)) == expected
    assert pinned_image(image, None) == image


# --- Cloud Run job runner against the fake Admin API and the fake Logging API -----------------------------


def result_line(**extra: Any) -> str:
    return f"{RESULT_MARKER} " + json.dumps({"schema": "postdeploy.probe/v1", "modules": [], "commands": [], **extra})


def job_run(script: str = "print('probe')", timeout_s: float = 30.0, target: Target = TARGET, **settings: Any) -> ProbeRun:
    runner = CloudRunJobRunner(**{"poll_s": 0.01, "log_attempts": 3, "log_wait_s": 0.01, **settings})
    return asyncio.run(runner.run(target, "/usr/local/bin/python3", script, timeout_s))


def writes(fake: FakeCloudRun, method: str, suffix: str = "") -> list[dict[str, Any]]:
    return [body for m, path, body in fake.bodies if m == method and path.endswith(suffix)]


def test_creates_the_job_from_the_revision_and_runs_the_script(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line(passed=0)}
    pinned = IMAGE.rsplit(":", 1)[0] + "@sha256:5f3e"
    run = job_run("import sys; print(sys.version)", target=Target(service=S, project=P, region=R, revision=REV, image=pinned))
    assert not run.error, run.error
    assert run.exit_code == 0 and run.stdout == result_line(passed=0)
    execution = next(iter(cloud.executions))
    short = execution.rsplit("/", 1)[1]
    assert run.where == f"Cloud Run job postdeploy-probe-orders in {R}, execution {short}"

    methods = [(m, p.split("?")[0]) for m, p in cloud.requests]
    assert ("POST", f"/v2/projects/{P}/locations/{R}/jobs") in methods and not any(m == "PATCH" for m, _ in methods)
    assert any("jobId=postdeploy-probe-orders" in p for m, p in cloud.requests if m == "POST")
    (created,) = writes(cloud, "POST", "/jobs")
    task = created["template"]["template"]
    (container,) = task["containers"]
    assert container["image"] == pinned
    assert container["command"] == ["/usr/local/bin/python3"]
    assert container["name"] == "probe"
    assert container["env"] == [
        {"name": "APP_ENV", "value": "production"},
        {"name": "DATABASE_URL",
         "valueSource": {"secretKeyRef": {"secret": "projects/123456789/secrets/orders-db-url", "version": "latest"}}},
        {"name": "STRIPE_KEY", "valueSource": {"secretKeyRef": {"secret": "stripe-key", "version": "7"}}},
    ]
    assert container["volumeMounts"] == [{"name": "app-config", "mountPath": "/etc/orders"}]
    assert container["resources"] == {"limits": {"cpu": "1000m", "memory": "1Gi"}}
    assert container["workingDir"] == "/srv/orders"
    assert "ports" not in container and "startupProbe" not in container
    assert task["volumes"] == [
        {"name": "app-config", "secret": {"secret": "orders-config", "items": [{"path": "config.json", "version": "3"}]}},
    ]
    assert task["serviceAccount"] == "orders-runtime@acme-prod.iam.gserviceaccount.com"
    assert task["vpcAccess"] == {"connector": "projects/acme-prod/locations/us-central1/connectors/orders-vpc", "egress": 2}
    assert task["maxRetries"] == 0
    assert int(task["timeout"].rstrip("s")) <= 30
    assert created["template"]["taskCount"] == 1 and created["labels"] == {"managed-by": "postdeploy"}

    (ran,) = writes(cloud, "POST", ":run")
    (override,) = ran["overrides"]["containerOverrides"]
    assert override["name"] == "probe"
    assert override["args"] == ["-c", "import sys; print(sys.version)"]
    assert override["env"][0]["name"] == BUDGET_ENV
    assert ran["overrides"]["timeout"] == task["timeout"] and ran["overrides"]["taskCount"] == 1
    assert cloud.executions[execution]["template"]["containers"][0]["args"] == ["-c", "import sys; print(sys.version)"]

    (listed,) = fake_logging.requests
    assert listed["resourceNames"] == [f"projects/{P}"]
    clauses = listed["filter"].split(" AND ")
    assert clauses[:4] == ['resource.type="cloud_run_job"', 'resource.labels.job_name="postdeploy-probe-orders"',
                           f'resource.labels.location="{R}"', f'labels."run.googleapis.com/execution_name"="{short}"']
    assert clauses[4].startswith('timestamp>="') and clauses[5] == f'textPayload:"{RESULT_MARKER}"'
    assert listed["orderBy"] == "timestamp desc" and listed["pageSize"] == 20


def test_updates_an_existing_job(cloud: FakeCloudRun) -> None:
    cloud.add_job(P, R, "postdeploy-probe-orders", {"template": {"containers": [{"name": "probe", "image": "gcr.io/old/image:1"}]}})
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    run = job_run()
    assert not run.error and run.exit_code == 0
    assert writes(cloud, "POST", "/jobs") == []
    # The client moves job.name into the URL (PATCH /v2/{job.name=projects/*/locations/*/jobs/*}).
    assert [path for m, path, _ in cloud.bodies if m == "PATCH"] == [f"/v2/{JOB}"]
    (updated,) = writes(cloud, "PATCH")
    assert updated["template"]["template"]["containers"][0]["image"] == IMAGE
    assert cloud.jobs[JOB]["generation"] == "2"


def test_copy_env_off_keeps_only_image_and_resources(cloud: FakeCloudRun) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    assert not job_run(copy_env=False).error
    (created,) = writes(cloud, "POST", "/jobs")
    task = created["template"]["template"]
    assert set(task) == {"containers", "maxRetries", "timeout"}
    assert set(task["containers"][0]) == {"name", "image", "command", "args", "resources", "workingDir"}


def not_measured() -> tuple[str, str]:
    """What a job run with the scripted outcome raised: its message and its fix."""
    with pytest.raises(PostdeployError) as caught:
        job_run()
    return str(caught.value), caught.value.fix


def test_an_execution_that_failed_with_a_result_is_judged_by_the_check(cloud: FakeCloudRun) -> None:
    cloud.next_execution = {"outcome": "failed", "stdout": result_line(passed=0, total=1)}
    run = job_run()
    assert (run.exit_code, run.error) == (1, "")
    assert parse_result(run.stdout)["total"] == 1


@pytest.mark.parametrize(
    ("plan", "error", "fix"),
    [
        ({"outcome": "failed", "message": "Memory limit of 1024 MiB exceeded with 1089 MiB used."},
         "failed before the probe reported: Task {execution}-task0 failed with message: Memory limit of 1024 MiB exceeded with "
         "1089 MiB used. (out of memory: the job runs with the revision's memory limit)",
         "find the import that needs more memory than the revision's limit: docker run --rm --memory=LIMIT "
         f"--entrypoint /usr/local/bin/python3 {IMAGE} -c 'import MODULE'"),
        ({"outcome": "failed", "message": f"Image '{IMAGE}' not found."},
         f"failed with message: Image '{IMAGE}' not found. (the image could not be pulled)", runners.FIX_IMAGE),
        ({"outcome": "failed", "message": "Application failed to start: failed to load /usr/local/bin/python3: no such file or directory"},
         "failed to load /usr/local/bin/python3: no such file or directory (no /usr/local/bin/python3 in the image)",
         f"set checks.imports.python to the interpreter's path inside the image (docker run --rm --entrypoint sh {IMAGE} "
         "-c 'command -v python3')"),
        ({"outcome": "failed", "message": "The container exited with an error.", "stdout": "Traceback (most recent call last):"},
         "failed before the probe reported: Task {execution}-task0 failed with message: The container exited with an error.",
         "read the execution's logs in the Cloud Console (Cloud Run, Jobs), or run the probe by hand: docker run --rm "
         f"--entrypoint /usr/local/bin/python3 {IMAGE} -c 'import sys; print(sys.version)'"),
        ({"outcome": "cancelled"}, "execution {execution} was cancelled: The execution was cancelled.", runners.FIX_CANCELLED),
        ({"outcome": "timed_out"}, "execution {execution} timed out after", runners.FIX_TIMEOUT),
        ({"outcome": "succeeded", "stdout": "hello"}, "execution {execution} succeeded but no POSTDEPLOY_PROBE_RESULT line",
         runners.FIX_NO_LINE),
    ],
    ids=["oom", "image-pull", "no-interpreter-in-the-image", "crashed", "cancelled", "timed-out", "succeeded-without-result"],
)
def test_an_execution_that_did_not_report_cannot_measure(cloud: FakeCloudRun, plan: dict[str, Any], error: str, fix: str) -> None:
    cloud.next_execution = plan
    message, raised_fix = not_measured()
    execution = next(iter(cloud.executions)).rsplit("/", 1)[1]
    assert message.startswith(f"Cloud Run job postdeploy-probe-orders in {R}: execution {execution} ")
    assert error.format(execution=execution) in message, message
    assert raised_fix == fix


def test_a_hung_execution_is_cancelled_at_the_deadline(cloud: FakeCloudRun) -> None:
    cloud.next_execution = {"outcome": "running"}
    started = time.monotonic()
    with pytest.raises(PostdeployError) as caught:
        job_run(timeout_s=1.0)
    assert time.monotonic() - started < 3
    execution = next(iter(cloud.executions))
    assert str(caught.value).endswith(f"execution {execution.rsplit('/', 1)[1]} did not finish within the check's budget; "
                                      "cancelled it")
    assert caught.value.fix == runners.FIX_TIMEOUT
    assert ("POST", f"/v2/{execution}:cancel") in [(m, p) for m, p, _ in cloud.bodies]
    assert cloud.executions[execution]["cancelledCount"] == 1


def test_job_creation_failure_cannot_measure(cloud: FakeCloudRun) -> None:
    cloud.fail_next_job_operation(5, f"Image '{IMAGE}' not found.")
    with pytest.raises(PostdeployError) as caught:
        job_run()
    assert str(caught.value) == f"Cloud Run job postdeploy-probe-orders in {R}: create job {JOB} failed: Image '{IMAGE}' not found."
    assert caught.value.fix == runners.FIX_JOB_SETUP
    assert writes(cloud, "POST", ":run") == []


def test_logs_are_retried_while_not_ingested(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.lag(2)
    run = job_run()
    assert not run.error and len(fake_logging.requests) == 3


def test_logs_that_never_arrive_cannot_measure(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.lag(10)
    with pytest.raises(PostdeployError) as caught:
        job_run()
    assert "no POSTDEPLOY_PROBE_RESULT line reached Cloud Logging after 3 tries" in str(caught.value)
    assert caught.value.fix == runners.FIX_NO_LINE
    assert len(fake_logging.requests) == 3


def test_a_logging_outage_cannot_measure_and_is_never_a_pass(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.fail_next(3, 503)
    with pytest.raises(PostdeployError) as caught:
        job_run()
    assert f"in {R}: could not read the logs of execution " in str(caught.value) and "503" in str(caught.value)
    assert caught.value.fix == runners.FIX_LOGS_API


def test_logging_permission_denied_names_the_role(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.fail_next(1, 403)
    with pytest.raises(AccessDenied, match=r"roles/logging\.viewer") as caught:
        job_run()
    assert caught.value.fix == "grant the function's service account roles/logging.viewer"


@pytest.mark.parametrize(("status", "error", "match", "fix"), [
    (403, AccessDenied, "the function's service account needs a role on the job postdeploy-probe-SERVICE and actAs",
     runners.FIX_RUN_ROLES),
    (500, RunApiUnavailable, "Cloud Run Admin API failed on get revision", runners.FIX_RUN_API),
], ids=["forbidden", "server-error"])
def test_admin_api_errors_are_wrapped_with_the_fix(cloud: FakeCloudRun, status: int, error: type[PostdeployError], match: str,
                                                   fix: str) -> None:
    cloud.fail_next(1, status)
    with pytest.raises(error, match=match) as caught:
        job_run()
    assert caught.value.fix == fix


def test_without_credentials_the_job_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default credentials either
    with pytest.raises(NoCredentials) as caught:
        job_run()
    assert str(caught.value).startswith("no Google credentials to read the Cloud Run Admin API")
    assert caught.value.fix == NoCredentials.fix


@pytest.mark.parametrize(
    ("target", "script", "error", "fix"),
    [
        (Target(service="web", url="https://web.example"), "print(1)", "no Cloud Run revision to take the image from (URL-only target)",
         runners.FIX_NO_REVISION),
        (TARGET, "#" * 100_001, "the probe script is 100001 bytes, more than the 100000 bytes an args override can carry",
         runners.FIX_TOO_BIG),
    ],
    ids=["url-only-target", "oversized-script"],
)
def test_what_cannot_be_run_as_a_job_makes_no_call(cloud: FakeCloudRun, target: Target, script: str, error: str, fix: str) -> None:
    with pytest.raises(PostdeployError) as caught:
        job_run(script, target=target)
    assert str(caught.value).endswith(error) and caught.value.fix == fix
    assert cloud.requests == []


def test_only_this_executions_result_line_is_read(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    for execution, stamp in (("postdeploy-probe-orders-old01", None), ("postdeploy-probe-orders-old02", "2020-01-01T00:00:00Z")):
        fake_logging.add_entry(project=P, text=result_line(stale=True), resource_type="cloud_run_job", timestamp=stamp,
                               resource_labels={"project_id": P, "job_name": "postdeploy-probe-orders", "location": R},
                               labels={"run.googleapis.com/execution_name": execution})
    cloud.next_execution = {"outcome": "succeeded", "stdout": "starting\n" + result_line(fresh=True)}
    run = job_run()
    assert not run.error and parse_result(run.stdout).get("fresh") is True
    assert "stale" not in run.stdout
