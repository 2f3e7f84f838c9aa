"""Find the revision a build created, the one it replaced, and the URL that reaches it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.errors import AccessDenied, TargetNotFound
from core.model import Build, DeployIntent, RevisionInfo, ServiceInfo, Target, image_matches
from trigger.detect import built_images

BUILD_LABEL = "gcb-build-id"
# Cloud Run stamps a revision with its own clock, and a `--async` deploy step may end before the revision exists:
# revisions created this long after the build's finish time still count as created during the build.
WINDOW_SLACK = timedelta(seconds=30)
# A SUCCESS build carries its finish time; when it is missing or unreadable the window closes this long after the start.
OPEN_BUILD_WINDOW = timedelta(hours=24)
MAX_NAMES = 10  # services or revisions named in a "not found" problem
_NEVER = datetime.min.replace(tzinfo=UTC)


class RevisionSource(Protocol):
    """Where service and revision facts come from (Cloud Run Admin API, or the demo's own)."""

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo: ...

    def list_services(self, project: str, region: str) -> list[str]: ...

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]: ...


def _created(revision: RevisionInfo) -> datetime:
    """When the revision was created; one without a time sorts as the oldest."""
    return revision.create_time or _NEVER


def _is_ready(revision: RevisionInfo) -> bool:
    ready = revision.ready
    return ready is not None and ready.state == "CONDITION_SUCCEEDED"


def _during(revision: RevisionInfo, build: Build) -> bool:
    """Created between the build's start and its finish (plus WINDOW_SLACK)."""
    if build.start_time is None or revision.create_time is None:
        return False
    end = (build.finish_time or build.start_time + OPEN_BUILD_WINDOW) + WINDOW_SLACK
    return build.start_time <= revision.create_time <= end


def pick_revision(
    revisions: list[RevisionInfo], service: ServiceInfo, intent: DeployIntent, build: Build
) -> tuple[RevisionInfo | None, str]:
    """The revision the build created and the rule that found it; rules in order of certainty, the first that matches wins.

    1. ``label gcb-build-id=BUILD``: the newest revision carrying the build's id (console triggers and ``--labels``).
    2. ``revision suffix S``: the revision named ``SERVICE-S`` (``--revision-suffix``).
    3. ``image I``: a revision running the deployed image (``--image``; else any image the build pushed), tag or
       digest. Several revisions run the same image when a tag such as ``:latest`` is redeployed, so the newest one
       created during the build wins (rule text ``image I, created during the build``); only when none was, the
       newest running it. A newer revision created after the build (another deploy of the same tag) never beats one
       created during it.
    4. ``created during the build``: the newest revision created between the build's start and finish time
       (plus WINDOW_SLACK; OPEN_BUILD_WINDOW after the start when the build has no finish time).
    5. ``latest created revision``: the service's latest created revision, for want of better evidence.
    "Newest" is by create time, whatever order the revisions are listed in.
    """
    newest_first = sorted(revisions, key=_created, reverse=True)
    labelled = next((r for r in newest_first if r.labels.get(BUILD_LABEL) == build.id), None)
    if labelled:
        return labelled, f"label {BUILD_LABEL}={build.id}"
    # Without --revision-suffix this looks for "SERVICE-", a name no revision has.
    named = next((r for r in revisions if r.name == f"{intent.service}-{intent.revision_suffix}"), None)
    if named:
        return named, f"revision suffix {intent.revision_suffix}"
    during = [r for r in newest_first if _during(r, build)]
    images = (intent.image,) if intent.image else built_images(build)
    for pool, when in ((during, ", created during the build"), (newest_first, "")):
        for r in pool:
            image = next((i for i in images if image_matches(r.image, i, build)), None)
            if image:
                return r, f"image {image}{when}"
    if during:
        return during[0], "created during the build"
    latest = next((r for r in revisions if r.name == service.latest_created_revision), None)
    return (latest, "latest created revision (no better evidence)") if latest else (None, "")


def previous_revision(revisions: list[RevisionInfo], service: ServiceInfo, new: RevisionInfo) -> str:
    """The revision that served before ``new``: "" when none did.

    A Ready revision other than ``new`` that takes traffic, the highest share first (the newer one on a tie); else
    the newest Ready revision created before ``new`` that is not in the traffic statuses. Those statuses then hold
    only revisions at 0 % (tag-only candidates, reached by their tag URL), which never served.
    """
    in_traffic = {t.revision for t in service.traffic}
    others = [r for r in revisions if r.name != new.name and _is_ready(r)]
    serving = [r for r in others if service.percent_for(r.name) > 0]
    if serving:
        return max(serving, key=lambda r: (service.percent_for(r.name), _created(r))).name
    older = [r for r in others if _created(r) < _created(new) and r.name not in in_traffic]
    return max(older, key=_created).name if older else ""


def url_for(service: ServiceInfo, revision: str, intent: DeployIntent) -> str:
    """The URL that reaches exactly this revision, or "" when none does (the checks then say how to tag it).

    A tag URL, the intent's own tag first; else the service URL when the revision takes traffic and was not deployed
    with ``--no-traffic``: the service URL of an untagged ``--no-traffic`` revision reaches the one before it,
    whatever the traffic statuses say.
    """
    tagged = [t for t in service.traffic if t.revision == revision and t.uri]
    if tagged:
        return min(tagged, key=lambda t: t.tag != intent.tag).uri
    if intent.no_traffic or service.percent_for(revision) == 0:
        return ""
    return service.uri


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
        missing = "region" if project else "project"
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
        found = ", ".join(others[:MAX_NAMES]) or "no services"
        return replace(base, problem=f"service '{intent.service}' not found in {region} of {project} (found: {found})")
    revisions = source.list_revisions(project, region, intent.service)
    if revision:
        new = next((r for r in revisions if r.name == revision), None)
        rule = "revision given on the command line"
    else:
        new, rule = pick_revision(revisions, service, intent, build)
    if new is None:
        names = ", ".join(r.name for r in revisions[:MAX_NAMES]) or "none"
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
