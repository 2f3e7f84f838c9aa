"""Probes inside the deployed image: the generated import/command script and the runners that execute it.

The script is plain stdlib Python (3.8+, images vary). It imports every entry in a fresh interpreter
(one subprocess each, so a module's side effects and its one-time DeprecationWarning cannot leak into
the next entry), runs the command tests, and prints exactly one line ``POSTDEPLOY_PROBE_RESULT {json}``.
Two runners execute it behind ``core.model.ProbeRunner``: ``LocalRunner`` (an interpreter on this
machine) and ``CloudRunJobRunner`` (a Cloud Run job built from the revision, read back through Cloud
Logging). What the revision did comes back as a ``ProbeRun`` to judge. When the probe could not run or
report (no such interpreter, permission denied, the job timed out, the image could not be pulled, no
result line reached the logs) the runner raises a ``PostdeployError`` whose ``fix`` says what would let it:
postdeploy's own problem, never the revision's, never a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.backoff import Retryable
from core.errors import AccessDenied, PostdeployError, RunApiUnavailable
from core.gcp import RUN_ENDPOINT_ENV, RUN_TIMEOUT_S, client_kwargs, filter_string, logging_client, short, with_credentials
from core.logsource import list_entries_page
from core.model import Build, ProbeRun, Target, untagged

RESULT_MARKER = "POSTDEPLOY_PROBE_RESULT"
RESULT_SCHEMA = "postdeploy.probe/v1"
# The runner tells the script how long it may take (it knows the overheads the check does not).
BUDGET_ENV = "POSTDEPLOY_PROBE_BUDGET_S"
JOB_PREFIX = "postdeploy-probe-"
JOB_CONTAINER = "probe"
JOB_NAME_MAX = 63
# Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN); the Admin API request must also carry it.
MAX_SCRIPT_BYTES = 100_000
# The script reports this long before the runner gives up on it, so a slow probe still yields a result.
LOCAL_MARGIN_S = 2.0
# Cloud Run: time kept back from the task timeout for job setup, container start and reading the logs.
JOB_OVERHEAD_S = 30.0
LOG_READ_TIMEOUT_S = 30.0
LOG_LOOKBACK = timedelta(seconds=60)
_DEFAULT_TEMPLATE_ARGS = ["-c", "import sys; sys.exit('postdeploy probe job: run it with an args override')"]

# What would let the probe run, by what stopped it (the runner knows which; the check only passes it on).
FIX_LOCAL_PYTHON = "pass --python an interpreter that exists on this machine"
FIX_CONFIG_PYTHON = ("set checks.imports.python to an interpreter that exists on this machine, or pass --python "
                     "(checks.imports.python names the one inside the image)")
FIX_IMAGE_PYTHON = "set checks.imports.python to the interpreter's path inside the image"
FIX_TIMEOUT = "raise checks.imports.timeout_s, or lower import_timeout_s so that one hanging import cannot use up the budget"
FIX_NO_REVISION = "validate a Cloud Run revision, or pass --python to probe with an interpreter on this machine"
FIX_TOO_BIG = f"configure fewer checks.imports modules or commands (the probe script must stay under {MAX_SCRIPT_BYTES} bytes)"
FIX_RUN_ROLES = ("grant the function's service account roles/run.developer, and roles/iam.serviceAccountUser on the "
                 "revision's service account")
FIX_LOGS_ROLE = "grant the function's service account roles/logging.viewer"
FIX_RUN_API = "validate again: the Cloud Run Admin API was unavailable"
FIX_LOGS_API = "validate again: Cloud Logging was unavailable"
FIX_JOB_SETUP = ("the job is built from the revision (image, resources and, with copy_env, its env, secrets, volumes, VPC "
                 "access and service account): fix what the Admin API named, or set checks.imports.copy_env: false")
FIX_RACE = "validate again: another validation of the service updated the probe job meanwhile"
FIX_CANCELLED = "validate again: the execution was cancelled before it finished"
FIX_NO_LINE = ("check that the job's stdout reaches Cloud Logging (no exclusion filter on cloud_run_job logs), "
               "then validate again")
FIX_IMAGE = ("check that the image still exists and that the revision's service account can pull it "
             "(roles/artifactregistry.reader)")


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
            value = value.replace(secret, "<redacted>")
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


def pinned_image(image: str, build: Build | None) -> str:
    """``repo@sha256:…`` when the build produced a digest for this image, else the image unchanged."""
    if not image or "@" in image or build is None:
        return image
    digest = build.image_digests.get(image) or next(
        (d for name, d in build.image_digests.items() if untagged(name) == untagged(image)), "")
    return f"{untagged(image)}@{digest}" if digest else image


def job_id_for(service: str) -> str:
    """``postdeploy-probe-SERVICE`` as a valid Cloud Run job id (lowercase, ≤ 63, letter first, no trailing '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", (JOB_PREFIX + service).lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if len(name) > JOB_NAME_MAX:
        name = name[:JOB_NAME_MAX - 7].rstrip("-") + "-" + hashlib.sha256(service.encode()).hexdigest()[:6]
    return name


def _kill_group(pid: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class LocalRunner:
    """Runs the probe with an interpreter on this machine (``validate --url``, the demo, tests).

    ``python`` overrides the interpreter the check asks for: the config names the path inside the
    image, which rarely exists here.
    """

    python: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] | None = None

    async def run(self, target: Target, interpreter: str, script: str, timeout_s: float) -> ProbeRun:
        """Run ``python -c script``; on timeout the whole process group is killed. PostdeployError (with ``fix``)
        when the interpreter cannot be started or the probe does not end in time."""
        python = self.python or interpreter
        where = f"local {python}"
        env = {**(self.env if self.env is not None else os.environ), BUDGET_ENV: f"{max(timeout_s - LOCAL_MARGIN_S, 1.0):g}"}
        try:
            proc = await asyncio.create_subprocess_exec(
                python, "-c", script, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.cwd, env=env, start_new_session=os.name == "posix")
        except OSError as exc:
            raise PostdeployError(f"could not start {python}: {exc}",
                                  fix=FIX_LOCAL_PYTHON if self.python else FIX_CONFIG_PYTHON) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
        except TimeoutError:
            raise PostdeployError(f"the probe in {where} did not report within {timeout_s:g} s", fix=FIX_TIMEOUT) from None
        finally:
            if proc.returncode is None:  # timed out, or the check itself was cancelled
                _kill_group(proc.pid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout=5)
        return ProbeRun(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), where=where)


