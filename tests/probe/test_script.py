"""The generated probe script in a real virtualenv: fresh interpreter per import, commands, budget, result line."""

from __future__ import annotations

import ast
import asyncio
import sys
import time
from typing import Any

import pytest

from core.model import ProbeRun, Target
from probe.runners import LocalRunner
from probe.script import RESULT_MARKER, CommandProbe, ImportProbe, parse_result, probe_script


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


def test_environment_values_never_reach_the_result(venv_python: str) -> None:
    """The job runs with the revision's secrets in its env: an error quoting one must not carry it out."""
    script = probe_script([ImportProbe("json:loads")], [CommandProbe("leak", ("python", "-c", "import os; print(os.environ['DB_URL'])"))])
    runner = LocalRunner(python=venv_python, env={"DB_URL": "postgres://app:hunter2-very-secret@db/orders"})
    run = asyncio.run(runner.run(Target(service="s"), "python", script, 30))
    assert "hunter2" not in run.stdout
    assert "[REDACTED]" in parse_result(run.stdout)["commands"][0]["stdout"]


def test_a_dependency_deprecation_is_recorded_but_not_the_module_s_own(probed: tuple[ProbeRun, dict[str, Any]]) -> None:
    item = probed[1]["modules"][13]
    (warning,) = item["warnings"]
    assert warning["deprecation"] is True and warning["own"] is False
    assert warning["where"].endswith("probe_sample/vendored.py:5")
    assert item["reason"].endswith("(only by " + warning["where"] + ")")
    assert probed[1]["modules"][5]["warnings"][0]["own"] is True  # stacklevel=2 names the importer: still its own
