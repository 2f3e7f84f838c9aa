"""The probe that runs inside the deployed image: the generated import/command script and its result line.

The script is plain stdlib Python (3.8+, images vary). It imports every entry in a fresh interpreter
(one subprocess each, so a module's side effects and its one-time DeprecationWarning cannot leak into
the next entry), runs the command tests, and prints exactly one line ``POSTDEPLOY_PROBE_RESULT {json}``.
``probe.runners`` executes it; ``parse_result`` reads that line back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RESULT_MARKER = "POSTDEPLOY_PROBE_RESULT"
RESULT_SCHEMA = "postdeploy.probe/v1"
# The runner tells the script how long it may take (it knows the overheads the check does not).
BUDGET_ENV = "POSTDEPLOY_PROBE_BUDGET_S"


@dataclass(frozen=True)
class ImportProbe:
    """One ``module`` or ``module:Symbol.attr`` to import; ``expect_deprecation`` wants a DeprecationWarning."""

    name: str
    expect_deprecation: bool = False


@dataclass(frozen=True)
class CommandProbe:
    """One command test in the style of container-structure-test."""

    name: str
    args: tuple[str, ...]
    expect_exit: int = 0
    expect_stdout: tuple[str, ...] = ()
    expect_stderr: tuple[str, ...] = ()
    forbid_output: tuple[str, ...] = ()
    timeout_s: float = 60.0


# The generated script. Kept free of anything newer than Python 3.8 (tests parse it with
# feature_version=(3, 8)). Its children write their result on a dup of fd 1, so a module that
# replaces sys.stdout cannot hide it, and leave with os._exit so threads started at import cannot
# keep them alive.
_SCRIPT = r'''# postdeploy import probe (generated; stdlib only; Python 3.8+)
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

MARKER = __MARKER__
SCHEMA = __SCHEMA__
SPEC = json.loads(__SPEC__)
CHILD_MARKER = "POSTDEPLOY_PROBE_CHILD"
TEXT_CAP = 2000
LINE_CAP = 60000

CHILD = r"""
import importlib, json, os, sys, time, traceback, warnings
out = os.dup(1)
spec = json.loads(sys.argv[1])
module_name, _, attr = spec["name"].partition(":")
result = {"ok": False}
started = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        obj = importlib.import_module(module_name)
        for part in [p for p in attr.split(".") if p]:
            obj = getattr(obj, part)
        result["ok"] = True
    except BaseException as exc:
        result["error_type"] = type(exc).__name__
        try:
            result["error"] = str(exc)[:1000]
        except Exception:
            result["error"] = "(str() of the exception failed)"
        lines = []
        skip = os.sep + "importlib" + os.sep
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith("<frozen importlib") or frame.filename == "<string>" or skip in frame.filename:
                continue
            lines.append('File "%s", line %s, in %s' % (frame.filename, frame.lineno, frame.name))
            if frame.line:
                lines.append("  " + frame.line.strip()[:200])
        result["traceback"] = lines[-12:]
result["import_ms"] = round((time.perf_counter() - started) * 1000, 1)
# A deprecation is one of these or a subclass (a package's own OldApiWarning(DeprecationWarning)); a UserWarning
# that says "deprecated" is not one.
kinds = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
own_file = getattr(sys.modules.get(module_name), "__file__", None) or ""
if os.path.basename(own_file).startswith("__init__."):
    own_file = os.path.dirname(own_file)
own_file = os.path.realpath(own_file) if own_file else ""
# The packages above it: a package __init__ that imports the module names it as the importer.
parents = [getattr(sys.modules.get(module_name.rsplit(".", i)[0]), "__file__", None) or ""
           for i in range(1, module_name.count(".") + 1)]
parents = [os.path.realpath(f) for f in parents if f]

def own(filename):
    # The module's own file (or package), a package __init__ above it, or the import machinery / this
    # script: a warning with stacklevel=2 from the module's body or a module __getattr__ names whoever
    # imported it.
    if filename == "<string>" or filename.startswith("<frozen importlib") or (os.sep + "importlib" + os.sep) in filename:
        return True
    path = os.path.realpath(filename)
    return bool(own_file) and (path == own_file or path.startswith(own_file + os.sep)) or path in parents

