"""deployment: the revision exists, is Ready, carries the intended traffic and runs the built image."""

from __future__ import annotations

from core.model import CheckContext, CheckResult, Evidence, Status, Target, image_matches
from core.schema import CheckSettings

NAME = "deployment"
CATEGORY = "Deployment"


class Config(CheckSettings):
    """Deployment is critical by default: a revision that is not Ready is a failed deploy."""

    critical: bool = True
    timeout_s: float = 30.0


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Judge the revision from the Cloud Run facts gathered at resolution."""
    revision, service = target.revision_info, target.service_info
    if revision is None or service is None:
        return CheckResult(Status.SKIPPED, "no Cloud Run revision data for this target (URL-only validation)")
    evidence: list[Evidence] = []
    failures: list[str] = []
    warnings: list[str] = []

    ready = revision.ready
    is_ready = revision.is_ready
    state = ready.state if ready else "no Ready condition"
    evidence.append(Evidence("Ready condition", state + (f": {ready.message}" if ready and ready.message else ""),
                             "CONDITION_SUCCEEDED", ok=is_ready))
    if not is_ready:
        failures.append(f"expected revision {revision.name} to be Ready, found {state}"
                        + (f" ({ready.message})" if ready and ready.message else ""))

    intent = target.intent
    percent = service.percent_for(revision.name)
    previous_percent = service.percent_for(target.previous_revision) if target.previous_revision else None
    if intent is not None and intent.no_traffic:
        traffic_ok = percent == 0
        evidence.append(Evidence("traffic share (deployed with --no-traffic)", f"{percent}%", "0%",
                                 f"{previous_percent}%" if previous_percent is not None else None, ok=traffic_ok))
        if not traffic_ok:
            warnings.append(f"expected no traffic on {revision.name} (--no-traffic), found {percent}%")
    else:
        traffic_ok = percent > 0
        evidence.append(Evidence("traffic share", f"{percent}%", "more than 0%",
                                 f"{previous_percent}%" if previous_percent is not None else None, ok=traffic_ok))
        if not traffic_ok:
            warnings.append(f"expected {revision.name} to serve traffic, found {percent}%")

    built = (intent.image if intent else "") or (next(iter(ctx.build.images), "") if ctx.build else "")
    if built:
        same = image_matches(revision.image, built, ctx.build) if ctx.build else revision.image == built
        evidence.append(Evidence("image", revision.image, built, ok=same))
        if not same:
            failures.append(f"expected image {built}, found {revision.image} on {revision.name}")
    else:
        evidence.append(Evidence("image", revision.image, "the build named no image", ok=None))

    judged = [e for e in evidence if e.ok is not None]
    score = sum(1 for e in judged if e.ok) / len(judged)
    if failures:
        return CheckResult(Status.FAIL, failures[0], evidence, score, reasons=failures + warnings,
                           next_steps=[f"gcloud run revisions describe {revision.name} --region {target.region}"])
    if warnings:
        return CheckResult(Status.WARN, warnings[0], evidence, score, reasons=warnings,
                           next_steps=[f"gcloud run services describe {target.service} --region {target.region}"])
    where = f"serves {percent}%" if percent else "takes no traffic (reachable by its tag URL)" if target.url \
        else "takes no traffic and has no tag URL"
    return CheckResult(Status.PASS, f"revision {revision.name} is Ready, {where}, runs {revision.image}", evidence, 1.0)
