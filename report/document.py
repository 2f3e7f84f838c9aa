"""Assemble the report JSON (schema postdeploy.report/v1), the source of truth for every rendering."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from core.model import Build, Evidence, Outcome, Target
from core.redact import names_secret, redact, secret_value
from report.changes import target_changes
from report.rollback import moved_back
from report.score import Scored, check_score

SCHEMA = "postdeploy.report/v1"
VERSION = "0.1.0"
# The field an evidence item shows the value of: "JSON password", "smoke/login: JSON token of POST /login", "message key".
_FIELD = re.compile(r"(?:JSON|message) ([\w.\-]+)")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _evidence(e: Evidence) -> dict[str, Any]:
    measured = _json_safe(e.measured)
    field = _FIELD.search(e.what)
    if isinstance(measured, str) and field and names_secret(field.group(1).rsplit(".", 1)[-1]):
        # The value of a field named like a secret, as found (quoted, when the check showed it as JSON).
        quoted = len(measured) > 1 and measured[0] == measured[-1] == '"'
        measured = f'"{secret_value(measured[1:-1])}"' if quoted else secret_value(measured)
    return {"what": e.what, "measured": measured, "threshold": _json_safe(e.threshold), "previous": _json_safe(e.previous),
            "ok": e.ok}


def next_steps(target: Target, scored: Scored, outcomes: list[Outcome], actions: list[dict[str, Any]] | None = None) -> list[str]:
    """What an on-call engineer should do next, most urgent first (no rollback command once postdeploy rolled back)."""
    steps: list[str] = []
    rolled_back = moved_back(actions)
    if rolled_back:
        steps.append(f"traffic is back on {target.previous_revision}: fix {target.revision} and deploy again")
    elif scored.verdict.value == "FAIL" and target.previous_revision and target.region:
        project = f" --project={target.project}" if target.project else ""
        steps.append(f"roll back: gcloud run services update-traffic {target.service} "
                     f"--to-revisions={target.previous_revision}=100 --region={target.region}{project}")
    for o in outcomes:
        if o.result.status.value in ("FAIL", "ERROR", "WARN"):
            steps += [s for s in o.result.next_steps if s not in steps]
    if target.problem:
        steps.append("check the service name and region the build deployed to, or set them in postdeploy.yaml")
    return steps


def make_report(target: Target, build: Build | None, scored: Scored, outcomes: list[Outcome],
                started_at: datetime, finished_at: datetime, actions: list[dict[str, Any]] | None = None,
                rerun: dict[str, Any] | None = None, service_before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the renderers, the store and Slack need, as plain JSON data, redacted (core.redact): every
    rendering, stored object, Slack message and table printed is made from this dict. ``service_before``: the
    service's own settings as the previous revision's report recorded them (ingress and the like have no history in
    the API), so their changes are listed too. ``rerun`` ({id, of}) marks a
    validation run again on demand, filed beside the stored report (report.publish.folder)."""
    return redact({
        "schema": SCHEMA,
        "score": scored.score,
        "verdict": scored.verdict.value,
        "summary": target.problem or (scored.reasons[0] if scored.reasons else "all checks passed"),
        "reasons": ([target.problem] if target.problem else []) + scored.reasons,
        "next_steps": next_steps(target, scored, outcomes, actions),
        "changes": target_changes(target, service_before),  # what changed since the previous revision (report.changes)
        "actions": actions or [],  # what postdeploy did about the verdict (report.rollback), each with its outcome
        "target": {
            "project": target.project, "region": target.region, "service": target.service,
            "revision": target.revision, "previous_revision": target.previous_revision,
            "url": target.url, "image": target.image, "match_rule": target.match_rule,
        },
        "build": {
            "id": build.id if build else "",
            "status": build.status if build else "",
            "trigger": (build.trigger_name or build.trigger_id) if build else "",
            "branch": build.branch if build else "",
            "commit": build.commit if build else "",
            "log_url": build.log_url if build else "",
        },
        "categories": [
            {"name": c.name, "weight": c.weight, "score": None if c.score is None else round(c.score, 2), "checks": c.checks}
            for c in scored.categories
        ],
        "not_assessed": scored.not_assessed,
        "missing_weight_share": scored.missing_weight_share,
        # postdeploy's own gaps: never scored, never the revision's fault; each with the fix.
        "not_measured": [
            {"check": u.check, "what": u.item.what, "why": u.item.why, "fix": u.item.fix, "critical": u.critical}
            for u in scored.not_measured
        ],
        "checks": [
            {
                "name": o.name, "category": o.category, "status": o.result.status.value,
                "score": check_score(o.result), "critical": o.critical, "summary": o.result.summary,
                "assessed": o.result.assessed,
                "evidence": [_evidence(e) for e in o.result.evidence],
                "reasons": o.result.reasons,
                "not_measured": [{"what": n.what, "why": n.why, "fix": n.fix} for n in o.result.not_measured],
                "duration_ms": o.duration_ms,
                **({"data": _json_safe(o.result.data)} if o.result.data else {}),  # what the report's pictures are drawn from
            }
            for o in outcomes
        ],
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "generator": {"name": "postdeploy", "version": VERSION},
        **({"rerun": rerun} if rerun else {}),
    })