result["warnings"] = [
    {"category": w.category.__name__, "deprecation": issubclass(w.category, kinds), "own": own(w.filename),
     "message": str(w.message)[:500], "where": "%s:%s" % (w.filename, w.lineno)}
    for w in caught[:20]
]
os.write(out, ("\n" + sys.argv[2] + " " + json.dumps(result) + "\n").encode("utf-8", "replace"))
os._exit(0)
"""


def run_process(args, timeout, env=None):
    """(exit code or None when it timed out, stdout, stderr, ms); the whole process group dies on timeout."""
    extra = {"start_new_session": True} if os.name == "posix" else {}
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, **extra)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:
            pass
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
        code = None
    return code, out, err, round((time.perf_counter() - started) * 1000, 1)


def text(data):
    return data.decode("utf-8", "replace")


def tail(value, cap=TEXT_CAP):
    return value if len(value) <= cap else "..." + value[-cap:]


def last_line(output, marker):
    found = None
    for line in output.splitlines():
        if line.startswith(marker + " "):
            found = line[len(marker) + 1:]
    return found


def remaining(deadline):
    return deadline - time.monotonic()


def probe_module(entry, deadline, timeout):
    result = {"name": entry["name"], "expect_deprecation": bool(entry.get("expect_deprecation")),
              "passed": False, "reason": "", "deprecation": False, "warnings": []}
    left = remaining(deadline)
    if left < 1:
        result.update(error_type="NotRun", not_run=True, reason="not run: the probe's time budget was used up")
        return result
    timeout = min(timeout, left)
    code, out, err, ms = run_process([sys.executable, "-c", CHILD, json.dumps(entry), CHILD_MARKER], timeout)
    result["import_ms"] = ms
    if code is None:
        result.update(error_type="Timeout", timed_out=True, reason="import did not finish within %g s" % round(timeout, 1))
        return result
    raw = last_line(text(out), CHILD_MARKER)
    if raw is None:
        lines = [line for line in text(err).splitlines() if line.strip()]
        result.update(error_type="Exited", traceback=lines[-12:],
                      reason="the interpreter exited with code %s before reporting" % code)
        return result
    result.update(json.loads(raw))
    # Only the module's own deprecation counts: a dependency's warning is not the module saying it is deprecated.
    result["deprecation"] = any(w.get("deprecation") and w.get("own") for w in result["warnings"])
    if not result["ok"]:
        result["reason"] = "%s: %s" % (result.get("error_type", "Error"), result.get("error", ""))
    elif result["expect_deprecation"] and not result["deprecation"]:
        others = [w["where"] for w in result["warnings"] if w.get("deprecation")]
        result["reason"] = "imported, but no deprecation warning was raised" + (
            " by the module itself (only by %s)" % ", ".join(others[:3]) if others else "")
    else:
        result["passed"] = True
    return result


def probe_command(command, deadline):
    result = {"name": command["name"], "args": command["args"], "expect_exit": command["expect_exit"],
              "exit_code": None, "passed": False, "failures": [], "stdout": "", "stderr": ""}
    left = remaining(deadline)
    if left < 1:
        result.update(not_run=True, failures=["not run: the probe's time budget was used up"])
        return result
    timeout = min(command["timeout_s"], left)
    env = dict(os.environ)
    # Like an activated virtualenv: `python`, `pip` and console scripts resolve next to this interpreter.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    try:
        code, out, err, ms = run_process(command["args"], timeout, env)
    except OSError as exc:
        result["failures"] = ["could not start %s: %s" % (command["args"][0], exc)]
        return result
    stdout, stderr = text(out), text(err)
    failures = []
    if code is None:
        failures.append("did not finish within %g s" % round(timeout, 1))
    elif code != command["expect_exit"]:
        failures.append("expected exit code %s, got %s" % (command["expect_exit"], code))
    for stream, key, output in (("stdout", "expect_stdout", stdout), ("stderr", "expect_stderr", stderr)):
        for pattern in command[key]:
            if not re.search(pattern, output, re.MULTILINE):
                failures.append("expected %s to match /%s/" % (stream, pattern))
    for pattern in command["forbid_output"]:
        found = re.search(pattern, stdout, re.MULTILINE) or re.search(pattern, stderr, re.MULTILINE)
        if found:
            failures.append("expected no output matching /%s/, found a match (text not shown)" % pattern)
    result.update(exit_code=code, duration_ms=ms, passed=not failures, failures=failures,
                  stdout=tail(stdout), stderr=tail(stderr))
    return result


SAFE_ENV = {"PATH", "HOME", "PWD", "OLDPWD", "HOSTNAME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "SHELL",
            "TERM", "USER", "PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "CLOUD_RUN_JOB",
            "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "POSTDEPLOY_PROBE_BUDGET_S"}


def redact(value, secrets):
    """Strings with the values of the environment (the revision's secrets among them) blanked out."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[REDACTED]")
        return value
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, dict):
        return dict((k, redact(v, secrets)) for k, v in value.items())
    return value


