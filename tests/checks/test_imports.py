"""imports: config, judging, and the probe end to end — a real virtualenv locally, the fake Cloud Run + Logging APIs remotely."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from checks import imports
from core.errors import AccessDenied, PostdeployError
from core.model import Build, CheckContext, CheckResult, Evidence, NotMeasured, Outcome, ProbeRun, Status, Target, Verdict
from core.runner import run_checks
from probe import runners
from probe.runners import CloudRunJobRunner, LocalRunner
from probe.script import RESULT_MARKER, parse_result
from report.score import score
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


@pytest.mark.parametrize(
    ("settings", "critical"),
    [
        ({"modules": [{"name": "a", "critical": True}]}, False),
        ({"commands": [{"name": "c", "args": ["x"], "critical": True}]}, False),
        ({"critical": True, "modules": ["a"]}, True),
        ({"modules": ["a"]}, False),
    ],
    ids=["critical-module-leaves-the-check-alone", "critical-command-leaves-the-check-alone", "check-level-critical",
         "default"],
)
def test_only_the_check_s_own_setting_makes_it_critical(settings: dict[str, Any], critical: bool) -> None:
    """A critical entry makes its own failure critical (result.critical), never the whole check."""
    assert imports.Config.model_validate(settings).critical is critical


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


# --- skipping and not measured (scripted runner) ---------------------------------------------------------------


def test_nothing_configured_is_skipped() -> None:
    runner = ScriptedRunner(ProbeRun(0))
    result = check({}, runner)
    assert (result.status, result.summary, result.assessed) == (Status.SKIPPED, "nothing to import configured", False)
    assert runner.calls == []


@pytest.mark.parametrize(("modules", "critical"), [(["a"], None), ([{"name": "a", "critical": True}], True)],
                         ids=["plain-entries", "a-critical-entry"])
def test_no_runner_is_not_measured_with_the_way_out(modules: list[Any], critical: bool | None) -> None:
    result = check({"modules": modules}, None)
    assert result.status is Status.SKIPPED and result.assessed  # asked for, so missing data, not "not configured"
    assert result.not_measured == [NotMeasured("imports probe", result.summary, imports.FIX_NO_RUNNER)]
    assert "--python" in result.summary
    assert result.critical is critical


def result_line(modules: list[dict[str, Any]], commands: list[dict[str, Any]] | None = None) -> str:
    return f"{RESULT_MARKER} " + json.dumps({"modules": modules, "commands": commands or [], "python": "3.12.1",
                                             "executable": "/usr/local/bin/python3"})


def ok_line(*names: str) -> str:
    return result_line([{"name": n, "ok": True, "passed": True, "import_ms": 3.0, "warnings": []} for n in names])


BY_HAND = f"docker run --rm --entrypoint python {IMAGE} -c 'import sys; print(sys.version)'"


@pytest.mark.parametrize(
    ("answer", "summary", "fix"),
    [
        (PostdeployError("the probe in local python did not report within 9 s", fix=runners.FIX_TIMEOUT),
         "the probe in local python did not report within 9 s", runners.FIX_TIMEOUT),
        (AccessDenied("permission denied on run job; grant roles/run.developer", fix=runners.FIX_RUN_ROLES),
         "permission denied on run job; grant roles/run.developer", runners.FIX_RUN_ROLES),
        (AccessDenied("permission denied reading the probe's logs"), "permission denied reading the probe's logs",
         f"run the probe by hand: {BY_HAND}"),
        (ProbeRun(None, error="the sandbox refused to start", where="a third-party runner"),
         "import probe did not complete in a third-party runner: the sandbox refused to start", f"run the probe by hand: {BY_HAND}"),
        (ProbeRun(1, "Traceback (most recent call last):\n", "SyntaxError: bad", where="local python"),
         "import probe in local python exited with 1 without a usable result: expected a line starting with POSTDEPLOY_PROBE_RESULT",
         f"the probe needs Python 3.8 or newer: check the interpreter it ran with ({BY_HAND})"),
        (ProbeRun(0, f"{RESULT_MARKER} {{oops", where="local python"), "expected JSON after POSTDEPLOY_PROBE_RESULT",
         f"the probe needs Python 3.8 or newer: check the interpreter it ran with ({BY_HAND})"),
        (ProbeRun(2, f'{RESULT_MARKER} {{"modules": [], "commands": [], "error": "MemoryError: "}}', where="local python"),
         "the import probe itself failed in local python: MemoryError", imports.FIX_PROBE_BUG),
        (ProbeRun(0, ok_line("other.module"), where="local python"),
         "expected the probe to report probe_sample.good, it reported other.module", imports.FIX_PROBE_BUG),
    ],
    ids=["runner-timeout", "access-denied-with-its-fix", "access-denied-without-a-fix", "third-party-runner-error",
         "no-result-line", "bad-json", "probe-error", "mismatched-entries"],
)
def test_a_probe_without_a_readable_result_is_not_measured(answer: ProbeRun | Exception, summary: str, fix: str) -> None:
    result = check({"modules": ["probe_sample.good"]}, ScriptedRunner(answer))
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, None)
    assert summary in result.summary, result.summary
    assert result.not_measured == [NotMeasured("imports probe", result.summary, fix)]
    assert result.evidence[-1] == Evidence("probe run", result.summary, "a result line from the probe", ok=False)


@pytest.mark.parametrize(("modules", "critical"), [(["a", "b"], None), (["a", {"name": "b", "critical": True}], True)],
                         ids=["plain-entries", "a-critical-entry"])
def test_a_critical_entry_that_cannot_be_measured_keeps_the_verdict_from_vouching(modules: list[Any], critical: bool | None) -> None:
    result = check({"modules": modules}, ScriptedRunner(AccessDenied("permission denied on run job", fix=runners.FIX_RUN_ROLES)))
    assert (result.status, result.critical) == (Status.ERROR, critical)


def test_a_crashing_runner_is_left_to_the_check_runner() -> None:
    """A bug is not a PostdeployError: core.runner turns it into "not measured" with the bug-report fix."""
    with pytest.raises(RuntimeError, match="boom"):
        check({"modules": ["a"]}, ScriptedRunner(RuntimeError("boom")))


def test_the_image_is_pinned_to_the_build_digest_and_the_budget_kept() -> None:
    runner = ScriptedRunner(ProbeRun(0, ok_line("probe_sample.good"), where="local python"))
    build = Build(id="b1", status="SUCCESS", images=(IMAGE,), image_digests={IMAGE: DIGEST})
    result = check({"modules": ["probe_sample.good"], "timeout_s": 100, "python": "python3.12"}, runner, build=build)
    assert result.status is Status.PASS, result.summary
    ((target, interpreter, script, timeout_s),) = runner.calls
    assert target.image == IMAGE.rsplit(":", 1)[0] + "@" + DIGEST
    assert (interpreter, timeout_s) == ("python3.12", 95.0)
    assert '"budget_s":95.0' in script and '"name":"probe_sample.good"' in script


@pytest.mark.parametrize(("seconds_left", "runs"), [(5.5, False), (7.0, True)],
                         ids=["0.5-s-after-the-runner-margin", "2-s-after-the-runner-margin"])
def test_no_time_left_in_the_deadline_is_not_measured(seconds_left: float, runs: bool) -> None:
    runner = ScriptedRunner(ProbeRun(0, ok_line("a"), where="local python"))
    result = check({"modules": ["a"]}, runner, deadline=time.monotonic() + seconds_left)
    assert bool(runner.calls) is runs
    if not runs:
        assert result.status is Status.ERROR and result.summary.startswith("expected time to run the probe")
        assert result.not_measured[0].fix == imports.FIX_DEADLINE


NOT_RUN = {"name": "b", "ok": False, "passed": False, "not_run": True, "error_type": "NotRun",
           "reason": "not run: the probe's time budget was used up", "warnings": []}
PASSED = {"name": "a", "ok": True, "passed": True, "warnings": []}
FAILED = {"name": "a", "ok": False, "passed": False, "reason": "RuntimeError: no database", "warnings": []}


@pytest.mark.parametrize(
    ("modules", "items", "status", "score", "critical", "summary"),
    [
        (["a", "b"], [PASSED, NOT_RUN], Status.PASS, 1.0, None, "1/1 entries passed, 1 not measured (2 imports) in local python"),
        (["a", {"name": "b", "critical": True}], [PASSED, NOT_RUN], Status.ERROR, None, True,
         "import b not measured: the probe's time budget was used up"),
        (["a", {"name": "b", "critical": True}], [FAILED, NOT_RUN], Status.FAIL, 0.0, None,
         "0/1 entries passed, 1 not measured; expected a to import, got RuntimeError: no database"),
        (["b"], [NOT_RUN], Status.ERROR, None, None, "all 1 entries not measured: the probe's time budget was used up"),
    ],
    ids=["rest-passed", "critical-entry-not-run", "failure-beside-a-critical-entry-not-run", "nothing-run"],
)
def test_entries_the_probe_had_no_time_for_are_not_measured(modules: list[Any], items: list[dict[str, Any]], status: Status,
                                                           score: float | None, critical: bool | None, summary: str) -> None:
    result = check({"modules": modules}, ScriptedRunner(ProbeRun(1, result_line(items), where="local python")))
    assert (result.status, result.score, result.critical) == (status, score, critical), result.summary
    assert result.summary.startswith(summary), result.summary
    assert result.not_measured == [NotMeasured("import b", "import b: not run: the probe's time budget was used up",
                                               imports.FIX_NOT_RUN)]
    assert evidence(result, "import b").ok is None


def test_a_failure_is_graded_over_the_entries_measured() -> None:
    items = [PASSED, {**FAILED, "name": "c"}, NOT_RUN]
    result = check({"modules": ["a", "c", "b"]}, ScriptedRunner(ProbeRun(1, result_line(items), where="local python")))
    assert (result.status, result.score) == (Status.FAIL, 0.5)
    assert evidence(result, "entries passing") == Evidence("entries passing", "1/2 (1 not measured)", "2/2", ok=False)
    assert result.next_steps == [f"docker run --rm --entrypoint python {IMAGE} -c 'import c'"]  # not b: it never ran


@pytest.mark.parametrize(
    ("warnings", "found"),
    [
        ([], "none was raised"),
        ([{"category": "UserWarning", "deprecation": False, "own": True, "where": "m.py:3"}],
         "it warned only with UserWarning, which is no deprecation warning class"),
        ([{"category": "UserWarning", "deprecation": False, "own": False, "where": "dep.py:3"}], "none was raised"),
        ([{"category": "DeprecationWarning", "deprecation": True, "own": False, "where": "dep.py:5"}],
         "only its dependencies did (dep.py:5)"),
    ],
    ids=["no-warning", "own-user-warning", "a-dependency-s-user-warning", "a-dependency-s-deprecation"],
)
def test_why_an_expected_deprecation_did_not_count(warnings: list[dict[str, Any]], found: str) -> None:
    item = {"name": "a", "ok": True, "passed": False, "warnings": warnings}
    result = check({"modules": [{"name": "a", "expect_deprecation": True}]},
                   ScriptedRunner(ProbeRun(1, result_line([item]), where="local python")))
    assert result.status is Status.FAIL
    assert result.reasons == [f"expected importing a to warn that it is deprecated, {found}"]


def test_a_command_the_probe_had_no_time_for_is_not_measured() -> None:
    command = {"name": "migrate", "args": ["x"], "exit_code": None, "passed": False, "not_run": True,
               "failures": ["not run: the probe's time budget was used up"]}
    runner = ScriptedRunner(ProbeRun(1, result_line([PASSED], [command]), where="local python"))
    result = check({"modules": ["a"], "commands": [{"name": "migrate", "args": ["x"]}]}, runner)
    assert (result.status, result.score) == (Status.PASS, 1.0)
    assert [n.what for n in result.not_measured] == ["command migrate"]
    assert evidence(result, "command migrate") == Evidence("command migrate", "not run: the probe's time budget was used up",
                                                           "exit 0", ok=None)


# --- against a real virtualenv ------------------------------------------------------------------------------

GOOD = ["probe_sample.good", "probe_sample.good:Settings.DEFAULT", {"name": "probe_sample.old_api", "expect_deprecation": True}]
READY = {"name": "ready", "args": [*CLI, "ready"], "expect_stdout": "^status: ready$", "forbid_output": ["Traceback", "WARNING"]}
DEPRECATED = [{"name": f"probe_sample.{name}", "expect_deprecation": True}
              for name in ("old_api", "pending_api", "future_api", "custom_api", "eager.legacy", "compat:OldSettings")]


@pytest.mark.parametrize(
    ("settings", "status", "score", "critical", "summary"),
    [
        ({"modules": GOOD, "commands": [READY]}, Status.PASS, 1.0, None, "4/4 entries passed (3 imports, 1 command) in local "),
        ({"modules": [*GOOD, "probe_sample.broken_dep"]}, Status.FAIL, 0.75, None,
         "3/4 entries passed; expected probe_sample.broken_dep to import, got ModuleNotFoundError: "
         "No module named 'probe_missing_dependency'"),
        ({"modules": [*GOOD, {"name": "probe_sample.raises", "critical": True}]}, Status.FAIL, 0.75, True,
         "critical: expected probe_sample.raises to import, got RuntimeError: PROBE_SAMPLE_DATABASE_URL is not set (3/4 entries passed)"),
        ({"modules": [{"name": "probe_sample.good", "critical": True}, "probe_sample.broken_dep"]}, Status.FAIL, 0.5, None,
         "1/2 entries passed; expected probe_sample.broken_dep to import"),
        ({"modules": ["probe_sample.good", "probe_sample.broken_dep", "probe_sample.raises", "probe_sample.good:Missing"]},
         Status.FAIL, 0.25, None, "1/4 entries passed; expected probe_sample.broken_dep to import"),
        ({"modules": [*GOOD, {"name": "probe_sample.good", "expect_deprecation": True}]}, Status.FAIL, 0.75, None,
         "expected importing probe_sample.good to warn that it is deprecated, none was raised"),
        ({"modules": DEPRECATED}, Status.PASS, 1.0, None, "6/6 entries passed (6 imports) in local "),
        ({"modules": [*GOOD, {"name": "probe_sample.user_warned", "expect_deprecation": True}]}, Status.FAIL, 0.75, None,
         "expected importing probe_sample.user_warned to warn that it is deprecated, it warned only with UserWarning, "
         "which is no deprecation warning class"),
        ({"modules": [*GOOD, {"name": "probe_sample.uses_vendored", "expect_deprecation": True}]}, Status.FAIL, 0.75, None,
         "expected importing probe_sample.uses_vendored to warn that it is deprecated, only its dependencies did ("),
        ({"modules": [*GOOD, "probe_sample.hang"], "import_timeout_s": 1}, Status.FAIL, 0.75, None,
         "expected probe_sample.hang to import, got import did not finish within 1 s"),
        ({"modules": GOOD, "commands": [{**READY, "name": "warns", "args": [*CLI, "warn"], "expect_stdout": []}]}, Status.FAIL, 0.75,
         None, "command warns (python -m probe_sample.cli warn): expected no output matching /WARNING/, found a match (text not shown)"),
        ({"commands": [{"name": "crash", "args": [*CLI, "crash"], "critical": True}]}, Status.FAIL, 0.0, True,
         "critical: command crash (python -m probe_sample.cli crash): expected exit code 0, got 1"),
        ({"modules": GOOD, "commands": [{"name": "missing-tool", "args": ["no-such-tool-xyz"]}]}, Status.FAIL, 0.75, None,
         "command missing-tool (no-such-tool-xyz): could not start no-such-tool-xyz"),
    ],
    ids=["all-pass", "one-broken-dependency-fails", "critical-failure", "non-critical-failure-beside-a-critical-entry",
         "mostly-broken", "missing-deprecation", "every-kind-of-deprecation", "user-warning-is-no-deprecation",
         "dependency-deprecation-is-not-own", "hanging-import", "forbidden-output", "critical-command",
         "command-missing-from-the-image"],
)
def test_judged_from_a_real_interpreter(venv_python: str, settings: dict[str, Any], status: Status, score: float,
                                        critical: bool | None, summary: str) -> None:
    result = check(settings, LocalRunner(venv_python))
    assert (result.status, result.score, result.critical) == (status, score, critical), result.summary
    assert summary in result.summary, result.summary
    assert result.not_measured == []


@pytest.mark.parametrize(
    ("runner", "summary", "fix"),
    [
        (LocalRunner(python="/nope/python"), "could not start /nope/python: [Errno 2] No such file or directory",
         "pass --python an interpreter that exists on this machine"),
        (LocalRunner(), "could not start /nope/python: [Errno 2] No such file or directory",
         "set checks.imports.python to an interpreter that exists on this machine, or pass --python"),
    ],
    ids=["python-flag", "config-interpreter"],
)
def test_a_missing_local_interpreter_is_not_measured(runner: LocalRunner, summary: str, fix: str) -> None:
    result = check({"modules": [{"name": "probe_sample.good", "critical": True}], "python": "/nope/python"}, runner)
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, True)
    assert result.summary.startswith(summary)
    (gap,) = result.not_measured
    assert (gap.what, gap.why) == ("imports probe", result.summary) and gap.fix.startswith(fix)


def test_evidence_per_entry(venv_python: str) -> None:
    result = check({"modules": [*GOOD, "probe_sample.broken_dep", "probe_sample.compat:OldSettings",
                                {"name": "probe_sample.good", "expect_deprecation": True}],
                    "commands": [READY]}, LocalRunner(venv_python))
    assert evidence(result, "ran in").measured.startswith(f"local {venv_python}: Python 3.")
    good = evidence(result, "import probe_sample.good:Settings.DEFAULT")
    assert (good.threshold, good.ok) == ("imports", True) and good.measured.startswith("imported in ")
    old = evidence(result, "import probe_sample.old_api (deprecated path)")
    assert old.ok and old.threshold == "imports and warns that it is deprecated"
    assert old.measured.endswith("; DeprecationWarning: probe_sample.old_api is deprecated; import probe_sample.good instead")
    broken = evidence(result, "import probe_sample.broken_dep")
    assert broken.ok is False
    assert broken.measured.startswith("failed: ModuleNotFoundError: No module named 'probe_missing_dependency' (File \"")
    assert broken.measured.endswith("broken_dep.py\", line 3, in <module>)")
    compat = evidence(result, "import probe_sample.compat:OldSettings")
    assert compat.ok and "OldSettings is deprecated" in compat.measured
    missing = evidence(result, "import probe_sample.good (deprecated path)")
    assert missing.ok is False and missing.measured.endswith(", no deprecation warning of its own")
    command = evidence(result, "command ready")
    assert (command.measured, command.threshold, command.ok) == (
        "exit 0", "exit 0, stdout ~ /^status: ready$/, no output ~ /Traceback/, no output ~ /WARNING/", True)
    assert evidence(result, "entries passing").measured == "5/7"
    assert "still warning that it is deprecated on import: probe_sample.compat:OldSettings" in result.reasons
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

    assert (result.status, result.score, result.critical) == (Status.FAIL, 0.8, None), result.summary
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


def through_a_job(settings: dict[str, Any]) -> CheckResult:
    target = Target(service=S, project=P, region=R, revision=REV, image=IMAGE)
    return check(settings, CloudRunJobRunner(poll_s=0.01, log_attempts=2, log_wait_s=0.01), target)


@pytest.mark.parametrize(
    ("script", "summary", "fix"),
    [
        (lambda fake: setattr(fake, "next_execution", {
            "outcome": "failed", "message": "Application failed to start: failed to load /opt/venv/bin/python: no such file or directory"}),
         "failed to load /opt/venv/bin/python: no such file or directory (no /opt/venv/bin/python in the image)",
         "set checks.imports.python to the interpreter's path inside the image"),
        (lambda fake: fake.fail_next(1, 403), "permission denied on get revision",
         runners.FIX_RUN_ROLES),
        (lambda fake: setattr(fake, "next_execution", {"outcome": "failed", "message": f"Image '{IMAGE}' not found."}),
         "(the image could not be pulled)", runners.FIX_IMAGE),
        (lambda fake: setattr(fake, "next_execution", {"outcome": "timed_out"}), "timed out after", runners.FIX_TIMEOUT),
    ],
    ids=["no-interpreter-in-the-image", "permission-denied", "image-pull", "job-timeout"],
)
def test_what_the_job_could_not_do_is_not_measured(cloud: FakeCloudRun, script: Any, summary: str, fix: str) -> None:
    script(cloud)
    result = through_a_job({"modules": ["probe_sample.good"], "python": "/opt/venv/bin/python"})
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, None), result.summary
    assert summary in result.summary, result.summary
    (gap,) = result.not_measured
    assert gap.fix.startswith(fix), gap.fix


# --- what the verdict makes of it (core.runner + report.score) ---------------------------------------------------------

PERFECT = [Outcome(name, category, False, CheckResult(Status.PASS, "ok", score=1.0), 1)
           for name, category in [("deployment", "Deployment"), ("logs", "Stability"), ("smoke", "Business"), ("tests", "Testing")]]
WEIGHTS: dict[str, float] = {"Deployment": 20, "Migration": 25, "Stability": 20, "Business": 20, "Testing": 15}


@pytest.mark.parametrize(
    ("settings", "critical", "verdict"),
    [
        ({"modules": [{"name": "probe_sample.good", "critical": True}, "probe_sample.broken_dep"]}, False, Verdict.WARN),
        ({"modules": ["probe_sample.good", {"name": "probe_sample.broken_dep", "critical": True}]}, True, Verdict.FAIL),
        ({"critical": True, "modules": ["probe_sample.good", "probe_sample.broken_dep"]}, True, Verdict.FAIL),
        ({"modules": ["probe_sample.good", "probe_sample.broken_dep"]}, False, Verdict.WARN),
    ],
    ids=["non-critical-entry-fails-caps-at-warn", "critical-entry-fails-the-deploy", "critical-check-fails-the-deploy",
         "plain-entry-fails-caps-at-warn"],
)
def test_a_failing_entry_fails_the_deploy_only_when_it_or_the_check_is_critical(venv_python: str, settings: dict[str, Any],
                                                                                critical: bool, verdict: Verdict) -> None:
    config = imports.Config.model_validate(settings)
    ctx = CheckContext(http=None, probe_runner=LocalRunner(venv_python), deadline=time.monotonic() + 120)
    (outcome,) = asyncio.run(run_checks(Target(service=S), SimpleNamespace(checks=SimpleNamespace(imports=config)),
                                        {"imports": imports}, ctx))
    assert (outcome.result.status, outcome.critical) == (Status.FAIL, critical)
    scored = score([*PERFECT, outcome], WEIGHTS, 90, 75)
    assert scored.verdict is verdict, scored.reasons
