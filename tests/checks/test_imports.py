"""imports: config, judging, and the probe end to end — a real virtualenv locally, the fake Cloud Run + Logging APIs remotely."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from checks import imports
from core.errors import AccessDenied
from core.model import Build, CheckContext, CheckResult, Evidence, ProbeRun, Status, Target
from core.probes import RESULT_MARKER, CloudRunJobRunner, LocalRunner, parse_result
from tests.checks.helpers import run_check
from tests.servers.data import IMAGE
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_run import FakeCloudRun

DATA = Path(__file__).parent.parent / "data" / "probe"
P, R, S, REV = "acme-prod", "us-central1", "orders", "orders-00042-new"
DIGEST = "sha256:7a1c5e0f3b9d2c4a6e8f0b1d3c5e7a9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c"
CLI = ["python", "-m", "probe_sample.cli"]


@dataclass
class ScriptedRunner:
    """A ProbeRunner that answers with a canned ProbeRun (or raises), recording what it was asked."""

    answer: ProbeRun | Exception
    calls: list[tuple[Target, str, str, float]] = field(default_factory=list)

    async def run(self, target: Target, interpreter: str, script: str, timeout_s: float) -> ProbeRun:
        self.calls.append((target, interpreter, script, timeout_s))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def check(settings: dict[str, Any], runner: Any, target: Target | None = None, **ctx: Any) -> CheckResult:
    config = imports.Config.model_validate(settings)
    return run_check(imports, target or Target(service=S, image=IMAGE), config, probe_runner=runner, **ctx)


def evidence(result: CheckResult, what: str) -> Evidence:
    return next(e for e in result.evidence if e.what == what)


# --- config -------------------------------------------------------------------------------------------


def test_config_accepts_strings_and_mappings() -> None:
    config = imports.Config.model_validate({
        "modules": ["pkg.mod", "pkg.mod:Symbol.attr", {"name": "pkg.old:Thing", "expect_deprecation": True, "critical": True}],
        "commands": [{"name": "migrations", "args": ["python", "manage.py", "check"], "expect_stdout": "no issues",
                      "forbid_output": ["Traceback", "ERROR"]}],
        "python": "/usr/local/bin/python3",
    })
    assert [(m.name, m.expect_deprecation, m.critical) for m in config.modules] == [
        ("pkg.mod", False, False), ("pkg.mod:Symbol.attr", False, False), ("pkg.old:Thing", True, True)]
    (command,) = config.commands
    assert (command.expect_exit, command.expect_stdout, command.forbid_output) == (0, ["no issues"], ["Traceback", "ERROR"])
    assert (config.timeout_s, config.copy_env, config.import_timeout_s) == (300.0, True, 60.0)
    assert config.critical is True  # a critical entry makes the check critical


def test_explicit_critical_wins_and_defaults_are_not_critical() -> None:
    assert imports.Config.model_validate({"critical": False, "modules": [{"name": "a", "critical": True}]}).critical is False
    assert imports.Config.model_validate({"modules": ["a"]}).critical is False


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"modules": ["pkg mod"]}, "expected 'package.module' or 'package.module:Symbol.attr', found 'pkg mod'"),
        ({"modules": ["pkg.mod:"]}, "found 'pkg.mod:'"),
        ({"modules": [":Symbol"]}, "found ':Symbol'"),
        ({"modules": ["pkg..mod"]}, "found 'pkg..mod'"),
        ({"modules": [{"name": "a", "expect_deprecations": True}]}, "Extra inputs are not permitted"),
        ({"commands": [{"name": "c", "args": []}]}, "at least 1 item"),
        ({"commands": [{"name": "c", "args": ["x"], "expect_stdout": ["(["]}]}, "expected a regular expression, found '(['"),
        ({"commands": [{"name": "c", "args": ["x"], "timeout_s": 400}]}, "found commands[0].timeout_s 400 s"),
        ({"import_timeout_s": 120, "timeout_s": 60}, "expected per-entry timeouts ≤ timeout_s (60 s), found import_timeout_s 120 s"),
        ({"timeout_s": 600}, "less than or equal to 540"),
        ({"python": "python -X dev"}, "without spaces"),
        ({"modules": ["a"] * 201}, "at most 200 items"),
    ],
    ids=["space", "empty-symbol", "no-module", "empty-segment", "unknown-key", "no-args", "bad-regex",
         "command-timeout", "import-timeout", "over-function-budget", "interpreter-with-args", "too-many"],
)
def test_config_errors_say_what_was_expected(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        imports.Config.model_validate(settings)
    assert problem in str(caught.value)


# --- skipping and errors (scripted runner) --------------------------------------------------------------


def test_nothing_configured_is_skipped() -> None:
    runner = ScriptedRunner(ProbeRun(0))
    result = check({}, runner)
    assert (result.status, result.summary, result.assessed) == (Status.SKIPPED, "nothing to import configured", False)
    assert runner.calls == []


def test_no_runner_is_skipped_with_the_way_out() -> None:
    result = check({"modules": ["a"]}, None)
    assert result.status is Status.SKIPPED and "--python" in result.summary
    assert result.assessed  # imports were asked for: their absence is missing data, not "not configured"


def ok_line(*names: str) -> str:
    return f"{RESULT_MARKER} " + json.dumps({"modules": [{"name": n, "ok": True, "passed": True, "import_ms": 3.0, "warnings": []}
                                                         for n in names], "commands": [], "python": "3.12.1",
                                             "executable": "/usr/local/bin/python3"})


@pytest.mark.parametrize(
    ("answer", "summary"),
    [
        (ProbeRun(None, error="timed out after 9 s", where="local python"),
         "import probe did not complete in local python: timed out after 9 s"),
        (ProbeRun(None, error="execution x-1 failed before the probe reported: Memory limit of 512 MiB exceeded", where="Cloud Run job j"),
         "did not complete in Cloud Run job j: execution x-1 failed before the probe reported: Memory limit of 512 MiB exceeded"),
        (ProbeRun(1, "Traceback (most recent call last):\n", "SyntaxError: bad", where="local python"),
         "exited with 1 without a usable result: expected a line starting with POSTDEPLOY_PROBE_RESULT"),
        (ProbeRun(0, f"{RESULT_MARKER} {{oops", where="local python"), "expected JSON after POSTDEPLOY_PROBE_RESULT"),
        (ProbeRun(2, f'{RESULT_MARKER} {{"modules": [], "commands": [], "error": "MemoryError: "}}', where="local python"),
         "the import probe itself failed in local python: MemoryError"),
        (ProbeRun(0, ok_line("other.module"), where="local python"),
         "expected the probe to report probe_sample.good, it reported other.module"),
        (AccessDenied("permission denied on run job; grant roles/run.developer"),
         "permission denied on run job; grant roles/run.developer"),
        (RuntimeError("boom"), "probe runner crashed: RuntimeError: boom"),
    ],
    ids=["runner-timeout", "oom", "no-result-line", "bad-json", "probe-error", "mismatched-entries", "access-denied", "runner-bug"],
)
def test_a_probe_without_a_readable_result_is_an_error(answer: ProbeRun | Exception, summary: str) -> None:
    result = check({"modules": ["probe_sample.good"]}, ScriptedRunner(answer))
    assert result.status is Status.ERROR and result.score == 0.0
    assert summary in result.summary, result.summary
    assert result.evidence[-1].ok is False


def test_the_image_is_pinned_to_the_build_digest_and_the_budget_kept() -> None:
    runner = ScriptedRunner(ProbeRun(0, ok_line("probe_sample.good"), where="local python"))
    build = Build(id="b1", status="SUCCESS", images=(IMAGE,), image_digests={IMAGE: DIGEST})
    result = check({"modules": ["probe_sample.good"], "timeout_s": 100, "python": "python3.12"}, runner, build=build)
    assert result.status is Status.PASS, result.summary
    ((target, interpreter, script, timeout_s),) = runner.calls
    assert target.image == IMAGE.rsplit(":", 1)[0] + "@" + DIGEST
    assert (interpreter, timeout_s) == ("python3.12", 95.0)
    assert '"budget_s":95.0' in script and '"name":"probe_sample.good"' in script


def test_no_time_left_in_the_deadline_is_an_error() -> None:
    runner = ScriptedRunner(ProbeRun(0))
    result = check({"modules": ["a"]}, runner, deadline=time.monotonic() + 3)
    assert result.status is Status.ERROR and result.summary.startswith("expected time to run the probe")
    assert runner.calls == []


# --- against a real virtualenv ------------------------------------------------------------------------------

GOOD = ["probe_sample.good", "probe_sample.good:Settings.DEFAULT", {"name": "probe_sample.old_api", "expect_deprecation": True}]
READY = {"name": "ready", "args": [*CLI, "ready"], "expect_stdout": "^status: ready$", "forbid_output": ["Traceback", "WARNING"]}


@pytest.mark.parametrize(
    ("settings", "status", "score", "summary"),
    [
        ({"modules": GOOD, "commands": [READY]}, Status.PASS, 1.0, "4/4 entries passed (3 imports, 1 command) in local "),
        ({"modules": [*GOOD, "probe_sample.broken_dep"]}, Status.WARN, 0.75,
         "3/4 entries passed; expected probe_sample.broken_dep to import, got ModuleNotFoundError: "
         "No module named 'probe_missing_dependency'"),
        ({"modules": [*GOOD, {"name": "probe_sample.raises", "critical": True}]}, Status.FAIL, 0.75,
         "critical: expected probe_sample.raises to import, got RuntimeError: PROBE_SAMPLE_DATABASE_URL is not set (3/4 entries passed)"),
        ({"modules": ["probe_sample.good", "probe_sample.broken_dep", "probe_sample.raises", "probe_sample.good:Missing"]},
         Status.FAIL, 0.25, "1/4 entries passed; expected probe_sample.broken_dep to import"),
        ({"modules": [*GOOD, {"name": "probe_sample.good", "expect_deprecation": True}]}, Status.WARN, 0.75,
         "expected importing probe_sample.good to raise a DeprecationWarning, none was raised"),
        ({"modules": [*GOOD, "probe_sample.hang"], "import_timeout_s": 1}, Status.WARN, 0.75,
         "expected probe_sample.hang to import, got import did not finish within 1 s"),
        ({"modules": GOOD, "commands": [{**READY, "name": "warns", "args": [*CLI, "warn"], "expect_stdout": []}]}, Status.WARN, 0.75,
         "command warns (python -m probe_sample.cli warn): expected no output matching /WARNING/, found a match (text not shown)"),
        ({"commands": [{"name": "crash", "args": [*CLI, "crash"], "critical": True}]}, Status.FAIL, 0.0,
         "critical: command crash (python -m probe_sample.cli crash): expected exit code 0, got 1"),
    ],
    ids=["all-pass", "broken-dependency", "critical-failure", "mostly-broken", "missing-deprecation", "hanging-import",
         "forbidden-output", "critical-command"],
)
def test_judged_from_a_real_interpreter(venv_python: str, settings: dict[str, Any], status: Status, score: float,
                                        summary: str) -> None:
    result = check(settings, LocalRunner(venv_python))
    assert (result.status, result.score) == (status, score), result.summary
    assert summary in result.summary, result.summary


def test_evidence_per_entry(venv_python: str) -> None:
    result = check({"modules": [*GOOD, "probe_sample.broken_dep", "probe_sample.compat:OldSettings",
                                {"name": "probe_sample.good", "expect_deprecation": True}],
                    "commands": [READY]}, LocalRunner(venv_python))
    assert evidence(result, "ran in").measured.startswith(f"local {venv_python}: Python 3.")
    good = evidence(result, "import probe_sample.good:Settings.DEFAULT")
    assert (good.threshold, good.ok) == ("imports", True) and good.measured.startswith("imported in ")
    old = evidence(result, "import probe_sample.old_api (deprecated path)")
    assert old.ok and old.threshold == "imports and raises DeprecationWarning"
    assert old.measured.endswith("; DeprecationWarning: probe_sample.old_api is deprecated; import probe_sample.good instead")
    broken = evidence(result, "import probe_sample.broken_dep")
    assert broken.ok is False
    assert broken.measured.startswith("failed: ModuleNotFoundError: No module named 'probe_missing_dependency' (File \"")
    assert broken.measured.endswith("broken_dep.py\", line 3, in <module>)")
    compat = evidence(result, "import probe_sample.compat:OldSettings")
    assert compat.ok and "OldSettings is deprecated" in compat.measured
    missing = evidence(result, "import probe_sample.good (deprecated path)")
    assert missing.ok is False and missing.measured.endswith(", no DeprecationWarning of its own")
    command = evidence(result, "command ready")
    assert (command.measured, command.threshold, command.ok) == (
        "exit 0", "exit 0, stdout ~ /^status: ready$/, no output ~ /Traceback/, no output ~ /WARNING/", True)
    assert evidence(result, "entries passing").measured == "5/7"
    assert "still raising DeprecationWarning on import: probe_sample.compat:OldSettings" in result.reasons
    assert result.next_steps == [
        f"docker run --rm --entrypoint python {IMAGE} -c 'import probe_sample.broken_dep'",
        f"docker run --rm --entrypoint python {IMAGE} -c 'import probe_sample.good'",
    ]


# --- through a Cloud Run job (fake Admin API + fake Logging API) ----------------------------------------------


def test_through_a_cloud_run_job(fake_run: FakeCloudRun, fake_logging: FakeLogging, venv_python: str) -> None:
    revision = json.loads((DATA / "revision_orders.json").read_text(encoding="utf-8"))
    fake_run.revisions[revision["name"]] = revision
    fake_run.logging = fake_logging
    settings = {"modules": [*GOOD, "probe_sample.broken_dep"], "commands": [READY], "python": "/usr/local/bin/python3"}
    # What the image would print: the check's own script for these settings, run for real in the virtualenv.
    stdout = asyncio.run(_probe_locally(venv_python, settings))
    fake_run.next_execution = {"outcome": "failed", "stdout": stdout}
    build = Build(id="b1", status="SUCCESS", images=(IMAGE,), image_digests={IMAGE: DIGEST})
    target = Target(service=S, project=P, region=R, revision=REV, image=IMAGE)
    result = check(settings, CloudRunJobRunner(poll_s=0.01, log_attempts=3, log_wait_s=0.01), target, build=build)

    assert (result.status, result.score) == (Status.WARN, 0.8), result.summary
    assert "expected probe_sample.broken_dep to import, got ModuleNotFoundError" in result.summary
    execution = next(iter(fake_run.executions)).rsplit("/", 1)[1]
    assert evidence(result, "ran in").measured.startswith(
        f"Cloud Run job postdeploy-probe-orders in {R}, execution {execution}: Python 3.")
    (created,) = [body for method, path, body in fake_run.bodies if method == "POST" and path.endswith("/jobs")]
    container = created["template"]["template"]["containers"][0]
    assert container["image"] == f"{IMAGE.rsplit(':', 1)[0]}@{DIGEST}"
    assert container["command"] == ["/usr/local/bin/python3"]
    (ran,) = [body for method, path, body in fake_run.bodies if path.endswith(":run")]
    args = ran["overrides"]["containerOverrides"][0]["args"]
    assert args[0] == "-c" and '"name":"probe_sample.broken_dep"' in args[1] and RESULT_MARKER in args[1]


async def _probe_locally(python: str, settings: dict[str, Any]) -> str:
    """Run the check's own script for these settings in the virtualenv and return its stdout."""
    runner = ScriptedRunner(ProbeRun(0))
    config = imports.Config.model_validate(settings)
    await imports.run(Target(service=S), config, CheckContext(http=None, probe_runner=runner))
    ((_, _, script, _),) = runner.calls
    run = await LocalRunner(python).run(Target(service=S), "python", script, 30)
    assert parse_result(run.stdout)["total"] == 5
    return run.stdout
