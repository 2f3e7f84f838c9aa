"""Publishing is I/O: store the rendered report, then tell Slack. Never loses the stored report."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import StorageUnavailable
from core.logs import log
from core.model import Build, Target
from core.redact import redact, register
from report import history, slack
from report.history import folder, rerun_of, safe
from report.render import render_html, render_json, render_markdown
from report.store import ReportStore

if TYPE_CHECKING:
    from core.config import NotifyRoute
    from core.model import SecretSource

INDEX_SCHEMA = "postdeploy.index/v1"
INDEX_SIZE = 100
# The links store_report returns.
REPORT_FILES = ("report.md", "report.html", "report.json", "latest.json", "index.json", "index.html")


def report_folder(target: Target, build: Build | None) -> str:
    """Where ``target``'s report of ``build`` is filed: the build's folder, or its rerun's, step's or follow-up's."""
    return folder(target.service, build.id if build else "", target.rerun.id if target.rerun else "")


def _marker(kind: str, target: Target, build: Build | None) -> str:
    return f"{report_folder(target, build)}/{kind}-{safe(target.revision or 'unresolved')}.txt"


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
    """Write the ``REPORT_FILES``; return their links. Storage faults propagate; what is optional (the index, the
    history page, the links between reports) is only logged when it fails: the report itself is never lost to it.

    Every object is written from the redacted report (make_report redacts it already; a report from anywhere
    else is redacted here, and a redacted one comes out the same). ``store`` may be a view handing out signed links
    (``with_link_ttl``): only report.html's link is signed, once; every object is written through the plain store.
    """
    report = redact(report)
    name, build_id, rerun = report["target"]["service"], report["build"]["id"], rerun_of(report)
    plain = store.with_link_ttl(0)
    service = safe(name)
    base = folder(name, build_id, rerun)
    as_json = render_json(report)
    html = f"{base}/report.html"
    # index.json keeps the authenticated link: a signed one would expire there, and it is a bearer credential.
    entry_links = {"report.html": plain.link(html)}
    # The index as it will be once this report is in it: where the report before this one is.
    expected = json.loads(index_with(_read(plain, f"{service}/index.json"), report, entry_links))
    nav = history.nav(name, expected, build_id, rerun)
    links = {
        "report.md": plain.write(f"{base}/report.md", render_markdown(report)),
        "report.html": plain.write(html, render_html(report, nav)),
    }
    links["report.json"] = plain.write(f"{base}/report.json", as_json)  # last: its presence means all three exist
    links["latest.json"] = plain.write(f"{service}/latest.json", as_json)
    written: list[str] = []  # the index text the compare-and-swap update landed

    def with_this(current: str | None) -> str:
        text = index_with(current, report, entry_links)
        written[:] = [text]
        return text

    try:
        links["index.json"] = plain.update(f"{service}/index.json", with_this)
    except StorageUnavailable as exc:
        # The reports are written; running every check again for one index line would be out of proportion.
        log("WARNING", f"index not updated: {exc}", build_id=build_id, service=name)
        links["index.json"] = links["index.html"] = f"(not updated: {exc})"
    else:
        index = json.loads(written[0])
        links["index.html"] = _history_page(plain, service, name)
        if (landed := history.nav(name, index, build_id, rerun)) != nav:  # another validation came in between
            _render_again(plain, name, base, landed, report)
        before, _ = history.neighbours(index["validations"], build_id, rerun)
        if before is not None:
            _render_again(plain, name, history.folder_of(name, before), history.nav(
                name, index, str(before.get("build_id") or ""), str(before.get("rerun") or "")))
    links["report.html"] = store.link(html)  # signed when the store is a signing view: the one link that is
    return links


def _read(store: ReportStore, name: str) -> str | None:
    try:
        return store.read(name)
    except StorageUnavailable:
        return None


def _history_page(store: ReportStore, service: str, name: str) -> str:
    """Write ``{service}/index.html`` from the index as stored when the write lands (a validation finishing meanwhile
    is on it too); its link, or why it was not written."""
    def page(_: str | None) -> str:
        return history.render_history(json.loads(store.read(f"{service}/index.json") or "{}"))

    try:
        return store.update(f"{service}/index.html", page)
    except Exception as exc:  # optional: the reports and the index are stored
        log("WARNING", f"history page not updated: {type(exc).__name__}: {exc}", service=name)
        return f"(not updated: {type(exc).__name__}: {exc})"


