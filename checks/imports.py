"""imports: the configured modules and symbols import inside the deployed image; command tests pass there.

Scoring. Every module entry and command test is judged on its own, and one that fails fails the check (FAIL),
whatever the others did. The score is the share of judged entries that passed (report.score places it in the
status band). An entry marked ``critical`` that fails makes the failure critical: it fails the deploy. A failing
entry that is not critical caps the verdict at WARN, unless the whole check is ``critical: true``.

Not measured. What postdeploy itself could not do is ERROR, listed with the fix and never scored, never FAIL or
WARN: an interpreter that does not exist (here: ``--python``; in the image: ``checks.imports.python``), permission
denied on the probe job or its logs, a job that timed out, was cancelled or could not pull the image, a result line
that never came or cannot be read. Entries the probe had no time left for are listed as not measured beside the
judged ones; when one of them is critical and nothing failed, the check is ERROR (it cannot vouch for that entry).

What counts as a deprecation (``expect_deprecation``). Importing the entry (or reading its symbol) must raise a
warning that is both
- a DeprecationWarning, PendingDeprecationWarning or FutureWarning, or a subclass of one (a package's own
  ``class OldApiWarning(DeprecationWarning)`` counts); a UserWarning or any other class does not, whatever its
  message says;
- the module's own: raised from the module's file (anywhere in its folder for a package), from a package
  ``__init__`` above it that imports it, or with ``stacklevel=2`` from its body or a module ``__getattr__`` (such a
  warning names the importer). A dependency's warning raised from the dependency's own files does not count.
An entry not expected to warn that does is named in the reasons ("still warning that it is deprecated on import")
without failing.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from pydantic import Field, field_validator, model_validator

from core.errors import PostdeployError
from core.model import CheckContext, CheckResult, Evidence, NotMeasured, ProbeRun, Status, Target, cannot_measure, not_configured
from core.schema import FUNCTION_TIMEOUT_S, CheckSettings, Strict
from probe.runners import FIX_NO_REVISION, FIX_TIMEOUT, pinned_image
from probe.script import CommandProbe, ImportProbe, parse_result, probe_script

NAME = "imports"
CATEGORY = "Migration"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_IMPORT_TIMEOUT_S = 60.0
# Kept back from the check's timeout so the runner answers (and cleans up) before the check is cut off.
RUNNER_MARGIN_S = 5.0
MAX_MODULES = 200
WHAT = "imports probe"
FIX_NO_RUNNER = FIX_NO_REVISION  # the same fix whether the runner is missing or refuses a URL-only target
FIX_DEADLINE = "give the validation more time (deadline_s), or lower checks.imports.timeout_s"
FIX_NOT_RUN = FIX_TIMEOUT  # entries the probe had no time left for: its budget, as for a probe that timed out
FIX_PROBE_BUG = "a postdeploy bug, or a broken interpreter in the image: report it with this report"
MAX_COMMANDS = 50
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_ENTRY = re.compile(rf"^{_DOTTED}(?::{_DOTTED})?$")


def _compiled(patterns: list[str]) -> list[str]:
    problems = []
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"[{i}] expected a regular expression, found {pattern!r} ({exc})")
    if problems:
        raise ValueError("; ".join(problems))
    return patterns


class ImportEntry(Strict):
    """``pkg.mod`` or ``pkg.mod:Symbol.attr``; ``expect_deprecation``: must import *and* warn that it is deprecated."""

    name: str
    expect_deprecation: bool = False
    critical: bool = False

    @field_validator("name")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _ENTRY.match(value):
            raise ValueError(f"expected 'package.module' or 'package.module:Symbol.attr', found {value!r}")
        return value


class CommandTest(Strict):
    """A command run in the image, judged like container-structure-test's commandTests."""

    name: str = Field(min_length=1)
    args: list[str] = Field(min_length=1)
    expect_exit: int = 0
    expect_stdout: list[str] = Field(default_factory=list)
    expect_stderr: list[str] = Field(default_factory=list)
    forbid_output: list[str] = Field(default_factory=list)
    timeout_s: float = Field(DEFAULT_IMPORT_TIMEOUT_S, gt=0, le=FUNCTION_TIMEOUT_S)
    critical: bool = False

    @field_validator("expect_stdout", "expect_stderr", "forbid_output", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("expect_stdout", "expect_stderr", "forbid_output")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _compiled(value)


class Config(CheckSettings):
    """Modules to import and commands to run in the revision's image."""

    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=RUNNER_MARGIN_S, le=FUNCTION_TIMEOUT_S)
    # Capped so the probe's one result line stays one Cloud Logging entry.
    modules: list[ImportEntry] = Field(default_factory=list, max_length=MAX_MODULES)
    commands: list[CommandTest] = Field(default_factory=list, max_length=MAX_COMMANDS)
    python: str = Field("python", min_length=1)
    import_timeout_s: float = Field(DEFAULT_IMPORT_TIMEOUT_S, gt=0, le=FUNCTION_TIMEOUT_S)
    copy_env: bool = True

    @field_validator("modules", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("python")
    @classmethod
    def _interpreter(cls, value: str) -> str:
        if value != value.strip() or " " in value:
            raise ValueError(f"expected an interpreter path without spaces (it becomes the job's command), found {value!r}")
        return value

    @model_validator(mode="after")
    def _fits_timeout(self) -> Config:
        too_long = [f"import_timeout_s {self.import_timeout_s:g} s"] if self.import_timeout_s > self.timeout_s else []
        too_long += [f"commands[{i}].timeout_s {c.timeout_s:g} s" for i, c in enumerate(self.commands) if c.timeout_s > self.timeout_s]
        if too_long:
            raise ValueError(f"expected per-entry timeouts ≤ timeout_s ({self.timeout_s:g} s), found {', '.join(too_long)}")
        return self


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Run the generated probe through ``ctx.probe_runner`` and judge each entry."""
    if not config.modules and not config.commands:
        return not_configured("nothing to import configured")
    # Not measuring a critical entry must keep the verdict from vouching for it (INCONCLUSIVE, never a rollback).
    entries: list[ImportEntry | CommandTest] = [*config.modules, *config.commands]
    critical = True if any(e.critical for e in entries) else None
    if ctx.probe_runner is None:
        why = "no probe runner for this target: validate a Cloud Run revision, or give a local interpreter (--python)"
        return CheckResult(Status.SKIPPED, why, critical=critical, not_measured=[NotMeasured(WHAT, why, FIX_NO_RUNNER)])
    budget = config.timeout_s - RUNNER_MARGIN_S  # seconds, not an instant: the runner hands it to the probe
    if ctx.deadline:
        budget = min(budget, ctx.deadline - time.monotonic() - RUNNER_MARGIN_S)
    if budget <= 1:
        left = f"{max(budget, 0):.0f} s"
        return cannot_measure(WHAT, f"expected time to run the probe, found {left} left in the deadline", FIX_DEADLINE,
                              [Evidence("time left", left, "> 1 s", ok=False)], critical=critical)
    script = probe_script(
        [ImportProbe(m.name, m.expect_deprecation) for m in config.modules],
        [CommandProbe(c.name, tuple(c.args), c.expect_exit, tuple(c.expect_stdout), tuple(c.expect_stderr),
                      tuple(c.forbid_output), c.timeout_s) for c in config.commands],
        import_timeout_s=config.import_timeout_s, budget_s=budget,
    )
    image = pinned_image(target.image, ctx.build)
    by_hand = _by_hand(config.python, image, "import sys; print(sys.version)")
    try:
        probe = await ctx.probe_runner.run(replace(target, image=image), config.python, script, budget)
    except PostdeployError as exc:  # the runner says whose it is: postdeploy could not run the probe, and the fix
        return _not_measured(str(exc), exc.fix or f"run the probe by hand: {by_hand}", None, critical)
    if probe.error:
        return _not_measured(f"import probe did not complete in {probe.where}: {probe.error}",
                             f"run the probe by hand: {by_hand}", probe, critical)
    try:
        result = parse_result(probe.stdout)
    except ValueError as exc:
        stderr = " | ".join(probe.stderr.strip().splitlines()[-3:])
        return _not_measured(f"import probe in {probe.where} exited with {probe.exit_code} without a usable result: {exc}"
                             + (f"; stderr: {stderr[:300]}" if stderr else ""),
                             f"the probe needs Python 3.8 or newer: check the interpreter it ran with ({by_hand})",
                             probe, critical)
    if result.get("error"):
        return _not_measured(f"the import probe itself failed in {probe.where}: {result['error']}", FIX_PROBE_BUG, probe,
                             critical)
    names = [m.get("name") for m in result["modules"]] + [c.get("name") for c in result["commands"]]
    wanted = [m.name for m in config.modules] + [c.name for c in config.commands]
    if names != wanted:
        return _not_measured(f"expected the probe to report {', '.join(wanted[:5])}, it reported "
                             f"{', '.join(str(n) for n in names[:5]) or 'nothing'}", FIX_PROBE_BUG, probe, critical)
    return _judge(config, result, probe, image)


def _by_hand(python: str, image: str, code: str) -> str:
    """The command that runs ``code`` the way the probe would: in the image, or with the interpreter here."""
    if image:
        return f"docker run --rm --entrypoint {python} {image} -c '{code}'"
    return f"{python} -c '{code}'"


def _not_measured(why: str, fix: str, probe: ProbeRun | None, critical: bool | None) -> CheckResult:
    evidence = [Evidence("probe run", why, "a result line from the probe", ok=False)]
    if probe is not None and probe.where:
        evidence.insert(0, Evidence("ran in", probe.where, ok=None))
    return cannot_measure(WHAT, why, fix, evidence, critical=critical)


def _module_evidence(entry: ImportEntry, item: dict[str, Any]) -> tuple[Evidence, str]:
    """Evidence for one import and, when it failed, the reason."""
    name = entry.name
    ms = item.get("import_ms")
    took = f" in {ms:.0f} ms" if isinstance(ms, int | float) else ""
    warnings = item.get("warnings", [])
    deprecations = [w for w in warnings if w.get("deprecation") and w.get("own", True)]
    warned = f"{deprecations[0]['category']}: {deprecations[0]['message']}" if deprecations else ""
    wanted = "imports and warns that it is deprecated" if entry.expect_deprecation else "imports"
    what = f"import {name}" + (" (deprecated path)" if entry.expect_deprecation else "")
    if item.get("not_run"):
        return Evidence(what, item.get("reason") or "not run", wanted, ok=None), ""
    if item.get("passed"):
        measured = f"imported{took}" + (f"; {warned}" if warned else "")
        return Evidence(what, measured, wanted, ok=True), ""
    if item.get("ok"):  # imported, but no deprecation warning of its own came
        elsewhere = [w["where"] for w in warnings if w.get("deprecation") and not w.get("own", True)]
        other_kinds = list(dict.fromkeys(w["category"] for w in warnings if not w.get("deprecation") and w.get("own", True)))
        if elsewhere:
            found = f"only its dependencies did ({', '.join(elsewhere[:3])})"
        elif other_kinds:
            found = f"it warned only with {', '.join(other_kinds[:3])}, which is no deprecation warning class"
        else:
            found = "none was raised"
        return (Evidence(what, f"imported{took}, no deprecation warning of its own", wanted, ok=False),
                f"expected importing {name} to warn that it is deprecated, {found}")
    error = item.get("reason") or f"{item.get('error_type', 'Error')}: {item.get('error', '')}"
    frames = [line for line in item.get("traceback", []) if line.startswith("File ")]
    at = f" ({frames[-1]})" if frames else ""
    return Evidence(what, f"failed: {error}{at}", wanted, ok=False), f"expected {name} to import, got {error}"


def _command_evidence(command: CommandTest, item: dict[str, Any]) -> tuple[Evidence, str]:
    """Evidence for one command test and, when it failed, the reason."""
    wanted = [f"exit {command.expect_exit}"]
    wanted += [f"stdout ~ /{p}/" for p in command.expect_stdout] + [f"stderr ~ /{p}/" for p in command.expect_stderr]
    wanted += [f"no output ~ /{p}/" for p in command.forbid_output]
    failures = [str(f) for f in item.get("failures", [])]
    if item.get("not_run"):
        return Evidence(f"command {command.name}", "; ".join(failures) or "not run", ", ".join(wanted), ok=None), ""
    code = item.get("exit_code")
    measured = f"exit {code}" if code is not None else "no exit code"
    if failures:
        measured += "; " + "; ".join(failures)
    passed = bool(item.get("passed"))
    reason = "" if passed else f"command {command.name} ({' '.join(command.args)}): {'; '.join(failures) or 'did not pass'}"
    return Evidence(f"command {command.name}", measured, ", ".join(wanted), ok=passed), reason


def _judge(config: Config, result: dict[str, Any], probe: ProbeRun, image: str) -> CheckResult:
    evidence = [Evidence("ran in", f"{probe.where}: Python {result.get('python', '?')} at {result.get('executable', '?')}",
                         ok=None)]
    judged: list[tuple[ImportEntry | CommandTest, Evidence, str]] = [
        (m, *_module_evidence(m, item)) for m, item in zip(config.modules, result["modules"], strict=True)]
    judged += [(c, *_command_evidence(c, item)) for c, item in zip(config.commands, result["commands"], strict=True)]
    reasons: list[str] = []
    critical_failures: list[str] = []
    gaps: list[NotMeasured] = []
    critical_gaps: list[str] = []
    passed = 0
    for entry, ev, reason in judged:
        evidence.append(ev)
        if ev.ok is None:  # the probe had no time left for it: postdeploy's budget, not the revision
            gaps.append(NotMeasured(ev.what, f"{ev.what}: {ev.measured}", FIX_NOT_RUN))
            if entry.critical:
                critical_gaps.append(ev.what)
        elif ev.ok:
            passed += 1
        else:
            reasons.append(reason)
            if entry.critical:
                critical_failures.append(reason)
    measured = len(judged) - len(gaps)
    evidence.append(Evidence("entries passing", f"{passed}/{measured}" + (f" ({len(gaps)} not measured)" if gaps else ""),
                             f"{measured}/{measured}", ok=passed == measured))
    if not measured or (critical_gaps and not reasons):
        what = critical_gaps[0] if critical_gaps else f"all {len(judged)} entries"
        why = f"{what} not measured: the probe's time budget was used up"
        # The entries themselves are what was not measured (each with its fix), not the probe as a whole.
        return CheckResult(Status.ERROR, why, evidence, reasons=[why], critical=True if critical_gaps else None,
                           not_measured=gaps)
    counts = f"{passed}/{measured} entries passed" + (f", {len(gaps)} not measured" if gaps else "")
    still = [m.name for m, item in zip(config.modules, result["modules"], strict=True)
             if item.get("passed") and item.get("deprecation") and not m.expect_deprecation]
    notes = [f"still warning that it is deprecated on import: {', '.join(still)}"] if still else []
    if reasons:
        steps = [_by_hand(config.python, image, f"import {_module(m.name)}")
                 for m, item in zip(config.modules, result["modules"], strict=True)
                 if not item.get("passed") and not item.get("not_run")][:3] if image else []
        summary = f"critical: {critical_failures[0]} ({counts})" if critical_failures else f"{counts}; {reasons[0]}"
        return CheckResult(Status.FAIL, summary, evidence, passed / measured,
                           reasons=critical_failures + [r for r in reasons if r not in critical_failures] + notes,
                           next_steps=steps, critical=True if critical_failures else None, not_measured=gaps)
    kinds = ", ".join(part for part in (_count(len(config.modules), "import"), _count(len(config.commands), "command")) if part)
    return CheckResult(Status.PASS, f"{counts} ({kinds}) in {probe.where}", evidence, 1.0, reasons=notes, not_measured=gaps)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}" if n else ""


def _module(name: str) -> str:
    return name.split(":", 1)[0]
