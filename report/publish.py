"""Publishing is I/O: store the rendered report, then tell Slack. Never loses the stored report."""

from __future__ import annotations

import json
from typing import Any

from core.errors import StorageUnavailable
from core.logs import log
from core.model import Build, Target
from core.redact import redact, register
from report import slack
from report.render import render_html, render_json, render_markdown
from report.store import ReportStore

INDEX_SCHEMA = "postdeploy.index/v1"
INDEX_SIZE = 100
REPORT_FILES = ("report.md", "report.html", "report.json", "latest.json", "index.json")  # the links store_report returns


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


def folder(service: str, build_id: str, rerun: str = "") -> str:
    """``{service}/{build_id}``: where one validation's objects live (under the store's prefix); a rerun's live in
    ``{service}/{build_id}/{rerun}``, beside the original's and never over them."""
    base = f"{_safe(service)}/{_safe(build_id or 'manual')}"
    return f"{base}/{_safe(rerun)}" if rerun else base


def rerun_of(report: dict[str, Any]) -> str:
    """The rerun id a report was made under ("" for a validation of a deploy)."""
    rerun = report.get("rerun")
    return str(rerun.get("id", "")) if isinstance(rerun, dict) else ""


def _marker(kind: str, target: Target, build: Build | None) -> str:
    rerun = target.rerun.id if target.rerun else ""
    return f"{folder(target.service, build.id if build else '', rerun)}/{kind}-{_safe(target.revision or 'unresolved')}.txt"


def done_name(target: Target, build: Build) -> str:
    """Written after the report and the message are out: later deliveries are duplicates."""
    return _marker("done", target, build)


def claim_name(target: Target, build: Build | None) -> str:
    """The create-only object that makes (build id, revision) run once; a rerun's, (build id, rerun id, revision)."""
    return _marker("claim", target, build)


def not_stored(reason: str) -> dict[str, str]:
    """What ``store_report`` returns when nothing could be stored: every link says why."""
    return dict.fromkeys(REPORT_FILES, f"(not stored: {reason})")


def store_report(store: ReportStore, report: dict[str, Any]) -> dict[str, str]:
    """Write the ``REPORT_FILES``; return their links. Storage faults propagate (an index not updated is only logged).

    Every object is written from the redacted report (make_report redacts it already; a report from anywhere
    else is redacted here, and a redacted one comes out the same)."""
    report = redact(report)
    service = _safe(report["target"]["service"])
    base = folder(report["target"]["service"], report["build"]["id"], rerun_of(report))
    as_json = render_json(report)
    links = {
        "report.md": store.write(f"{base}/report.md", render_markdown(report)),
        "report.html": store.write(f"{base}/report.html", render_html(report)),
    }
    links["report.json"] = store.write(f"{base}/report.json", as_json)  # last: its presence means all three exist
    links["latest.json"] = store.write(f"{service}/latest.json", as_json)
    try:
        links["index.json"] = store.update(f"{service}/index.json", lambda current: index_with(current, report, links))
    except StorageUnavailable as exc:
        # The reports are written; running every check again for one index line would be out of proportion.
        log("WARNING", f"index not updated: {exc}", build_id=report["build"]["id"], service=report["target"]["service"])
        links["index.json"] = f"(not updated: {exc})"
    return links


def index_with(current: str | None, report: dict[str, Any], links: dict[str, str]) -> str:
    """The service's index with this validation first (newest first, capped); a pure function of its inputs,
    so the store may apply it again on a newer index when another validation wrote first."""
    try:
        entries = json.loads(current)["validations"] if current else []
    except (ValueError, KeyError, TypeError):
        entries = []
    entry = {
        "build_id": report["build"]["id"], "revision": report["target"]["revision"], "verdict": report["verdict"],
        "score": report["score"], "finished_at": report["finished_at"], "report": links["report.html"],
    }
    if rerun := rerun_of(report):  # a rerun is listed beside its build's first validation, not over it
        entry["rerun"] = rerun
    kept = [e for e in entries if isinstance(e, dict)
            and (e.get("build_id"), e.get("rerun")) != (entry["build_id"], entry.get("rerun"))]
    return json.dumps({"schema": INDEX_SCHEMA, "service": report["target"]["service"],
                       "validations": [entry, *kept][:INDEX_SIZE]}, indent=2, ensure_ascii=False) + "\n"


async def notify(report: dict[str, Any], link: str, adapters: Any, deadline: float) -> str:
    """Post the Slack message when a webhook is configured; failures are logged, never raised."""
    build_id, service = report["build"]["id"], report["target"]["service"]
    try:
        url = adapters.get("webhook")
    except Exception as exc:  # a missing secret must not lose the stored report
        log("ERROR", f"Slack webhook unavailable: {type(exc).__name__}: {exc}", build_id=build_id, service=service)
        return f"webhook unavailable: {type(exc).__name__}"
    if not url:
        return "not configured"
    register(url)  # whatever quotes the webhook from now on (an error, a log line) shows [REDACTED]
    delivery = await slack.post(url, slack.message(report, link), deadline)
    if not delivery.ok:
        log("ERROR", f"Slack message not delivered: {delivery.detail}", build_id=build_id, service=service)
        return delivery.detail
    return "sent"
