"""Where the in-image probe runs: ``LocalRunner`` (an interpreter on this machine) and ``CloudRunJobRunner``
(a Cloud Run job built from the revision, read back through Cloud Logging), both behind ``core.model.ProbeRunner``.

What the revision did comes back as a ``ProbeRun`` to judge. When the probe could not run or report (no such
interpreter, permission denied, the job timed out, the image could not be pulled, no result line reached the
logs) the runner raises a ``PostdeployError`` whose ``fix`` says what would let it: postdeploy's own problem,
never the revision's, never a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.backoff import Retryable
from core.errors import AccessDenied, PostdeployError, RunApiUnavailable
from core.model import Build, ProbeRun, Target, untagged
from probe.script import BUDGET_ENV, RESULT_MARKER
from sources.cloud_logging import list_entries_page
from sources.gcp import RUN_ENDPOINT_ENV, RUN_TIMEOUT_S, client_kwargs, filter_string, logging_client, short, with_credentials

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
FIX_RUN_ROLES = ("run deploy/deploy.sh again with --service SERVICE: it prepares the job postdeploy-probe-SERVICE, grants the "
                 "function a role on that job only and lets it act as the service's own account (a service that runs as the "
                 "Compute Engine default account also needs --runtime-sa with that account)")
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
    The function's service account needs, on that job only, to get, update, run (with overrides) and cancel its
    executions; actAs on the revision's service account when ``copy_env`` copies it; and logging.logEntries.list.
    deploy/deploy.sh --service SERVICE grants exactly that, and nothing project-wide.
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
            raise AccessDenied(f"permission denied on {what}; the function's service account needs a role on the job "
                               f"postdeploy-probe-SERVICE and actAs on the revision's service account ({exc.message})",
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
