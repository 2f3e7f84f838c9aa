"""One validation path for the function, `replay`, `validate` and `demo`: event → target → checks → report."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from checks import REGISTRY
from core.act import act_on_verdict
from core.config import Config, Settings, duration_s
from core.errors import AccessDenied, Busy, PostdeployError, Transient
from core.logs import log
from core.model import ArtifactSource, Build, CheckContext, DeployIntent, ProbeRunner, Rerun, SecretSource, Target, TokenSource
from core.runner import run_checks
from core.schema import FUNCTION_TIMEOUT_S
from report.document import make_report
from report.publish import claim_name, done_name, not_stored, notify, report_folder, safe, store_report
from report.rollout import why_quiet
from report.score import score
from report.verdict_event import publish as publish_verdict
from trigger.resolve import RevisionSource, resolve

if TYPE_CHECKING:
    from core.signals import LogSource, MetricSource

# Slack may use a little of the function's margin after the checks' deadline (540 s timeout, ≤ 510 s deadline).
SLACK_GRACE_S = 20.0
# Checks that judge Cloud Run facts; with only a URL they are left out, not SKIPPED.
REVISION_CHECKS = ("deployment",)


@dataclass
class Adapters:
    """The I/O a validation needs, created lazily so filtered messages import no SDK."""

    revisions: Callable[[], RevisionSource]
    store: Callable[[], Any]  # -> report.store.ReportStore
    webhook: Callable[[], str]
    token_source: TokenSource | None = None
    # Per target: the Cloud Run job runner needs a revision and the service's copy_env setting.
    probe_runner: Callable[[Target, Settings], ProbeRunner | None] = lambda target, settings: None
    artifacts: Callable[[], ArtifactSource | None] = lambda: None
    secrets: SecretSource | None = None
    log_source: Callable[[Target, Settings], LogSource | None] = lambda target, settings: None
    metric_source: Callable[[Target, Settings], MetricSource | None] = lambda target, settings: None
    scheduler: Callable[[], Any] = lambda: None  # -> sources.tasks.CloudTasksScheduler | None (POSTDEPLOY_TASKS_QUEUE)
    post_slack: bool = True  # False: the CLI without --slack posts to no webhook and no route
    progress: Callable[[str, float], None] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self, name)()
        return self._cache[name]

    @classmethod
    def from_env(cls, reports: str | None = None) -> Adapters:
        """Real adapters: Cloud Run Admin API, POSTDEPLOY_REPORTS, the Slack webhook, ID tokens."""
        from report.slack import webhook_url
        from report.store import open_store
        from sources.artifacts import open_artifacts
        from sources.cloud_run import RunRevisionSource
        from sources.gcp import fetch_id_token, resolve_secret
        from sources.tasks import from_env as tasks_from_env

        return cls(revisions=RunRevisionSource, store=lambda: open_store(reports), webhook=webhook_url,
                   token_source=fetch_id_token, artifacts=open_artifacts, secrets=resolve_secret,
                   probe_runner=cloud_probe_runner, log_source=cloud_log_source(), metric_source=cloud_metric_source(),
                   progress=log_progress(), scheduler=tasks_from_env)


def cloud_probe_runner(target: Target, settings: Settings) -> ProbeRunner | None:
    """A Cloud Run job running the revision's image; none without a revision (URL-only validation)."""
    from probe.runners import CloudRunJobRunner

    return CloudRunJobRunner(copy_env=settings.check("imports").copy_env) if target.revision else None  # type: ignore[attr-defined]


def cloud_log_source() -> Callable[[Target, Settings], LogSource | None]:
    """Cloud Logging for a Cloud Run revision, none when only a URL is known; one source serves every validation,
    so its clients (and their credential lookup) are made once per Adapters."""

    def make() -> LogSource:
        from sources.cloud_logging import CloudLoggingSource

        return CloudLoggingSource()

    shared = functools.cache(make)
    return lambda target, settings: shared() if target.revision else None