def fit(report):
    """The report as one JSON line, shortened (never cut mid-JSON) to stay one readable log entry."""
    # The job runs with the revision's env and secrets: none of their values may reach the report.
    secrets = sorted((v for k, v in os.environ.items() if k not in SAFE_ENV and len(v) >= 8), key=len, reverse=True)
    report = redact(report, secrets)
    line = json.dumps(report, separators=(",", ":"))
    if len(line) <= LINE_CAP:
        return line
    report["truncated"] = True
    for item in report["commands"]:
        item["stdout"], item["stderr"] = tail(item["stdout"], 200), tail(item["stderr"], 200)
    for item in report["modules"]:
        item["traceback"] = item.get("traceback", [])[-4:]
        item["warnings"] = item["warnings"][:3]
    line = json.dumps(report, separators=(",", ":"))
    if len(line) <= LINE_CAP:
        return line
    keep = ("name", "ok", "passed", "not_run", "reason", "deprecation", "import_ms", "exit_code", "expect_exit", "failures")
    for key in ("modules", "commands"):
        report[key] = [dict((k, v) for k, v in item.items() if k in keep) for item in report[key]]
        for item in report[key]:
            if "reason" in item:
                item["reason"] = item["reason"][:300]
            if "failures" in item:
                item["failures"] = [f[:300] for f in item["failures"][:3]]
    return json.dumps(report, separators=(",", ":"))


def main():
    started = time.monotonic()
    budget = float(os.environ.get("POSTDEPLOY_PROBE_BUDGET_S") or SPEC["budget_s"])
    deadline = started + budget
    report = {"schema": SCHEMA, "python": platform.python_version(), "executable": sys.executable,
              "cwd": os.getcwd(), "budget_s": budget, "modules": [], "commands": []}
    try:
        for entry in SPEC["modules"]:
            report["modules"].append(probe_module(entry, deadline, SPEC["import_timeout_s"]))
        for command in SPEC["commands"]:
            report["commands"].append(probe_command(command, deadline))
    except BaseException as exc:
        report["error"] = "%s: %s" % (type(exc).__name__, exc)
    items = report["modules"] + report["commands"]
    report["passed"] = sum(1 for item in items if item["passed"])
    report["total"] = len(SPEC["modules"]) + len(SPEC["commands"])
    report["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    sys.stdout.write(MARKER + " " + fit(report) + "\n")
    sys.stdout.flush()
    if report.get("error"):
        return 2
    return 0 if report["passed"] == report["total"] else 1


sys.exit(main())
'''


def probe_script(entries: Sequence[ImportProbe], commands: Sequence[CommandProbe], *,
                 import_timeout_s: float = 60.0, budget_s: float = 300.0) -> str:
    """A self-contained Python 3.8+ script that probes the entries and prints one result line.

    Exit code 0 when every entry passed, 1 when some failed, 2 when the probe itself broke.
    ``budget_s`` is used unless the runner sets ``POSTDEPLOY_PROBE_BUDGET_S``.
    """
    spec = {
        "modules": [{"name": e.name, "expect_deprecation": e.expect_deprecation} for e in entries],
        "commands": [
            {"name": c.name, "args": list(c.args), "expect_exit": c.expect_exit, "expect_stdout": list(c.expect_stdout),
             "expect_stderr": list(c.expect_stderr), "forbid_output": list(c.forbid_output), "timeout_s": c.timeout_s}
            for c in commands
        ],
        "import_timeout_s": import_timeout_s,
        "budget_s": budget_s,
    }
    return (_SCRIPT.replace("__MARKER__", repr(RESULT_MARKER)).replace("__SCHEMA__", repr(RESULT_SCHEMA))
            .replace("__SPEC__", repr(json.dumps(spec, separators=(",", ":")))))


def parse_result(stdout: str) -> dict[str, Any]:
    """The JSON of the last ``POSTDEPLOY_PROBE_RESULT`` line; ValueError says what was found instead."""
    raw = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = line[len(RESULT_MARKER):].strip()
    if raw is None:
        seen = " | ".join(line for line in stdout.strip().splitlines()[-3:])[:300]
        raise ValueError(f"expected a line starting with {RESULT_MARKER} in the probe's output, found "
                         + (f"none (last output: {seen})" if seen else "no output at all"))
    try:
        result = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"expected JSON after {RESULT_MARKER}, found {raw[:120]!r} ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("modules"), list) or not isinstance(result.get("commands"), list):
        raise ValueError(f"expected a {RESULT_SCHEMA} object with 'modules' and 'commands' after {RESULT_MARKER}, "
                         f"found {raw[:120]!r}")
    return result
