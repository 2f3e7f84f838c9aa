"""The probe script in a real virtualenv, and both runners: local, and Cloud Run jobs through the official clients."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core import probes
from core.errors import AccessDenied, NoCredentials, PostdeployError, RunApiUnavailable
from core.model import Build, ProbeRun, Target
from core.probes import (
    BUDGET_ENV,
    RESULT_MARKER,
    CloudRunJobRunner,
    CommandProbe,
    ImportProbe,
    LocalRunner,
    job_id_for,
    parse_result,
    pinned_image,
    probe_script,
)
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_run import FakeCloudRun

DATA = Path(__file__).parent.parent / "data" / "probe"
P, R, S, REV = "acme-prod", "us-central1", "orders", "orders-00042-new"
IMAGE = "us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f"
TARGET = Target(service=S, project=P, region=R, revision=REV, image=IMAGE)
JOB = f"projects/{P}/locations/{R}/jobs/postdeploy-probe-orders"


def local(python: str, script: str, timeout_s: float = 30.0) -> ProbeRun:
    return asyncio.run(LocalRunner(python).run(Target(service="sample"), "python", script, timeout_s))


MODULES = [
    ImportProbe("probe_sample.good"),
    ImportProbe("probe_sample.good:Settings.DEFAULT"),
    ImportProbe("probe_sample.broken_dep"),
    ImportProbe("probe_sample.raises"),
    ImportProbe("probe_sample.good:NoSuchThing"),
    ImportProbe("probe_sample.old_api", expect_deprecation=True),
    ImportProbe("probe_sample.compat:OldSettings", expect_deprecation=True),
    ImportProbe("probe_sample.good", expect_deprecation=True),
    ImportProbe("probe_sample.old_api"),
    ImportProbe("probe_sample.noisy"),
    ImportProbe("probe_sample.exits"),
    ImportProbe("probe_sample.hang"),
    ImportProbe("probe_sample_not_installed"),
    ImportProbe("probe_sample.uses_vendored", expect_deprecation=True),
    ImportProbe("probe_sample.vendored", expect_deprecation=True),
    ImportProbe("probe_sample.eager.legacy", expect_deprecation=True),
    ImportProbe("probe_sample.pending_api", expect_deprecation=True),
    ImportProbe("probe_sample.future_api", expect_deprecation=True),
    ImportProbe("probe_sample.custom_api", expect_deprecation=True),
    ImportProbe("probe_sample.user_warned", expect_deprecation=True),
]
CLI = ("python", "-m", "probe_sample.cli")
COMMANDS = [
    CommandProbe("ready", (*CLI, "ready"), expect_stdout=("^status: ready$",), forbid_output=("WARNING", "Traceback")),
    CommandProbe("warns", (*CLI, "warn"), expect_stdout=("ready",), forbid_output=("WARNING",)),
    CommandProbe("crash", (*CLI, "crash"), expect_stderr=("migrations are not applied",)),
    CommandProbe("crash-expected", (*CLI, "crash"), expect_exit=1, expect_stderr=("RuntimeError: migrations",)),
    CommandProbe("stdout-mismatch", (*CLI, "ready"), expect_stdout=("status: degraded",)),
    CommandProbe("stderr-mismatch", (*CLI, "warn"), expect_stderr=("^ERROR",)),
    CommandProbe("unknown-mode", (*CLI, "bogus"), expect_exit=2, expect_stderr=("unknown mode bogus",)),
    CommandProbe("not-installed", ("no-such-tool-xyz", "--version")),
    CommandProbe("slow", ("python", "-c", "import time; time.sleep(30)"), timeout_s=1),
]


@pytest.fixture(scope="module")
def probed(venv_python: str) -> tuple[ProbeRun, dict[str, Any]]:
    """One probe of every sample entry (the hanging import and the slow command cost 1 s each)."""
    run = local(venv_python, probe_script(MODULES, COMMANDS, import_timeout_s=1.0))
    return run, parse_result(run.stdout)


def _imports(tree: ast.AST) -> set[str]:
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return {name.split(".")[0] for name in names}


def test_script_is_python_38_and_stdlib_only() -> None:
    script = probe_script(MODULES, COMMANDS)
    tree = ast.parse(script, feature_version=(3, 8))
    child = next(node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CHILD"
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
    child_tree = ast.parse(child, feature_version=(3, 8))
    imported = _imports(tree) | _imports(child_tree)
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert "importlib" in imported and "warnings" in imported
    assert f"MARKER = {RESULT_MARKER!r}" in script


@pytest.mark.parametrize(
    ("index", "passed", "reason", "deprecation"),
    [
        (0, True, "", False),
        (1, True, "", False),
        (2, False, "ModuleNotFoundError: No module named 'probe_missing_dependency'", False),
        (3, False, "RuntimeError: PROBE_SAMPLE_DATABASE_URL is not set", False),
        (4, False, "AttributeError: module 'probe_sample.good' has no attribute 'NoSuchThing'", False),
        (5, True, "", True),
        (6, True, "", True),
        (7, False, "imported, but no deprecation warning was raised", False),
        (8, True, "", True),
        (9, True, "", False),
        (10, False, "the interpreter exited with code 7 before reporting", False),
        (11, False, "import did not finish within 1 s", False),
        (12, False, "ModuleNotFoundError: No module named 'probe_sample_not_installed'", False),
        (13, False, "imported, but no deprecation warning was raised by the module itself (only by ", False),
        (14, True, "", True),
        (15, True, "", True),
        (16, True, "", True),
        (17, True, "", True),
        (18, True, "", True),
        (19, False, "imported, but no deprecation warning was raised", False),
    ],
    ids=["module", "nested-symbol", "missing-dependency", "raises-at-import", "missing-symbol", "deprecated-path",
         "deprecated-symbol-getattr", "expected-deprecation-missing", "deprecation-without-expectation",
         "noisy-stdout-and-threads", "os-exit", "hanging-import", "not-installed", "dependency-deprecation-is-not-own",
         "own-file-deprecation", "imported-eagerly-by-its-package", "pending-deprecation", "future-warning",
         "own-deprecation-subclass", "user-warning-saying-deprecated"],
)
def test_each_import_runs_in_a_fresh_interpreter(probed: tuple[ProbeRun, dict[str, Any]], index: int, passed: bool,
                                                  reason: str, deprecation: bool) -> None:
    item = probed[1]["modules"][index]
    assert item["name"] == MODULES[index].name
    assert (item["passed"], item["reason"][:len(reason) if reason else None], item["deprecation"]) == \
        (passed, reason or item["reason"], deprecation), item
    assert bool(reason) == bool(item["reason"])
    assert isinstance(item["import_ms"], float)


@pytest.mark.parametrize(
    ("index", "category", "deprecation", "own"),
    [
        (5, "DeprecationWarning", True, True),
        (16, "PendingDeprecationWarning", True, True),
        (17, "FutureWarning", True, True),
        (18, "OldApiWarning", True, True),
        (19, "UserWarning", False, True),
        (13, "DeprecationWarning", True, False),
    ],
    ids=["deprecation-warning", "pending-deprecation-warning", "future-warning", "package-own-subclass",
         "user-warning-saying-deprecated-does-not-count", "a-dependency-s-own-file-does-not-count"],
)
def test_what_counts_as_a_deprecation(probed: tuple[ProbeRun, dict[str, Any]], index: int, category: str, deprecation: bool,
                                      own: bool) -> None:
    """A deprecation class or a subclass of one, raised from the module's own file: both, or it does not count."""
    item = probed[1]["modules"][index]
    (warning,) = item["warnings"]
    assert (warning["category"], warning["deprecation"], warning["own"]) == (category, deprecation, own), warning
    assert item["deprecation"] is (deprecation and own)


