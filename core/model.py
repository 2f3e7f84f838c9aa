"""Plain data shared by the pipeline, the checks and the report."""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # at run time they load with the checks that read logs and metrics, off the ack path
    from core.signals import LogSource, MetricSource, RevisionScope

_FRACTION = re.compile(r"(\.\d{6})\d+")


class Status(enum.StrEnum):
    """Outcome of one check."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


class Verdict(enum.StrEnum):
    """Outcome of a whole validation."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Step:
    """One Cloud Build step, as far as deploy detection needs it."""

    name: str = ""
    entrypoint: str = ""
    args: tuple[str, ...] = ()
    id: str = ""


@dataclass(frozen=True)
class Build:
    """The fields of a Cloud Build resource postdeploy reads."""

    id: str
    status: str
    project_id: str = ""
    create_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    steps: tuple[Step, ...] = ()
    images: tuple[str, ...] = ()
    image_digests: dict[str, str] = field(default_factory=dict)
    trigger_id: str = ""
    substitutions: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    log_url: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""

    @property
    def trigger_name(self) -> str:
        return self.substitutions.get("TRIGGER_NAME", "")

    @property
    def branch(self) -> str:
        return self.substitutions.get("BRANCH_NAME", "")

    @property
    def commit(self) -> str:
        return self.substitutions.get("COMMIT_SHA", "") or self.substitutions.get("REVISION_ID", "")


@dataclass(frozen=True)
class DeployIntent:
    """What a build said it deployed to Cloud Run: one per service."""

    service: str
    region: str = ""
    project: str = ""
    image: str = ""
    no_traffic: bool = False
    tag: str = ""
    revision_suffix: str = ""
    source: str = ""  # how it was detected, e.g. "step deploy: gcloud run deploy"


@dataclass(frozen=True)
class Condition:
    """A Cloud Run condition reduced to what a check reads."""

    type: str
    state: str  # CONDITION_SUCCEEDED, CONDITION_FAILED, CONDITION_PENDING, ...
    message: str = ""
    reason: str = ""


@dataclass(frozen=True)
class RevisionInfo:
    """A Cloud Run revision (short name) with the fields postdeploy uses."""

    name: str
    create_time: datetime | None = None
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    service_account: str = ""
    log_uri: str = ""
    # What it runs with, JSON-safe (sources.cloud_run.revision_config: image, resources, scaling, env, secrets, …),
    # compared by report.changes. Never a secret's value: an env var from Secret Manager is {"secret", "version"}.
    # Empty when the source reads no configuration (the demo's).
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> Condition | None:
        return next((c for c in self.conditions if c.type == "Ready"), None)

    @property
    def is_ready(self) -> bool:
        """The Ready condition succeeded."""
        ready = self.ready
        return ready is not None and ready.state == "CONDITION_SUCCEEDED"


@dataclass(frozen=True)
class TrafficInfo:
    """One entry of a service's traffic statuses."""

    revision: str  # short name; "" when the entry follows LATEST
    percent: int = 0
    tag: str = ""
    uri: str = ""
    latest: bool = False

    def serves(self, latest_ready: str) -> str:
        """The revision this entry routes to: its own, or for LATEST the latest ready one ("" when unknown)."""
        return self.revision or (latest_ready if self.latest else "")


@dataclass(frozen=True)
class ServiceInfo:
    """A Cloud Run service with the fields postdeploy uses (revision names are short)."""

    name: str
    project: str
    region: str
    uri: str = ""
    latest_created_revision: str = ""
    latest_ready_revision: str = ""
    traffic: tuple[TrafficInfo, ...] = ()

    def percent_for(self, revision: str) -> int:
        """Share of traffic the revision serves, counting LATEST entries for the latest ready one."""
        return sum(t.percent for t in self.traffic if t.serves(self.latest_ready_revision) == revision)


