"""One validation path for the function, `replay`, `validate` and `demo`: event → target → checks → report."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from core.config import Config, Settings
from core.errors import Transient
from core.logs import log
from core.model import Build, CheckContext, DeployIntent, Target, TokenSource
from core.resolve import RevisionSource, resolve
from core.schema import FUNCTION_TIMEOUT_S


@dataclass
class Adapters:
    """The I/O a validation needs, created lazily so filtered messages import no SDK."""

    revisions: Callable[[], RevisionSource]
    store: Callable[[], Any]  # -> report.store.ReportStore
    webhook: Callable[[], str]
    token_source: TokenSource | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self, name)()
        return self._cache[name]

    @classmethod
    def from_env(cls, reports: str | None = None) -> Adapters:
        """Real adapters: Cloud Run Admin API, POSTDEPLOY_REPORTS, the Slack webhook, ID tokens."""
        from core.gcp import RunRevisionSource, fetch_id_token
        from report.slack import webhook_url
        from report.store import open_store

        return cls(revisions=RunRevisionSource, store=lambda: open_store(reports), webhook=webhook_url,
                   token_source=fetch_id_token)


@dataclass
class Validation:
    """One validated target: its report and where it was written."""

    report: dict[str, Any]
    links: dict[str, str]
    slack: str = ""


def run(build: Build, intents: list[DeployIntent], config: Config, adapters: Adapters) -> list[Validation]:
    """Validate a candidate build synchronously (the function and `replay`); duplicates are dropped."""
    return [v for v in asyncio.run(validate_build(build, intents, config, adapters)) if v is not None]


async def validate_build(build: Build, intents: list[DeployIntent], config: Config,
                         adapters: Adapters) -> list[Validation | None]:
    """Validate every service the build deployed; a None entry is a duplicate delivery."""
    return list(await asyncio.gather(*(
        validate_intent(build, intent, config.for_service(intent.service), adapters) for intent in intents
    )))


async def validate_intent(build: Build, intent: DeployIntent, settings: Settings, adapters: Adapters,
                          revision: str = "") -> Validation | None:
    """Resolve, claim, check, score, store and notify for one service."""
    started = datetime.now(UTC)
    deadline = time.monotonic() + settings.deadline_s
    source = adapters.get("revisions")
    target = await asyncio.to_thread(resolve, intent, build, source, settings.region, revision)
    log("INFO", f"validating {target.service} revision {target.revision or '?'} ({target.match_rule or target.problem})",
        build_id=build.id, service=intent.service)
    return await validate_target(target, build, settings, adapters, deadline, started)


async def validate_target(target: Target, build: Build | None, settings: Settings, adapters: Adapters,
                          deadline: float, started: datetime | None = None) -> Validation | None:
    """Claim (build, revision) once, run the checks and publish; None when already claimed."""
    import httpx

    from checks import REGISTRY
    from core.runner import run_checks
    from report.document import make_report
    from report.publish import claim_name, notify, store_report
    from report.score import score

    started = started or datetime.now(UTC)
    store = adapters.get("store")
    claim = claim_name(target, build)
    if build is not None:
        token = f"{started.isoformat()} {uuid.uuid4()}"
        claimed = await asyncio.to_thread(store.claim, claim, token)
        if not claimed and await asyncio.to_thread(_abandoned, store, claim, target, build, started):
            log("WARNING", f"taking over {claim}: claimed over {FUNCTION_TIMEOUT_S:.0f} s ago and no report was written",
                build_id=build.id, service=target.service)
            await asyncio.to_thread(store.release, claim)
            claimed = await asyncio.to_thread(store.claim, claim, token)
        if not claimed:
            log("INFO", f"duplicate delivery: {claim} already claimed", build_id=build.id, service=target.service)
            return None
    try:
        outcomes = []
        if not target.problem:
            async with httpx.AsyncClient(follow_redirects=False) as http:
                ctx = CheckContext(http=http, build=build, token_source=adapters.token_source, deadline=deadline)
                outcomes = await run_checks(target, settings, REGISTRY, ctx)
        rubric = settings.rubric
        scored = score(outcomes, rubric.weights, rubric.thresholds.pass_, rubric.thresholds.warn)
        report = make_report(target, build, scored, outcomes, started, datetime.now(UTC))
        links = await asyncio.to_thread(store_report, store, report)
    except Transient:
        if build is not None:
            await asyncio.to_thread(store.release, claim)
        raise
    slack = await notify(report, links["report.html"], adapters, deadline + 20)
    log("INFO", f"{report['verdict']} {target.service} {report['score']}/100: {links['report.md']}",
        build_id=build.id if build else "", service=target.service, verdict=report["verdict"], score=report["score"])
    return Validation(report, links, slack)


def _abandoned(store: Any, claim: str, target: Target, build: Build, now: datetime) -> bool:
    """A claim whose run died: older than any live run can be (the function timeout) and no report.

    Pub/Sub redelivers a message whose function was killed mid-run; without this, that run's claim
    would turn the redelivery into a silent duplicate and the validation would be lost.
    """
    from report.publish import report_name

    text = store.read(claim) or ""
    try:
        claimed_at = datetime.fromisoformat(text.split(" ", 1)[0])
    except ValueError:
        return False
    too_old = (now - claimed_at).total_seconds() > FUNCTION_TIMEOUT_S
    return too_old and store.read(report_name(target.service, build.id)) is None


def manual_build(kind: str = "manual") -> Build:
    """A stand-in build for `validate`: reports still need an id to be filed under."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Build(id=f"{kind}-{stamp}", status="MANUAL")


def url_target(url: str, service: str) -> Target:
    """A target known only by its URL (`validate --url`)."""
    return replace(Target(service=service, url=url), match_rule="given URL")
