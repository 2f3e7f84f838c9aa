"""Find the revision a build created, the one it replaced, and the URL that reaches it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Protocol

from core.errors import AccessDenied, TargetNotFound
from core.model import Build, DeployIntent, RevisionInfo, ServiceInfo, Target, image_matches

BUILD_LABEL = "gcb-build-id"
# Revisions become Ready a little after the deploy step; the build's finish time bounds them.
WINDOW_SLACK = timedelta(seconds=30)


class RevisionSource(Protocol):
    """Where service and revision facts come from (Cloud Run Admin API, or the demo's own)."""

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo: ...

    def list_services(self, project: str, region: str) -> list[str]: ...

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]: ...


def pick_revision(
    revisions: list[RevisionInfo], service: ServiceInfo, intent: DeployIntent, build: Build
) -> tuple[RevisionInfo | None, str]:
    """Apply the matching rules in order of certainty; return the revision and the rule that matched."""
    newest_first = sorted(revisions, key=lambda r: r.create_time.timestamp() if r.create_time else 0.0, reverse=True)
    for r in newest_first:
        if r.labels.get(BUILD_LABEL) == build.id:
            return r, f"label {BUILD_LABEL}={build.id}"
    if intent.revision_suffix:
        wanted = f"{intent.service}-{intent.revision_suffix}"
        for r in newest_first:
            if r.name == wanted:
                return r, f"revision suffix {intent.revision_suffix}"
    image = intent.image or next(iter(build.images), "")
    for r in newest_first:
        if image_matches(r.image, image, build):
            return r, f"image {image}"
    if build.start_time:
        end = (build.finish_time or build.start_time + timedelta(hours=24)) + WINDOW_SLACK
        for r in newest_first:
            if r.create_time and build.start_time <= r.create_time <= end:
                return r, "created during the build"
    for r in newest_first:
        if r.name == service.latest_created_revision:
            return r, "latest created revision (no better evidence)"
    return None, ""


def previous_revision(revisions: list[RevisionInfo], service: ServiceInfo, new: RevisionInfo) -> str:
    """The revision that served before this one: another one taking traffic, else the newest older Ready one."""
    serving = [t.revision for t in service.traffic if t.revision and t.revision != new.name and t.percent > 0]
    if serving:
        return serving[0]
    older = [
        r for r in revisions
        if r.name != new.name and r.create_time and new.create_time and r.create_time < new.create_time
        and r.ready is not None and r.ready.state == "CONDITION_SUCCEEDED"
    ]
    older.sort(key=lambda r: r.create_time.timestamp() if r.create_time else 0.0, reverse=True)
    return older[0].name if older else ""


def url_for(service: ServiceInfo, revision: str, intent: DeployIntent) -> str:
    """A tag URL (it reaches exactly this revision), else the service URL when the revision takes traffic, else ""."""
    tagged = [t for t in service.traffic if t.revision == revision and t.uri]
    for t in sorted(tagged, key=lambda t: t.tag != intent.tag):
        return t.uri
    if service.percent_for(revision) > 0 and service.uri:
        return service.uri
    return ""


def resolve(intent: DeployIntent, build: Build, source: RevisionSource, default_region: str = "",
            revision: str = "") -> Target:
    """Resolve a deploy intent (or an explicit revision) to a Target; unresolvable ones carry ``problem``.

    Transient API errors propagate (RunApiUnavailable) so the message is redelivered.
    """
    project = intent.project or build.project_id
    region = intent.region or default_region
    base = Target(service=intent.service, project=project, region=region, intent=intent)
    if "$" in intent.service:
        return replace(base, problem=f"the build names its service with a shell variable ('{intent.service}') that postdeploy "
                       "cannot expand; name it literally in the deploy step or set _SERVICE_NAME")
    if not project or not region:
        missing = "project" if not project else "region"
        return replace(base, problem=f"could not tell the {missing} of service '{intent.service}' from build {build.id}; "
                       "set defaults.region in postdeploy.yaml or deploy with --region")
    try:
        return _resolve(base, intent, build, source, revision)
    except AccessDenied as exc:
        return replace(base, problem=str(exc))


def _resolve(base: Target, intent: DeployIntent, build: Build, source: RevisionSource, revision: str) -> Target:
    project, region = base.project, base.region
    try:
        service = source.get_service(project, region, intent.service)
    except TargetNotFound:
        try:
            others = source.list_services(project, region)
        except TargetNotFound:
            others = []
        found = ", ".join(others[:10]) if others else "no services"
        return replace(base, problem=f"service '{intent.service}' not found in {region} of {project} (found: {found})")
    revisions = source.list_revisions(project, region, intent.service)
    if revision:
        new = next((r for r in revisions if r.name == revision), None)
        rule = "revision given on the command line"
    else:
        new, rule = pick_revision(revisions, service, intent, build)
    if new is None:
        names = ", ".join(r.name for r in revisions[:10]) or "none"
        return replace(base, service_info=service,
                       problem=f"no revision of '{intent.service}' matches build {build.id} (revisions: {names})")
    return replace(
        base,
        revision=new.name,
        previous_revision=previous_revision(revisions, service, new),
        url=url_for(service, new.name, intent),
        image=new.image,
        match_rule=rule,
        revision_info=new,
        service_info=service,
    )
