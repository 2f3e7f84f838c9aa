"""imports: the configured modules and symbols import inside the deployed image; command tests pass there.

Scoring: the score is the fraction of entries (modules + commands) that passed. A failing entry marked
``critical`` makes the check FAIL; otherwise failures give WARN, or FAIL once fewer than half of the
entries pass (at that point the image is broken, not merely degraded). A check with a critical entry
is itself critical unless ``critical`` is set explicitly, so that entry can fail the verdict. A probe
that could not run to its result line (image pull, OOM, timeout, no or unreadable result) is ERROR,
never a pass.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from pydantic import Field, field_validator, model_validator

from core.errors import PostdeployError
from core.model import CheckContext, CheckResult, Evidence, ProbeRun, Status, Target, not_configured
from core.probes import CommandProbe, ImportProbe, parse_result, pinned_image, probe_script
from core.schema import FUNCTION_TIMEOUT_S, CheckSettings, Strict

NAME = "imports"
CATEGORY = "Migration"
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_IMPORT_TIMEOUT_S = 60.0
# Kept back from the check's timeout so the runner answers (and cleans up) before the check is cut off.
RUNNER_MARGIN_S = 5.0
FAIL_BELOW = 0.5
MAX_MODULES = 200
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
    """``pkg.mod`` or ``pkg.mod:Symbol.attr``; ``expect_deprecation``: must import *and* warn DeprecationWarning."""

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
    def _critical_entries(self) -> Config:
        # A critical entry must be able to fail the verdict, which only a critical check does.
        entries: list[ImportEntry | CommandTest] = [*self.modules, *self.commands]
        if "critical" not in self.model_fields_set and any(e.critical for e in entries):
            self.critical = True
        return self

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
    if ctx.probe_runner is None:
        return CheckResult(Status.SKIPPED, "no probe runner for this target: validate a Cloud Run revision, "
                                           "or give a local interpreter (--python)")
    budget = config.timeout_s - RUNNER_MARGIN_S  # seconds, not an instant: the runner hands it to the probe
    if ctx.deadline:
        budget = min(budget, ctx.deadline - time.monotonic() - RUNNER_MARGIN_S)
    if budget <= 1:
        return CheckResult(Status.ERROR, f"expected time to run the probe, found {max(budget, 0):.0f} s left in the deadline",
                           [Evidence("time left", f"{max(budget, 0):.0f} s", "> 1 s", ok=False)])
    script = probe_script(
        [ImportProbe(m.name, m.expect_deprecation) for m in config.modules],
        [CommandProbe(c.name, tuple(c.args), c.expect_exit, tuple(c.expect_stdout), tuple(c.expect_stderr),
                      tuple(c.forbid_output), c.timeout_s) for c in config.commands],
        import_timeout_s=config.import_timeout_s, budget_s=budget,
    )
    image = pinned_image(target.image, ctx.build)
    try:
        probe = await ctx.probe_runner.run(replace(target, image=image), config.python, script, budget)
    except PostdeployError as exc:
        return _error(str(exc), ProbeRun(None))
    except Exception as exc:  # the runner's own bug is a result too
        return _error(f"probe runner crashed: {type(exc).__name__}: {exc}", ProbeRun(None))
    if probe.error:
        return _error(f"import probe did not complete in {probe.where}: {probe.error}", probe, image, config)
    try:
        result = parse_result(probe.stdout)
    except ValueError as exc:
        stderr = " | ".join(probe.stderr.strip().splitlines()[-3:])
        return _error(f"import probe in {probe.where} exited with {probe.exit_code} without a usable result: {exc}"
                      + (f"; stderr: {stderr[:300]}" if stderr else ""), probe, image, config)
    if result.get("error"):
        return _error(f"the import probe itself failed in {probe.where}: {result['error']}", probe, image, config)
    names = [m.get("name") for m in result["modules"]] + [c.get("name") for c in result["commands"]]
    wanted = [m.name for m in config.modules] + [c.name for c in config.commands]
    if names != wanted:
        return _error(f"expected the probe to report {', '.join(wanted[:5])}, it reported "
                      f"{', '.join(str(n) for n in names[:5]) or 'nothing'}", probe, image, config)
    return _judge(config, result, probe, image)


def _error(summary: str, probe: ProbeRun, image: str = "", config: Config | None = None) -> CheckResult:
    evidence = [Evidence("probe run", probe.error or summary, "a result line from the probe", ok=False)]
    if probe.where:
        evidence.insert(0, Evidence("ran in", probe.where, ok=None))
    steps = []
    if image and config is not None:
        steps.append(f"docker run --rm --entrypoint {config.python} {image} -c 'import sys; print(sys.version)'")
    return CheckResult(Status.ERROR, summary, evidence, 0.0, reasons=[summary], next_steps=steps)


def _module_evidence(entry: Any, item: dict[str, Any]) -> tuple[Evidence, str]:
    """Evidence for one import and, when it failed, the reason."""
    name = entry.name
    ms = item.get("import_ms")
    took = f" in {ms:.0f} ms" if isinstance(ms, int | float) else ""
    deprecations = [w for w in item.get("warnings", []) if w.get("deprecation") and w.get("own", True)]
    warned = f"{deprecations[0]['category']}: {deprecations[0]['message']}" if deprecations else ""
    wanted = "imports and raises DeprecationWarning" if entry.expect_deprecation else "imports"
    what = f"import {name}" + (" (deprecated path)" if entry.expect_deprecation else "")
    if item.get("passed"):
        measured = f"imported{took}" + (f"; {warned}" if warned else "")
        return Evidence(what, measured, wanted, ok=True), ""
    if item.get("ok"):  # imported, but the expected DeprecationWarning did not come
        elsewhere = [w["where"] for w in item.get("warnings", []) if w.get("deprecation") and not w.get("own", True)]
        found = f"only its dependencies did ({', '.join(elsewhere[:3])})" if elsewhere else "none was raised"
        return (Evidence(what, f"imported{took}, no DeprecationWarning of its own", wanted, ok=False),
                f"expected importing {name} to raise a DeprecationWarning, {found}")
    error = item.get("reason") or f"{item.get('error_type', 'Error')}: {item.get('error', '')}"
    frames = [line for line in item.get("traceback", []) if line.startswith("File ")]
    at = f" ({frames[-1]})" if frames else ""
    return Evidence(what, f"failed: {error}{at}", wanted, ok=False), f"expected {name} to import, got {error}"


def _command_evidence(command: CommandTest, item: dict[str, Any]) -> tuple[Evidence, str]:
    wanted = [f"exit {command.expect_exit}"]
    wanted += [f"stdout ~ /{p}/" for p in command.expect_stdout] + [f"stderr ~ /{p}/" for p in command.expect_stderr]
    wanted += [f"no output ~ /{p}/" for p in command.forbid_output]
    failures = [str(f) for f in item.get("failures", [])]
    code = item.get("exit_code")
    measured = f"exit {code}" if code is not None else "no exit code"
    if failures:
        measured += "; " + "; ".join(failures)
    reason = f"command {command.name} ({' '.join(command.args)}): {'; '.join(failures)}" if failures else ""
    return Evidence(f"command {command.name}", measured, ", ".join(wanted), ok=bool(item.get("passed"))), reason


def _judge(config: Config, result: dict[str, Any], probe: ProbeRun, image: str) -> CheckResult:
    evidence = [Evidence("ran in", f"{probe.where}: Python {result.get('python', '?')} at {result.get('executable', '?')}",
                         ok=None)]
    reasons: list[str] = []
    critical_failures: list[str] = []
    passed = 0
    judged: list[tuple[ImportEntry | CommandTest, Evidence, str]] = [
        (m, *_module_evidence(m, item)) for m, item in zip(config.modules, result["modules"], strict=True)]
    judged += [(c, *_command_evidence(c, item)) for c, item in zip(config.commands, result["commands"], strict=True)]
    for entry, ev, reason in judged:
        evidence.append(ev)
        passed += bool(ev.ok)
        if reason:
            reasons.append(reason)
            if entry.critical:
                critical_failures.append(reason)
    still_warning = [m.name for m, item in zip(config.modules, result["modules"], strict=True)
                     if item.get("passed") and item.get("deprecation") and not m.expect_deprecation]
    total = len(config.modules) + len(config.commands)
    score = passed / total
    evidence.append(Evidence("entries passing", f"{passed}/{total}", f"{total}/{total}", ok=passed == total))
    counts = f"{passed}/{total} entries passed"
    if still_warning:
        reasons.append(f"still raising DeprecationWarning on import: {', '.join(still_warning)}")
    steps = [f"docker run --rm --entrypoint {config.python} {image} -c 'import {_module(m.name)}'"
             for m, item in zip(config.modules, result["modules"], strict=True) if not item.get("passed")][:3] if image else []
    if critical_failures:
        return CheckResult(Status.FAIL, f"critical: {critical_failures[0]} ({counts})", evidence, score,
                           reasons=critical_failures + [r for r in reasons if r not in critical_failures], next_steps=steps)
    if passed < total:
        status = Status.FAIL if score < FAIL_BELOW else Status.WARN
        return CheckResult(status, f"{counts}; {reasons[0]}", evidence, score, reasons=reasons, next_steps=steps)
    kinds = ", ".join(part for part in (_count(len(config.modules), "import"), _count(len(config.commands), "command")) if part)
    return CheckResult(Status.PASS, f"{counts} ({kinds}) in {probe.where}", evidence, 1.0, reasons=reasons)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}" if n else ""


def _module(name: str) -> str:
    return name.split(":", 1)[0]