@dataclass(frozen=True)
class Target:
    """What one validation runs against."""

    service: str
    project: str = ""
    region: str = ""
    revision: str = ""
    previous_revision: str = ""
    url: str = ""
    image: str = ""
    match_rule: str = ""
    intent: DeployIntent | None = None
    revision_info: RevisionInfo | None = None
    service_info: ServiceInfo | None = None
    problem: str = ""  # set when the target could not be resolved
    rerun: Rerun | None = None  # set when validated again on demand: filed beside the stored report
    # What changed since the previous revision is compared in the report (report.changes.target_changes) from
    # ``revision_info.config``, this previous revision as listed with the new one (no call of its own: None when there
    # is none or it was not listed) and the service's own settings (ingress, …) as resolving read them.
    previous_info: RevisionInfo | None = None
    service_config: dict[str, Any] = field(default_factory=dict)

    def scope(self, revision: str | None = None) -> RevisionScope:
        """The target's revision, or another revision of its service, as a Logging or Monitoring query names it."""
        from core.signals import RevisionScope

        return RevisionScope(self.service, self.revision if revision is None else revision, self.project, self.region)


@dataclass(frozen=True)
class Evidence:
    """One measured fact behind a check's status."""

    what: str
    measured: Any = None
    threshold: Any = None
    previous: Any = None
    ok: bool | None = None


@dataclass(frozen=True)
class NotMeasured:
    """Something postdeploy could not measure, why, and what would let it: never the revision's fault, never scored."""

    what: str
    why: str
    fix: str = ""


@dataclass
class CheckResult:
    """What a check returns.

    Whose is it: PASS, WARN and FAIL judge what the revision did. ERROR is postdeploy's own failure (credentials,
    permissions, a missing interpreter or file, a Google API outage, a crash): the check was not measured, and
    ``not_measured`` says why and the fix. SKIPPED had nothing to measure (yet). Neither is ever scored as 0.
    ``score`` is the check's own 0–1 grade inside its status band (report.score places it there).
    """

    status: Status
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    # False when the check had nothing to do by configuration (no golden paths, no test results
    # uploaded): it is listed but left out of the rubric, like a disabled check, not counted as missing data.
    assessed: bool = True
    # Set when what the check found decides whether it is critical (a critical golden path or import failed,
    # a baseline revision exists for the logs); None: the check's ``critical`` setting decides.
    critical: bool | None = None
    # What postdeploy could not measure, also inside a result that judged the rest (a dropped probe, an unreadable file).
    not_measured: list[NotMeasured] = field(default_factory=list)
    # What a picture is drawn from, kept in report.json so it can be drawn again and compared: the window's
    # "timeline" (its probes, bounded), the logs' "signatures" (one row per error signature).
    data: dict[str, Any] = field(default_factory=dict)


def not_configured(summary: str) -> CheckResult:
    """SKIPPED because nothing was asked of the check: listed in the report, left out of the score."""
    return CheckResult(Status.SKIPPED, summary, assessed=False)


def cannot_measure(what: str, why: str, fix: str = "", evidence: list[Evidence] | None = None, *,
                   critical: bool | None = None) -> CheckResult:
    """ERROR: postdeploy could not measure ``what``; listed with the fix, never scored, never a reason to roll back."""
    return CheckResult(Status.ERROR, why, evidence if evidence is not None else [Evidence(what, why, ok=False)],
                       reasons=[why], critical=critical, not_measured=[NotMeasured(what, why, fix)])


@dataclass
class Outcome:
    """A check's result with what the report needs to place it."""

    name: str
    category: str
    critical: bool
    result: CheckResult
    duration_ms: int


TokenSource = Callable[[str], str]