class _ProbeFailed(Exception):
    """The job could not be set up, run or read back; ``run`` raises it on as a PostdeployError with ``fix``."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@dataclass
class _Clients:
    jobs: Any
    executions: Any
    revisions: Any


@dataclass
class CloudRunJobRunner:
    """Runs the probe as a Cloud Run job built from the target revision (google-cloud-run, google-cloud-logging).

    The job ``postdeploy-probe-SERVICE`` is created or updated with the target's image (the check pins
    it by digest when the build gave one), the revision's container resources and, unless
    ``copy_env`` is off, its env vars, secret references, volumes, VPC access and service account.
    The interpreter is the container command (a run can override args, never the command); the
    script travels as the args override. The result line is read back from Cloud Logging.
    The function's service account needs roles/run.developer, roles/iam.serviceAccountUser on the
    revision's service account, and roles/logging.viewer.
    """

    copy_env: bool = True
    poll_s: float = 2.0
    log_attempts: int = 6
    log_wait_s: float = 3.0
    _clients: _Clients | None = field(default=None, repr=False)

    def _api(self) -> _Clients:
        if self._clients is None:
            from google.cloud import run_v2

            kwargs = client_kwargs(RUN_ENDPOINT_ENV)
            self._clients = _Clients(run_v2.JobsClient(**kwargs), run_v2.ExecutionsClient(**kwargs),
                                     run_v2.RevisionsClient(**kwargs))
        return self._clients

    async def run(self, target: Target, interpreter: str, script: str, timeout_s: float) -> ProbeRun:
        """Create/update the job, run it with the script, wait for the execution, read its result line.

        PostdeployError (AccessDenied, RunApiUnavailable, NoCredentials, …) with ``fix`` when it cannot."""
        job_id = job_id_for(target.service)
        where = f"Cloud Run job {job_id} in {target.region or '?'}"
        if not (target.project and target.region and target.service and target.revision):
            raise PostdeployError(f"{where}: no Cloud Run revision to take the image from (URL-only target)",
                                  fix=FIX_NO_REVISION)
        size = len(script.encode())
        if size > MAX_SCRIPT_BYTES:
            raise PostdeployError(f"{where}: the probe script is {size} bytes, more than the {MAX_SCRIPT_BYTES} bytes "
                                  "an args override can carry", fix=FIX_TOO_BIG)
        deadline = time.monotonic() + timeout_s
        try:
            return await self._run(target, interpreter, script, deadline, job_id, where)
        except _ProbeFailed as exc:
            raise PostdeployError(f"{where}: {exc}", fix=exc.fix) from exc

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any,
                    passthrough: tuple[type[Exception], ...] = (), **kwargs: Any) -> Any:
        """One blocking API call off the event loop, with Google errors wrapped at this boundary."""
        from google.api_core import exceptions as gexc

        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except passthrough:
            raise
        except gexc.Forbidden as exc:
            raise AccessDenied(f"permission denied on {what}; grant the function's service account roles/run.developer "
                               f"and roles/iam.serviceAccountUser on the revision's service account ({exc.message})",
                               fix=FIX_RUN_ROLES) from exc
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API failed on {what}: {exc}", fix=FIX_RUN_API) from exc
        except gexc.GoogleAPICallError as exc:
            raise _ProbeFailed(f"{what} failed: {exc.message or exc}", FIX_JOB_SETUP) from exc
        except TimeoutError as exc:  # an operation's result() outlived its timeout
            raise _ProbeFailed(f"{what} did not finish in time", FIX_TIMEOUT) from exc
        except (ConnectionError, OSError) as exc:
            raise RunApiUnavailable(f"Cloud Run Admin API unreachable on {what}: {exc}", fix=FIX_RUN_API) from exc

    def _left(self, deadline: float) -> float:
        return deadline - time.monotonic()

    async def _run(self, target: Target, interpreter: str, script: str, deadline: float, job_id: str,
                   where: str) -> ProbeRun:
        from google.api_core import exceptions as gexc
        from google.api_core.future import polling
        from google.cloud import run_v2

        api = with_credentials("the Cloud Run Admin API", self._api)
        parent = f"projects/{target.project}/locations/{target.region}"
        job_name = f"{parent}/jobs/{job_id}"
        revision_name = f"{parent}/services/{target.service}/revisions/{target.revision}"
        revision = await self._call(f"get revision {revision_name}", api.revisions.get_revision, name=revision_name,
                                    timeout=RUN_TIMEOUT_S)
        left = self._left(deadline)
        task_timeout = max(int(left - min(JOB_OVERHEAD_S, left / 4)), 1)
        job = self._job(run_v2, revision, target.image, interpreter, task_timeout)
        lro_polling = polling.DEFAULT_POLLING.with_delay(initial=min(self.poll_s, 1.0), maximum=max(self.poll_s, 1.0))

        try:
            await self._call(f"get job {job_name}", api.jobs.get_job, name=job_name, timeout=RUN_TIMEOUT_S,
                             passthrough=(gexc.NotFound,))
            exists = True
        except gexc.NotFound:
            exists = False
        if not exists:
            try:
                operation = await self._call(f"create job {job_name}", api.jobs.create_job, parent=parent, job=job,
                                             job_id=job_id, timeout=RUN_TIMEOUT_S, passthrough=(gexc.AlreadyExists,))
            except gexc.AlreadyExists:  # another validation of this service created it a moment ago
                exists = True
        if exists:
            job.name = job_name
            operation = await self._call(f"update job {job_name}", api.jobs.update_job, job=job, timeout=RUN_TIMEOUT_S)
        await self._call(f"{'update' if exists else 'create'} job {job_name}", operation.result,
                         timeout=max(self._left(deadline), 1.0), polling=lro_polling)

        started = datetime.now(UTC)
        request = run_v2.RunJobRequest(name=job_name, overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(
                name=JOB_CONTAINER, args=["-c", script],
                env=[run_v2.EnvVar(name=BUDGET_ENV, value=f"{max(task_timeout - 5, 1)}")],
            )],
            task_count=1,
            timeout={"seconds": task_timeout},
        ))
        run_op = await self._call(f"run job {job_name}", api.jobs.run_job, request=request, timeout=RUN_TIMEOUT_S)
        execution_name = run_op.metadata.name if run_op.metadata is not None else ""
        if not execution_name:
            current = await self._call(f"get job {job_name}", api.jobs.get_job, name=job_name, timeout=RUN_TIMEOUT_S)
            execution_name = current.latest_created_execution.name
        execution_id = short(execution_name)
        where = f"{where}, execution {execution_id}"

        execution = await self._wait(api, execution_name, deadline)
        if execution is None:
            await self._cancel(api, execution_name)
            raise _ProbeFailed(f"execution {execution_id} did not finish within the check's budget; cancelled it", FIX_TIMEOUT)
        sent = job.template.template.containers[0].image
        ran = execution.template.containers[0].image if execution.template.containers else ""
        if not _same_image(ran, sent):
            raise _ProbeFailed(f"expected execution {execution_id} to run {sent}, it ran {ran} "
                               f"(another validation of {target.service} updated the job meanwhile)", FIX_RACE)
        completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
        message = completed.message if completed is not None else ""
        if execution.cancelled_count or (completed is not None and completed.execution_reason.name == "CANCELLED"):
            raise _ProbeFailed(f"execution {execution_id} was cancelled" + (f": {message}" if message else ""), FIX_CANCELLED)
        succeeded = execution.succeeded_count >= max(execution.task_count, 1)
        if not succeeded and "timeout" in message.lower():
            raise _ProbeFailed(f"execution {execution_id} timed out after {task_timeout} s: {message}", FIX_TIMEOUT)

        lines = await self._result_lines(target, job_id, execution_id, started, deadline)
        if any(line.startswith(RESULT_MARKER) for line in lines):
            return ProbeRun(0 if succeeded else 1, "\n".join(lines), where=where)
        if succeeded:
            raise _ProbeFailed(f"execution {execution_id} succeeded but no {RESULT_MARKER} line reached Cloud Logging after "
                               f"{self.log_attempts} tries", FIX_NO_LINE)
        hint, fix = _failure(message, interpreter, sent)
        raise _ProbeFailed(f"execution {execution_id} failed before the probe reported: {message or 'no message'}{hint}", fix)

    def _job(self, run_v2: Any, revision: Any, image: str, interpreter: str, task_timeout: int) -> Any:
        """The job: the revision's image and resources (+ env, secrets, identity when copy_env), our command."""
        # Built bottom-up: proto-plus copies a message into its parent, so later edits to it would be lost.
        source = next((c for c in revision.containers if c.ports), None) or (revision.containers[0] if revision.containers else None)
        container = run_v2.Container(name=JOB_CONTAINER, image=image or (source.image if source else ""),
                                     command=[interpreter], args=_DEFAULT_TEMPLATE_ARGS)
        if source is not None:
            if source.resources.limits:
                container.resources = run_v2.ResourceRequirements(limits=dict(source.resources.limits))
            if source.working_dir:
                container.working_dir = source.working_dir
            if self.copy_env:
                container.env = list(source.env)
                container.volume_mounts = list(source.volume_mounts)
        template = run_v2.TaskTemplate(containers=[container], max_retries=0, timeout={"seconds": task_timeout})
        if self.copy_env:
            template.volumes = list(revision.volumes)
            if revision.service_account:
                template.service_account = revision.service_account
            if revision.vpc_access.connector or revision.vpc_access.network_interfaces:
                template.vpc_access = revision.vpc_access
        return run_v2.Job(labels={"managed-by": "postdeploy"},
                          template=run_v2.ExecutionTemplate(task_count=1, parallelism=1, template=template))

    async def _wait(self, api: _Clients, name: str, deadline: float) -> Any:
        """The finished execution, or None when the deadline (less time to read logs) came first."""
        reserve = self.log_attempts * self.log_wait_s / 2
        while True:
            execution = await self._call(f"get execution {name}", api.executions.get_execution, name=name,
                                         timeout=RUN_TIMEOUT_S)
            if execution.completion_time:
                return execution
            if self._left(deadline) - reserve <= self.poll_s:
                return None
            await asyncio.sleep(self.poll_s)

    async def _cancel(self, api: _Clients, name: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the task timeout stops it anyway
            await asyncio.to_thread(api.executions.cancel_execution, name=name, timeout=RUN_TIMEOUT_S)

    async def _result_lines(self, target: Target, job_id: str, execution: str, started: datetime,
                            deadline: float) -> list[str]:
        """The execution's probe lines from Cloud Logging, retried briefly while ingestion lags."""
        since = (started - LOG_LOOKBACK).strftime("%Y-%m-%dT%H:%M:%SZ")
        log_filter = " AND ".join([
            'resource.type="cloud_run_job"',
            f"resource.labels.job_name={filter_string(job_id)}",
            f"resource.labels.location={filter_string(target.region)}",
            f'labels."run.googleapis.com/execution_name"={filter_string(execution)}',
            f'timestamp>="{since}"',
            f"textPayload:{filter_string(RESULT_MARKER)}",
        ])
        client = await asyncio.to_thread(logging_client, target.project)
        last_error = ""
        for attempt in range(self.log_attempts):
            if attempt:
                if self._left(deadline) < self.log_wait_s:
                    break
                await asyncio.sleep(self.log_wait_s)
            try:
                lines = await asyncio.to_thread(_read_lines, client, target.project, log_filter)
            except Retryable as exc:
                last_error = str(exc)
                continue
            except AccessDenied as exc:
                raise AccessDenied(str(exc), fix=exc.fix or FIX_LOGS_ROLE) from exc
            if lines:
                return lines
        if last_error:
            raise _ProbeFailed(f"could not read the logs of execution {execution}: {last_error}", FIX_LOGS_API)
        return []


def _read_lines(client: Any, project: str, log_filter: str) -> list[str]:
    """Text payloads matching the filter, oldest first: one page of the newest 20, in one bounded request."""
    body = {"filter": log_filter, "orderBy": "timestamp desc", "pageSize": 20}
    answer = list_entries_page(client, project, body, LOG_READ_TIMEOUT_S, what="the probe's logs")
    entries = answer.get("entries", [])
    return [e["textPayload"] for e in reversed(entries) if isinstance(e, dict) and isinstance(e.get("textPayload"), str)]


def _same_image(ran: str, sent: str) -> bool:
    """The execution ran what we sent; a tag may come back resolved to a digest of the same repository."""
    if not ran or ran == sent:
        return True
    return "@" in ran and "@" not in sent and untagged(ran) == untagged(sent)


# Cloud Run's words for a container command that is not in the image ("failed to load /x/python: no such file or
# directory", 'error finding executable "python3" in PATH').
_NO_COMMAND = re.compile(r"no such file|not found|failed to (?:load|resolve)|executable", re.IGNORECASE)


def _failure(message: str, interpreter: str, image: str) -> tuple[str, str]:
    """(hint for the message, fix) for an execution that failed before the probe reported, read from Cloud Run's
    words here at the boundary: the check reads the fix, never the message."""
    by_hand = f"docker run --rm --entrypoint {interpreter} {image} -c 'import sys; print(sys.version)'"
    lowered = message.lower()
    if "memory" in lowered:
        return (" (out of memory: the job runs with the revision's memory limit)",
                f"find the import that needs more memory than the revision's limit: docker run --rm --memory=LIMIT "
                f"--entrypoint {interpreter} {image} -c 'import MODULE'")
    if "image" in lowered:
        return " (the image could not be pulled)", FIX_IMAGE
    if interpreter in message and _NO_COMMAND.search(message):
        return f" (no {interpreter} in the image)", f"{FIX_IMAGE_PYTHON} (docker run --rm --entrypoint sh {image} -c 'command -v python3')"
    return "", f"read the execution's logs in the Cloud Console (Cloud Run, Jobs), or run the probe by hand: {by_hand}"