def log_progress(every_s: float = 15.0) -> Callable[[str, float], None]:
    """Progress as log lines (the function has no terminal), at most one per ``every_s``."""
    last = [0.0]

    def report(what: str, done: float) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or done >= 1.0:
            last[0] = now
            log("INFO", f"progress {done:.0%}: {what}")

    return report


def cloud_metric_source() -> Callable[[Target, Settings], MetricSource | None]:
    """Cloud Monitoring for a Cloud Run revision, none when only a URL is known; one source serves every validation,
    so its client (and its credential lookup) is made once per Adapters."""

    def make() -> MetricSource:
        from sources.monitoring import CloudMonitoringSource

        return CloudMonitoringSource()

    shared = functools.cache(make)
    return lambda target, settings: shared() if target.revision and target.project else None


def local_probe_runner(python: str, cwd: str | None = None) -> Callable[[Target, Settings], ProbeRunner | None]:
    """Every probe in a local interpreter (`--python PATH`, the demo)."""
    from probe.runners import LocalRunner

    runner = LocalRunner(python=python, cwd=cwd)
    return lambda target, settings: runner


def local_log_source(path: str | Path) -> Callable[[Target, Settings], LogSource | None]:
    """Every revision's logs from one local file (`--log-file PATH`, the demo); entries naming no revision are the target's."""
    from sources.log_entries import FileLogSource

    return lambda target, settings: FileLogSource(path, default_revision=target.revision)


def token_per_audience(fetch: TokenSource | None) -> TokenSource | None:
    """``fetch`` asked once per audience, the token kept for the checks of one validation; a failure is not kept."""
    if fetch is None:
        return None
    lock = threading.Lock()  # the checks ask from worker threads at once: the first fetch serves them all
    tokens: dict[str, str] = {}

    def token(audience: str) -> str:
        with lock:
            if audience not in tokens:
                tokens[audience] = fetch(audience)
            return tokens[audience]

    return token


@dataclass
class Validation:
    """One validated target: its report and where it was written."""

    report: dict[str, Any]
    links: dict[str, str]
    slack: str = ""
    event: str = ""  # what became of the verdict event: "published ID", "not configured", or why not


def run(build: Build, intents: list[DeployIntent], config: Config, adapters: Adapters,
        problem: str = "") -> list[Validation]:
    """Validate a candidate build synchronously (the function and `replay`); duplicates are dropped.

    Every service is validated to the end even when another one fails; then the first Transient
    fault (else the first other error) is raised, so finished services are not lost to a retry.
    """
    results = _run_detached(validate_build(build, intents, config, adapters, problem))
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if isinstance(e, Transient)), errors[0])
    return [r for r in results if isinstance(r, Validation)]


def _run_detached(coro: Any) -> Any:
    """Run a coroutine to the end without waiting for worker threads a timed-out check left behind.

    ``asyncio.run`` joins the default executor on exit, so one hung blocking call (a slow listing,
    a stuck download) would hold the acknowledgement hostage past the function timeout. The stray
    thread finishes or dies with the instance; the result is already stored and sent.
    """
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="postdeploy")
    loop.set_default_executor(executor)
    try:
        return loop.run_until_complete(coro)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def validate_build(build: Build, intents: list[DeployIntent], config: Config, adapters: Adapters,
                         problem: str = "") -> list[Validation | BaseException | None]:
    """Validate every service the build deployed; None is a duplicate delivery, an exception a failed service."""
    return list(await asyncio.gather(*(
        validate_intent(build, intent, config.for_service(intent.service), adapters, problem=problem) for intent in intents
    ), return_exceptions=True))


async def validate_intent(build: Build, intent: DeployIntent, settings: Settings, adapters: Adapters,
                          revision: str = "", problem: str = "", rerun: Rerun | None = None) -> Validation | None:
    """Resolve, claim, check, score, store and notify for one service (``rerun``: the revision a stored report names)."""
    started = datetime.now(UTC)
    deadline = time.monotonic() + settings.deadline_s
    source = adapters.get("revisions")
    target = await asyncio.to_thread(resolve, intent, build, source, settings.region, rerun.revision if rerun else revision)
    if rerun:
        target = rerun.applied(target, build)
        settings = scheduled_settings(settings, rerun)
    if problem:  # an invalid config; the target's own problem (a name that cannot be a service, …) is kept after it
        target = replace(target, problem=f"{problem}; {target.problem}" if target.problem else problem)
    log("INFO", f"validating {target.service} revision {target.revision or '?'} ({target.match_rule or target.problem})",
        build_id=build.id, service=intent.service)
    return await validate_target(target, build, settings, adapters, deadline, started)