@dataclass
class CheckContext:
    """Shared clients and facts handed to every check."""

    http: Any  # httpx.AsyncClient
    build: Build | None = None
    token_source: TokenSource | None = None
    deadline: float = 0.0  # time.monotonic() value the whole run must end by
    probe_runner: ProbeRunner | None = None
    artifacts: ArtifactSource | None = None
    secrets: SecretSource | None = None
    log_source: LogSource | None = None
    metric_source: MetricSource | None = None
    progress: Callable[[str, float], None] | None = None  # (what, fraction done): a CLI bar or log lines
    peers: Mapping[str, Any] = field(default_factory=dict)  # every check's config by name: window repeats health and smoke

    def budget_end(self, timeout_s: float, margin_s: float = 0.0) -> float:
        """The ``time.monotonic()`` by which a check starting now must be done: its own timeout or the run's
        deadline, whichever comes first, less ``margin_s`` to report in."""
        end = time.monotonic() + timeout_s - margin_s
        return min(end, self.deadline - margin_s) if self.deadline else end


@dataclass
class ProbeRun:
    """What running a probe script inside the target's image gave back: the probe ran, and its output is judged.

    A runner that could not run the probe raises PostdeployError with its ``fix`` (not measured). ``error`` is for
    other runners that report such a failure in the result instead: the probe's verdict is then unknown, never a pass.
    """

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    where: str = ""  # e.g. "local python /usr/bin/python3" or "Cloud Run job postdeploy-probe-orders"


class ProbeRunner(Protocol):
    """Runs a Python probe script in the deployed image (a Cloud Run job) or a local interpreter; raises
    PostdeployError (with ``fix``) when it cannot run it."""

    async def run(self, target: Target, interpreter: str, script: str, timeout_s: float) -> ProbeRun: ...


class ArtifactSource(Protocol):
    """Files a build left behind: gs://bucket/path objects, or local paths in local mode."""

    def find(self, pattern: str) -> list[str]:
        """Names matching a glob such as ``gs://b/results/BUILD/*.xml`` or ``reports/*.xml``."""
        ...

    def read(self, name: str, max_bytes: int) -> bytes:
        """At most ``max_bytes`` of one file."""
        ...


# Resolves a secret reference, "env:NAME" or "secret:projects/P/secrets/S/versions/V", to its value.
SecretSource = Callable[[str], str]


def untagged(image: str) -> str:
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def image_matches(revision_image: str, built_image: str, build: Build) -> bool:
    """Same image reference, or the revision pins the digest the build produced for that image."""
    if not revision_image or not built_image:
        return False
    if revision_image == built_image:
        return True
    digest = build.image_digests.get(built_image) or build.image_digests.get(untagged(built_image))
    return bool(digest) and revision_image == f"{untagged(built_image)}@{digest}"


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with up to nanoseconds, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def stamp(when: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``, as Cloud Logging writes a timestamp and its filters take one."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Rerun:
    """A validation again of the revision a stored report names, filed beside that report under ``id``."""

    id: str  # "rerun-…", "step-2", "follow-up-24h": the folder beside the original report; a retry runs it once
    revision: str
    previous_revision: str  # as the stored report named it: a later deploy must not become "the previous one"
    of: dict[str, Any]  # what the stored report said (verdict, score, finished_at, report link)
    kind: str = "rerun"  # "rerun" on demand; "step" of a promotion and "follow-up", scheduled through Cloud Tasks
    only: tuple[str, ...] = ()  # the checks that run (a step: window, logs, metrics); empty: every enabled one
    look_back_s: float = 0.0  # logs and metrics judge the revision's whole life up to this long (a follow-up)
    step: int = 0  # a step's number, from 1
    rollout: dict[str, Any] | None = None  # a step: the promotion the original report started (steps, base split)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``rerun`` entry."""
        extra = {"kind": self.kind, **({"step": self.step} if self.step else {})} if self.kind != "rerun" else {}
        return {"id": self.id, "of": self.of, **extra}

    def applied(self, target: Target, build: Build) -> Target:
        """The resolved target marked as this rerun, with the stored report's previous revision and saying where its
        revision came from; an unresolved one is only marked (it is still filed beside the stored report)."""
        if not target.revision:
            return replace(target, rerun=self)
        said = f"{self.of.get('verdict', '?')} {self.of.get('score', '?')}/100"
        return replace(target, rerun=self, previous_revision=self.previous_revision,
                       match_rule=f"the stored report of build {build.id} ({self.id}; that report said {said})")