def _render_again(store: ReportStore, service: str, base: str, links: dict[str, str],
                  report: dict[str, Any] | None = None) -> None:
    """Render the page of the report in ``base`` again with ``links`` to its neighbours (``report``: the one just
    stored, else read back); a failure costs only those links, never this validation."""
    try:
        if report is None:
            text = store.read(f"{base}/report.json")
            if text is None:
                return
            report = json.loads(text)
        store.write(f"{base}/report.html", render_html(report, links))
    except Exception as exc:  # an older report the template cannot render, a refused write: only the links are lost
        log("WARNING", f"report {base} not linked to its neighbours: {type(exc).__name__}: {exc}", service=service)


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
        "commit": report["build"].get("commit", ""),
    }
    if rerun := rerun_of(report):  # a rerun is listed beside its build's first validation, not over it
        entry["rerun"] = rerun
    kept = [e for e in entries if isinstance(e, dict)
            and (e.get("build_id"), e.get("rerun")) != (entry["build_id"], entry.get("rerun"))]
    return json.dumps({"schema": INDEX_SCHEMA, "service": report["target"]["service"],
                       "validations": [entry, *kept][:INDEX_SIZE]}, indent=2, ensure_ascii=False) + "\n"


async def notify(report: dict[str, Any], link: str, adapters: Any, deadline: float,
                 routes: Sequence[NotifyRoute] = ()) -> str:
    """Post the Slack message to every configured route (``routes``: all of postdeploy.yaml's ``notify``) that
    wants this report, or, when none is configured, to the environment's webhook. Failures are logged and summarised
    in the answer, never raised: one webhook failing stops no other, and nothing here can lose the stored report."""
    if not routes:
        return await _notify_env(report, link, adapters, deadline)
    service, verdict = report["target"]["service"], report["verdict"]
    wanted = [route for route in routes if route.wants(service, verdict)]
    if not wanted:
        return f"not posted: none of the {len(routes)} routes wants a {verdict} of {service}"
    body = slack.message(report, link)
    urls = await asyncio.gather(*(_route_url(route, adapters.secrets, deadline) for route in wanted),
                                return_exceptions=True)
    outcomes: list[tuple[str, str]] = []  # (route label, how its delivery went)
    channels: dict[str, list[NotifyRoute]] = {}  # webhook URL → the routes that name it: one message per channel
    for route, url in zip(wanted, urls, strict=True):
        if isinstance(url, BaseException):
            outcomes.append((_label(route), _logged(report, f"webhook {_label(route)} unavailable", url)))
        else:
            channels.setdefault(url, []).append(route)
    deliveries = await asyncio.gather(*(slack.post(url, body, deadline) for url in channels), return_exceptions=True)
    for named, delivery in zip(channels.values(), deliveries, strict=True):
        label = "+".join(_label(route) for route in named)
        if isinstance(delivery, BaseException):  # a bug of ours: the other webhooks and the report still count
            outcomes.append((label, _logged(report, f"message to {label} not delivered", delivery)))
        elif delivery.ok:
            outcomes.append((label, "sent"))
        else:
            log("ERROR", f"Slack message to {label} not delivered: {delivery.detail}",
                build_id=report["build"]["id"], service=service)
            outcomes.append((label, f"failed ({delivery.detail})"))
            if delivery.status in GONE:  # rotated or revoked: read the secret again next time
                for route in named:
                    _webhooks.get(adapters.secrets, {}).pop(route.webhook_secret, None)
    sent = sum(1 for _, outcome in outcomes if outcome == "sent")
    # Written into the done marker: whatever Slack or a secret source said is redacted, the webhooks with it.
    return redact(f"sent to {sent} of {len(outcomes)} webhooks: " + ", ".join(f"{label} {outcome}" for label, outcome in outcomes))


async def _notify_env(report: dict[str, Any], link: str, adapters: Any, deadline: float) -> str:
    """POSTDEPLOY_SLACK_WEBHOOK[_SECRET]: the one webhook when postdeploy.yaml names no route."""
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


# Slack's answers for a webhook that no longer exists (403 invalid_token, 404 no_service, 410 channel_is_archived).
GONE = (403, 404, 410)
# Webhook URLs read from Secret Manager, per secret source and version name, for the life of the instance.
_webhooks: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def _label(route: NotifyRoute) -> str:
    """A route by its secret's name (``projects/P/secrets/NAME/versions/V``): where the webhook is, not the webhook."""
    return route.webhook_secret.split("/")[3]


async def _route_url(route: NotifyRoute, source: SecretSource | None, deadline: float) -> str:
    """The route's webhook URL from the secret source (Secret Manager), read once per instance and registered
    with core.redact before anything can quote it."""
    if source is None:
        raise LookupError("no secret source to read it from")
    cached = _webhooks.setdefault(source, {})
    url = cached.get(route.webhook_secret)
    if url is None:
        url = await asyncio.wait_for(asyncio.to_thread(source, f"secret:{route.webhook_secret}"),
                                     max(1.0, deadline - time.monotonic()))
        if not url:
            raise ValueError(f"expected a webhook URL in {route.webhook_secret}, found an empty secret")
        cached[route.webhook_secret] = url
    register(url)
    return url


def _logged(report: dict[str, Any], what: str, exc: BaseException) -> str:
    log("ERROR", f"Slack {what}: {type(exc).__name__}: {exc}", build_id=report["build"]["id"], service=report["target"]["service"])
    return f"failed ({type(exc).__name__})"