def run_rerun(build: Build, intent: DeployIntent, settings: Settings, adapters: Adapters, rerun: Rerun,
              problem: str = "") -> Validation | None:
    """Validate again synchronously (`rerun`, the HTTP entry points); None when this rerun id was already done.
    ``problem``: why the validation cannot judge (an invalid config): it is then INCONCLUSIVE and says so."""
    result: Validation | None = _run_detached(validate_intent(build, intent, settings, adapters, problem=problem,
                                                              rerun=rerun))
    return result


async def validate_target(target: Target, build: Build, settings: Settings, adapters: Adapters,
                          deadline: float, started: datetime | None = None) -> Validation | None:
    """Claim (build, revision) once, run the checks and publish; None when another delivery already did."""
    started = started or datetime.now(UTC)
    store = adapters.get("store")
    claim, done = claim_name(target, build), done_name(target, build)
    storage_problem = ""
    try:
        owned = await asyncio.to_thread(_claim, store, claim, done, started)
    except AccessDenied as exc:
        # Without the bucket there is no dedupe and no report, but Slack can still say what happened.
        log("ERROR", str(exc), build_id=build.id, service=target.service)
        owned, storage_problem = True, str(exc)
    if not owned:
        log("INFO", f"duplicate delivery: {claim} already done", build_id=build.id, service=target.service)
        return None
    try:
        report, links = await _check_and_store(target, build, settings, adapters, store, deadline, started, storage_problem)
    except BaseException:
        if not storage_problem:
            await asyncio.to_thread(store.release, claim)  # let a redelivery try again
        raise
    quiet = why_quiet(report, settings.follow_up_notify) or ("" if adapters.post_slack else "not posted: --slack not given")
    slack = quiet or await notify(report, links["report.html"], adapters, deadline + SLACK_GRACE_S, settings.routes)
    event = await publish_verdict(settings.verdict_topic, report, links["report.html"], deadline + SLACK_GRACE_S)
    if not storage_problem:
        try:
            await asyncio.to_thread(store.write, done,
                                    f"{datetime.now(UTC).isoformat()} slack: {slack}; verdict event: {event}")
        except PostdeployError as exc:  # the report and the message are out; a later duplicate may repeat them
            log("ERROR", f"could not mark {claim} done: {exc}", build_id=build.id, service=target.service)
    where = store.location(f"{report_folder(target, build)}/report.md")
    log("INFO", f"{report['verdict']} {target.service} {report['score']}/100: {where}",  # never a signed link
        build_id=build.id, service=target.service, verdict=report["verdict"], score=report["score"])
    return Validation(report, links, slack, event)


def _claim(store: Any, claim: str, done: str, now: datetime) -> bool:
    """True when this run owns the validation, False when an earlier one finished it.

    Raises Busy while another run may still be at work: Pub/Sub then redelivers later, and by then
    that run has finished (a duplicate, acked) or died (its claim is older than any live run can be,
    the function timeout, and is taken over). Nothing is lost and nothing is posted twice.
    """
    token = f"{now.isoformat()} {uuid.uuid4()}"
    if store.claim(claim, token):
        return True
    if store.read(done) is not None:
        return False
    held = store.read(claim)
    if held is None:
        return bool(store.claim(claim, token))
    try:
        age = (now - datetime.fromisoformat(held.split(" ", 1)[0])).total_seconds()
    except ValueError:
        age = FUNCTION_TIMEOUT_S + 1  # unreadable: no live run of ours wrote it
    if age <= FUNCTION_TIMEOUT_S:
        raise Busy(f"another delivery has been validating {claim} for {age:.0f} s; asking for redelivery")
    if not store.take_over(claim, held, token):
        raise Busy(f"another delivery took over {claim} first; asking for redelivery")
    log("WARNING", f"took over {claim}: claimed {age:.0f} s ago by a run that never finished")
    return True