def test_failures_carry_the_traceback_and_warnings_their_message(probed: tuple[ProbeRun, dict[str, Any]]) -> None:
    modules = probed[1]["modules"]
    broken = modules[2]
    assert broken["traceback"][0].startswith('File "') and broken["traceback"][0].endswith("broken_dep.py\", line 3, in <module>")
    assert broken["traceback"][1] == "  import probe_missing_dependency  # noqa: F401"
    assert not any("importlib" in line for line in broken["traceback"])
    assert modules[10]["traceback"] == ["fatal: cannot continue"]
    (warning,) = modules[5]["warnings"]
    assert warning["category"] == "DeprecationWarning"
    assert warning["message"] == "probe_sample.old_api is deprecated; import probe_sample.good instead"


def test_a_module_printing_a_forged_result_line_cannot_fool_the_probe(probed: tuple[ProbeRun, dict[str, Any]]) -> None:
    run, result = probed
    assert run.stdout.count(RESULT_MARKER) == 1
    assert "forged" not in result and result["total"] == len(MODULES) + len(COMMANDS)


@pytest.mark.parametrize(
    ("name", "exit_code", "failures"),
    [
        ("ready", 0, []),
        ("warns", 0, ["expected no output matching /WARNING/, found a match (text not shown)"]),
        ("crash", 1, ["expected exit code 0, got 1"]),
        ("crash-expected", 1, []),
        ("stdout-mismatch", 0, ["expected stdout to match /status: degraded/"]),
        ("stderr-mismatch", 0, ["expected stderr to match /^ERROR/"]),
        ("unknown-mode", 2, []),
        ("not-installed", None, ["could not start no-such-tool-xyz: [Errno 2] No such file or directory: 'no-such-tool-xyz'"]),
        ("slow", None, ["did not finish within 1 s"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_command_tests(probed: tuple[ProbeRun, dict[str, Any]], name: str, exit_code: int | None, failures: list[str]) -> None:
    item = next(c for c in probed[1]["commands"] if c["name"] == name)
    assert (item["exit_code"], item["failures"], item["passed"]) == (exit_code, failures, not failures), item


def test_result_header_and_exit_code(probed: tuple[ProbeRun, dict[str, Any]], venv_python: str) -> None:
    run, result = probed
    assert run.exit_code == 1 and not run.error
    assert run.where == f"local {venv_python}"
    assert (result["schema"], result["executable"], result["python"]) == ("postdeploy.probe/v1", venv_python, sys.version.split()[0])
    assert result["passed"] == 11 + 3 and result["total"] == 29
    good = local(venv_python, probe_script([ImportProbe("probe_sample.good")], [CommandProbe("ready", (*CLI, "ready"))]))
    assert good.exit_code == 0 and parse_result(good.stdout)["passed"] == 2


def test_the_probe_reports_within_its_budget(venv_python: str) -> None:
    script = probe_script([ImportProbe("probe_sample.hang"), ImportProbe("probe_sample.good")], [CommandProbe("ready", (*CLI, "ready"))],
                          import_timeout_s=60)
    started = time.monotonic()
    run = local(venv_python, script, timeout_s=4)  # the runner leaves the script 2 s
    assert time.monotonic() - started < 4 and not run.error
    result = parse_result(run.stdout)
    assert result["budget_s"] == 2
    hung, late = result["modules"]
    assert (hung["reason"], hung.get("not_run")) == ("import did not finish within 2 s", None)
    assert (late["reason"], late["not_run"]) == ("not run: the probe's time budget was used up", True)
    (command,) = result["commands"]
    assert (command["failures"], command["not_run"]) == (["not run: the probe's time budget was used up"], True)


def test_a_huge_result_is_shortened_but_stays_json(venv_python: str) -> None:
    loud = [CommandProbe(f"loud-{i}", ("python", "-c", "import sys; print('x' * 5000); print('y' * 5000, file=sys.stderr)"))
            for i in range(20)]
    run = local(venv_python, probe_script([ImportProbe("probe_sample.broken_dep")] * 30, loud))
    line = next(line for line in run.stdout.splitlines() if line.startswith(RESULT_MARKER))
    assert len(line) <= 60_000 + len(RESULT_MARKER) + 1
    result = parse_result(run.stdout)
    assert result["truncated"] is True and result["passed"] == 20 and result["total"] == 50
    assert result["modules"][0]["reason"] == "ModuleNotFoundError: No module named 'probe_missing_dependency'"


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
    assert caught.value.fix == probes.FIX_TIMEOUT
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
    ("stdout", "problem"),
    [
        ("", "found no output at all"),
        ("Traceback (most recent call last):\nSyntaxError: invalid syntax\n", "found none (last output: Traceback"),
        (f"{RESULT_MARKER} {{not json", "expected JSON after POSTDEPLOY_PROBE_RESULT, found '{not json'"),
        (f'{RESULT_MARKER} ["a"]', "expected a postdeploy.probe/v1 object"),
        (f'{RESULT_MARKER} {{"modules": []}}', "with 'modules' and 'commands'"),
    ],
    ids=["empty", "crash-output", "not-json", "not-an-object", "missing-keys"],
)
def test_parse_result_explains_what_it_found(stdout: str, problem: str) -> None:
    with pytest.raises(ValueError, match="expected") as caught:
        parse_result(stdout)
    assert problem in str(caught.value)


def test_parse_result_takes_the_last_marker_line() -> None:
    lines = [f'{RESULT_MARKER} {{"modules": [], "commands": [], "n": {n}}}' for n in (1, 2)]
    stdout = "noise\n" + "\n".join(lines) + "\n"
    assert parse_result(stdout)["n"] == 2


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
         f"failed with message: Image '{IMAGE}' not found. (the image could not be pulled)", probes.FIX_IMAGE),
        ({"outcome": "failed", "message": "Application failed to start: failed to load /usr/local/bin/python3: no such file or directory"},
         "failed to load /usr/local/bin/python3: no such file or directory (no /usr/local/bin/python3 in the image)",
         f"set checks.imports.python to the interpreter's path inside the image (docker run --rm --entrypoint sh {IMAGE} "
         "-c 'command -v python3')"),
        ({"outcome": "failed", "message": "The container exited with an error.", "stdout": "Traceback (most recent call last):"},
         "failed before the probe reported: Task {execution}-task0 failed with message: The container exited with an error.",
         "read the execution's logs in the Cloud Console (Cloud Run, Jobs), or run the probe by hand: docker run --rm "
         f"--entrypoint /usr/local/bin/python3 {IMAGE} -c 'import sys; print(sys.version)'"),
        ({"outcome": "cancelled"}, "execution {execution} was cancelled: The execution was cancelled.", probes.FIX_CANCELLED),
        ({"outcome": "timed_out"}, "execution {execution} timed out after", probes.FIX_TIMEOUT),
        ({"outcome": "succeeded", "stdout": "hello"}, "execution {execution} succeeded but no POSTDEPLOY_PROBE_RESULT line",
         probes.FIX_NO_LINE),
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
    assert caught.value.fix == probes.FIX_TIMEOUT
    assert ("POST", f"/v2/{execution}:cancel") in [(m, p) for m, p, _ in cloud.bodies]
    assert cloud.executions[execution]["cancelledCount"] == 1


def test_job_creation_failure_cannot_measure(cloud: FakeCloudRun) -> None:
    cloud.fail_next_job_operation(5, f"Image '{IMAGE}' not found.")
    with pytest.raises(PostdeployError) as caught:
        job_run()
    assert str(caught.value) == f"Cloud Run job postdeploy-probe-orders in {R}: create job {JOB} failed: Image '{IMAGE}' not found."
    assert caught.value.fix == probes.FIX_JOB_SETUP
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
    assert caught.value.fix == probes.FIX_NO_LINE
    assert len(fake_logging.requests) == 3


def test_a_logging_outage_cannot_measure_and_is_never_a_pass(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.fail_next(3, 503)
    with pytest.raises(PostdeployError) as caught:
        job_run()
    assert f"in {R}: could not read the logs of execution " in str(caught.value) and "503" in str(caught.value)
    assert caught.value.fix == probes.FIX_LOGS_API


def test_logging_permission_denied_names_the_role(cloud: FakeCloudRun, fake_logging: FakeLogging) -> None:
    cloud.next_execution = {"outcome": "succeeded", "stdout": result_line()}
    fake_logging.fail_next(1, 403)
    with pytest.raises(AccessDenied, match=r"roles/logging\.viewer") as caught:
        job_run()
    assert caught.value.fix == "grant the function's service account roles/logging.viewer"


@pytest.mark.parametrize(("status", "error", "match", "fix"), [
    (403, AccessDenied, "grant the function's service account roles/run.developer and roles/iam.serviceAccountUser",
     probes.FIX_RUN_ROLES),
    (500, RunApiUnavailable, "Cloud Run Admin API failed on get revision", probes.FIX_RUN_API),
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
         probes.FIX_NO_REVISION),
        (TARGET, "#" * 100_001, "the probe script is 100001 bytes, more than the 100000 bytes an args override can carry",
         probes.FIX_TOO_BIG),
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


def test_environment_values_never_reach_the_result(venv_python: str) -> None:
    """The job runs with the revision's secrets in its env: an error quoting one must not carry it out."""
    script = probe_script([ImportProbe("json:loads")], [CommandProbe("leak", ("python", "-c", "import os; print(os.environ['DB_URL'])"))])
    runner = LocalRunner(python=venv_python, env={"DB_URL": "postgres://app:hunter2-very-secret@db/orders"})
    run = asyncio.run(runner.run(Target(service="s"), "python", script, 30))
    assert "hunter2" not in run.stdout
    assert "<redacted>" in parse_result(run.stdout)["commands"][0]["stdout"]


def test_a_dependency_deprecation_is_recorded_but_not_the_module_s_own(probed: tuple[ProbeRun, dict[str, Any]]) -> None:
    item = probed[1]["modules"][13]
    (warning,) = item["warnings"]
    assert warning["deprecation"] is True and warning["own"] is False
    assert warning["where"].endswith("probe_sample/vendored.py:5")
    assert item["reason"].endswith("(only by " + warning["where"] + ")")
    assert probed[1]["modules"][5]["warnings"][0]["own"] is True  # stacklevel=2 names the importer: still its own
