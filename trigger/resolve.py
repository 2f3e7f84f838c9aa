"""Find the revision a build created, the one it replaced, and the URL that reaches it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from core.errors import AccessDenied, RequestRejected, TargetNotFound
from core.model import Build, DeployIntent, RevisionInfo, ServiceInfo, Target, image_matches
from trigger.detect import built_images

BUILD_LABEL = "gcb-build-id"
# Cloud Run stamps a revision with its own clock, and a `--async` deploy step may end before the revision exists:
# revisions created this long after the build's finish time still count as created during the build.
WINDOW_SLACK = timedelta(seconds=30)
# A SUCCESS build carries its finish time; when it is missing or unreadable the window closes this long after the start.
OPEN_BUILD_WINDOW = timedelta(hours=24)
MAX_NAMES = 10  # revisions named in a "no revision matches" problem
_NEVER = datetime.min.replace(tzinfo=UTC)
# A Cloud Run service name begins with a letter, does not end with a hyphen and holds only lowercase letters, digits and
# hyphens. The v2 Admin API creates names of fewer than 50 characters, but the v1 API allowed 63 (an RFC 1035 label) and
# such services still exist: anything up to 63 is looked up. Nothing else can be.
SERVICE_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
SERVICE_NAME_EXPECTED = "1 to 63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen"
# A region and a project go into the API's resource path: looser than Google's own rules (a project id has 6 to 30
# characters), strict enough that each stays one path segment the client accepts.
REGION = re.compile(r"[a-z][a-z0-9-]{0,62}")
REGION_EXPECTED = "lowercase letters, digits and hyphens, starting with a letter, such as us-central1"
PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PROJECT_EXPECTED = ("a project id or number (lowercase letters, digits and hyphens, after 'domain:' for a "
                    "domain-scoped one)")
MAX_QUOTED = 64  # characters of a name that cannot be one quoted in a problem
FILING_CHARS = 40  # characters of such a name kept, made safe, in the name its reports are filed under
_UNSAFE = re.compile(r"[^a-z0-9]+")


class RevisionSource(Protocol):
    """Where service and revision facts come from (Cloud Run Admin API, or the demo's own)."""

    def get_service(self, project: str, region: str, name: str) -> ServiceInfo: ...

    def list_revisions(self, project: str, region: str, service: str) -> list[RevisionInfo]: ...


@runtime_checkable
class ServiceSettingsSource(Protocol):
    """A RevisionSource that also knows the settings of a service it just read (ingress, …), without another call."""

    def service_config(self, project: str, region: str, name: str) -> dict[str, Any]: ...


def is_service_name(name: str) -> bool:
    """True when ``name`` can be a Cloud Run service's name (SERVICE_NAME)."""
    return SERVICE_NAME.fullmatch(name) is not None


def filing_name(service: str) -> str:
    """The name a service's reports are filed under: its own when it can be a Cloud Run service's; else its letters
    and digits, lower-cased and joined by hyphens, then ``_`` and a hash of the whole name. An object name never holds
    ``/``, ``.`` or a control character, two different names never share a folder, and since no service name holds
    ``_``, none shares a real service's folder either."""
    if is_service_name(service):
        return service
    readable = _UNSAFE.sub("-", service.lower()).strip("-")[:FILING_CHARS] or "invalid"
    return f"{readable}_{hashlib.sha256(service.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def quoted(name: str) -> str:
    """``name`` quoted for a problem: control characters escaped, at most MAX_QUOTED characters."""
    if len(name) > MAX_QUOTED:
        return f"{name[:MAX_QUOTED]!r}… ({len(name)} characters)"
    return repr(name)


def _name_problem(name: str) -> str:
    """Why ``name`` was not looked up."""
    if "$" in name:
        return (f"the build names its service with a shell variable ({quoted(name)}) that postdeploy cannot expand; "
                "name it literally in the deploy step or set _SERVICE_NAME")
    return f"service name {quoted(name)} cannot be a Cloud Run service: expected {SERVICE_NAME_EXPECTED}"


def _created(revision: RevisionInfo) -> datetime:
    """When the revision was created; one without a time sorts as the oldest."""
    return revision.create_time or _NEVER


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
    others = [r for r in revisions if r.name != new.name and r.is_ready]
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

    Transient API errors propagate (RunApiUnavailable) so the message is redelivered. The target also carries the
    previous revision as listed and the service's own settings, for report.changes: no call of their own.
    """
    project = intent.project or build.project_id
    region = intent.region or default_region
    base = Target(service=intent.service, project=project, region=region, intent=intent)
    if not is_service_name(intent.service):  # never looked up; filed under a name that is safe for an object
        return replace(base, service=filing_name(intent.service), problem=_name_problem(intent.service))
    if not project or not region:
        missing = "region" if project else "project"
        return replace(base, problem=f"could not tell the {missing} of service '{intent.service}' from build {build.id}; "
                       "set defaults.region in postdeploy.yaml or deploy with --region")
    if not REGION.fullmatch(region):
        return replace(base, problem=f"region {quoted(region)} of service '{intent.service}' cannot be a Cloud Run region: "
                       f"expected {REGION_EXPECTED}")
    if not PROJECT.fullmatch(project):
        return replace(base, problem=f"project {quoted(project)} of service '{intent.service}' cannot be a Google Cloud "
                       f"project: expected {PROJECT_EXPECTED}")
    try:
        return _resolve(base, intent, build, source, revision)
    except (AccessDenied, RequestRejected) as exc:
        return replace(base, problem=str(exc))


def _resolve(base: Target, intent: DeployIntent, build: Build, source: RevisionSource, revision: str) -> Target:
    project, region = base.project, base.region
    try:
        service = source.get_service(project, region, intent.service)
    except TargetNotFound:
        # Only the service asked for is named: the report must not list what else runs in the region.
        return replace(base, problem=f"service '{intent.service}' not found in {region} of {project}")
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
    previous = previous_revision(revisions, service, new)
    settings = source.service_config(project, region, intent.service) if isinstance(source, ServiceSettingsSource) else {}
    return replace(
        base,
        revision=new.name,
        previous_revision=previous,
        previous_info=next((r for r in revisions if r.name == previous), None) if previous else None,
        service_config=settings,
        url=url_for(service, new.name, intent),
        image=new.image,
        match_rule=rule,
        revision_info=new,
        service_info=service,
    )