async def _check_and_store(target: Target, build: Build, settings: Settings, adapters: Adapters, store: Any,
                           deadline: float, started: datetime, storage_problem: str) -> tuple[dict[str, Any], dict[str, str]]:
    outcomes = []
    if not target.problem:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            ctx = CheckContext(http=http, build=build, token_source=token_per_audience(adapters.token_source), deadline=deadline,
                               probe_runner=adapters.probe_runner(target, settings), artifacts=adapters.get("artifacts"),
                               secrets=adapters.secrets, log_source=adapters.log_source(target, settings),
                               metric_source=adapters.metric_source(target, settings), progress=adapters.progress,
                               peers={name: settings.check(name) for name in REGISTRY})
            outcomes = await run_checks(target, settings, REGISTRY, ctx)
    rubric = settings.rubric
    scored = score(outcomes, rubric.weights, rubric.thresholds.pass_, rubric.thresholds.warn)
    actions = await act_on_verdict(scored.verdict.value, target, settings, adapters, build, deadline + SLACK_GRACE_S,
                                   storage_problem)
    before = None if storage_problem else await asyncio.to_thread(service_settings_before, store, target)
    report = make_report(target, build, scored, outcomes, started, datetime.now(UTC), actions,
                         target.rerun.to_dict() if target.rerun else None, before)
    if storage_problem:
        return report, not_stored(storage_problem)
    try:
        view = store.with_link_ttl(duration_s(settings.signed_url_ttl) or 0)  # signed report links, when configured
        return report, await asyncio.to_thread(store_report, view, report)
    except AccessDenied as exc:
        log("ERROR", str(exc), build_id=build.id, service=target.service)
        return report, not_stored(str(exc))


def service_settings_before(store: Any, target: Target) -> dict[str, Any] | None:
    """The service's settings (ingress, …) as the last stored report of the previous revision recorded them; None
    when that report is not the previous revision's or cannot be read (the changes then leave them out)."""
    try:
        text = store.read(f"{safe(target.service)}/latest.json")
        last = json.loads(text) if text else None
    except (PostdeployError, ValueError):
        return None
    if not isinstance(last, dict) or (last.get("target") or {}).get("revision") != target.previous_revision:
        return None
    service = (last.get("changes") or {}).get("service")
    return service if isinstance(service, dict) else None


def manual_build(kind: str = "manual") -> Build:
    """A stand-in build for `validate`: reports still need an id to be filed under (unique per run)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Build(id=f"{kind}-{stamp}-{uuid.uuid4().hex[:6]}", status="MANUAL")


def url_target(url: str, service: str) -> Target:
    """A target known only by its URL (`validate --url`)."""
    return replace(Target(service=service, url=url), match_rule="given URL")


def url_settings(settings: Settings) -> Settings:
    """Checks that need Cloud Run facts are not assessed when only a URL is known."""
    return _changed(settings, {name: {"enabled": False} for name in REVISION_CHECKS})


def scheduled_settings(settings: Settings, rerun: Rerun) -> Settings:
    """A step's or a follow-up's settings: only its checks (``rerun.only``), and logs and metrics looking back over
    the revision's life up to ``rerun.look_back_s`` when that is longer than their own window."""
    if not rerun.only:
        return settings
    changes: dict[str, dict[str, Any]] = {name: {"enabled": False} for name in REGISTRY if name not in rerun.only}
    for name in ("logs", "metrics"):
        own: Any = settings.check(name)
        if name in rerun.only and rerun.look_back_s > own.max_window_s:
            changes[name] = {"max_window_s": rerun.look_back_s}
    return _changed(settings, changes)


def _changed(settings: Settings, changes: dict[str, dict[str, Any]]) -> Settings:
    current: Any = settings.checks  # a model built from the registry, opaque to mypy
    checks = current.model_copy(update={name: settings.check(name).model_copy(update=update)
                                        for name, update in changes.items()})
    return settings.model_copy(update={"checks": checks})
