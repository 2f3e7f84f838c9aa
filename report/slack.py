"""Slack: build the Block Kit message (pure) and post it to an incoming webhook (I/O).

Posting is hand-written on httpx, not slack_sdk's ``WebhookClient`` (read at 3.48), which would break three
guarantees. A second message: its default ``ConnectionErrorRetryHandler`` sends again after ``RemoteDisconnected``
or ``ConnectionResetError``, which come after the body went out, when Slack may have posted. The deadline: its
``RateLimitErrorRetryHandler`` sleeps ``int(Retry-After)`` with ``time.sleep`` whatever time is left (and raises on
"1.5"); the sync client blocks in urllib and sleep, in a thread nothing can cancel; the async one needs aiohttp.
The webhook: it logs ``req.full_url`` at INFO on every retry and at DEBUG on every send, through its own logger,
which core.redact never sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from core.redact import redact
from report.render import URL_SAFE, checked_again, https_only, icon, visible

# Block Kit's limits (https://api.slack.com/reference/block-kit): a longer text makes Slack refuse the whole message.
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
CONTEXT_MAX = 3000
URL_MAX = 3000
# What one message shows; the report has the rest.
MAX_REASONS = 3
MAX_EVIDENCE = 2  # rows under each reason: the ones that failed, in the check's order
MAX_GAPS = 6  # lines of "not measured"
MAX_ACTIONS = 5
REASON_MAX = 300  # characters of one reason or gap, escaped
VALUE_MAX = 120  # one measured / threshold / previous value, escaped
NAME_MAX = 200  # a service, revision, region, trigger or branch name
MORE_MAX = 40  # room kept in a section for "+N more in the report"
NOT_MEASURED = ("SKIPPED", "ERROR")
SHORT_SHA = 7

MAX_ATTEMPTS = 4
DEFAULT_RETRY_AFTER_S = 1.0
POST_TIMEOUT_S = 10.0
WEBHOOK_ENV = "POSTDEPLOY_SLACK_WEBHOOK"
WEBHOOK_SECRET_ENV = "POSTDEPLOY_SLACK_WEBHOOK_SECRET"
_URL_SAFE = URL_SAFE.replace("&", "")  # as in a Markdown link, but "&" is encoded too: mrkdwn reads it as an entity
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def escape(text: str) -> str:
    """Slack mrkdwn control characters: a quoted body must not ping a channel or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, never through an ``&amp;``-style entity."""
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[:limit - 1]) + "…"


def _one_line(value: Any) -> str:
    """On one line, bidirectional controls shown by name (as in the report pages), never applied."""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    return visible(_LINE_BREAKS.sub(" ", text).strip())


def _shown(value: Any, limit: int) -> str:
    """A value from the report as mrkdwn text: on one line, escaped, then clipped (so an escaped value fits too)."""
    return clip(escape(_one_line(value)), limit)


def _code(text: str) -> str:
    """A code span, or plain text when ``text`` holds a backtick (mrkdwn cannot escape one inside a span)."""
    shown = _shown(text, NAME_MAX)
    return f"`{shown}`" if text and "`" not in text else shown


def _link(url: str, text: str) -> str:
    """A mrkdwn link to an https URL with a host, every character that could end it encoded; else ``text`` alone."""
    if not https_only(url) or len(url) > URL_MAX:
        return text
    return f"<{escape(quote(url, safe=_URL_SAFE))}|{text}>"


def _fit(title: str, chunks: list[str], total: int) -> str:
    """``title`` and whole chunks while they fit one section, then how many of ``total`` were left for the report."""
    budget, lines = SECTION_MAX - MORE_MAX - len(title), [title]
    for chunk in chunks:
        if len(chunk) + 1 > budget:
            if len(lines) == 1:  # the first one always shows, cut to the room there is
                lines.append(clip(chunk, budget - 1))
            break
        lines.append(chunk)
        budget -= len(chunk) + 1
    if total > len(lines) - 1:
        lines.append(f"_+{total - len(lines) + 1} more in the report_")
    return "\n".join(lines)


def _header(report: dict[str, Any], again: str) -> str:
    """Verdict and score first; the service is what gives way to Block Kit's 150 characters, never the suffix
    (``again``: what checked_again says of the report)."""
    head = f"{icon(report['verdict'])} {report['verdict']} {report['score']:.1f}/100 · "
    tail = f" · {again}" if again else ""
    return head + clip(report["target"]["service"] or "unknown service", HEADER_MAX - len(head) - len(tail)) + tail


def _fields(report: dict[str, Any]) -> list[dict[str, str]]:
    t, b = report["target"], report["build"]
    service = _code(t["service"]) + (f" · {_shown(t['region'], NAME_MAX)}" if t["region"] else "")
    revision = _code(t["revision"]) if t["revision"] else "unknown"
    if t["previous_revision"]:
        revision += f"\nprevious {_code(t['previous_revision'])}"
    build = " · ".join(_shown(part, NAME_MAX) for part in (b["trigger"], b["branch"]) if part) or "manual"
    if b["id"]:
        build += f"\n{_code(b['id'])}"
    commit = _code(b["commit"][:SHORT_SHA]) if b["commit"] else "no commit"
    if b["log_url"]:
        commit += " · " + _link(b["log_url"], "build log")
    texts = [f"*Service*\n{service}", f"*Revision*\n{revision}", f"*Build*\n{build}", f"*Commit*\n{commit}"]
    return [{"type": "mrkdwn", "text": clip(text, FIELD_MAX)} for text in texts]


def _check_of(reason: str, checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The check a reason names first: "health: …", "capped at WARN, a check failed: smoke: …"."""
    best: tuple[int, dict[str, Any]] | None = None
    for c in checks:
        at = 0 if reason.startswith(f"{c['name']}: ") else reason.find(f": {c['name']}: ")
        if at >= 0 and (best is None or at < best[0]):
            best = (at, c)
    return best[1] if best else None


def _evidence(row: dict[str, Any]) -> str:
    """One deduction: what was measured, the threshold, and the previous revision's value where there is one."""
    parts = [f"measured {_shown(row.get('measured'), VALUE_MAX)}"]
    parts += [f"{key} {_shown(row[key], VALUE_MAX)}" for key in ("threshold", "previous") if row.get(key) is not None]
    return f"    ↳ {_shown(row.get('what', ''), VALUE_MAX)}: " + " · ".join(parts)


def _reasons(report: dict[str, Any]) -> str:
    """The first reasons, each with the evidence rows that failed; a reason that only lists gaps is shown with them."""
    reasons = [r for r in report["reasons"] if not r.startswith("not measured: ")]
    chunks = []
    for reason in reasons[:MAX_REASONS]:
        check = _check_of(reason, report["checks"])
        text = _shown(reason, REASON_MAX)
        name = escape(check["name"]) if check else ""
        if check and text.startswith(f"{name}: "):
            text = f"*{name}*{text[len(name):]}"
        failed = [row for row in (check or {}).get("evidence", []) if isinstance(row, dict) and row.get("ok") is False]
        chunks.append("\n".join([f"• {text}", *(_evidence(row) for row in failed[:MAX_EVIDENCE])]))
    return _fit("*Why*", chunks, len(reasons)) if reasons else ""


def _gaps(report: dict[str, Any]) -> str:
    """What postdeploy could not measure, check by check, with why and the fix: never the revision's fault."""
    items = [n for n in report.get("not_measured", []) if isinstance(n, dict)]
    lines = []
    for c in report["checks"]:
        if c["status"] in NOT_MEASURED:
            own = [n for n in items if n.get("check") == c["name"]]
            whys = [(n.get("why") or c["summary"], n.get("fix", "")) for n in own] or [(c["summary"], "")]
            lines += [f"{c['name']} ({c['status']}): {why}" + (f" — fix: {fix}" if fix else "") for why, fix in whys]
        else:  # a judged check that left part of its work out
            lines += [f"{c['name']}: {n.get('what', '')}: {n.get('why', '')}" + (f" — fix: {n['fix']}" if n.get("fix") else "")
                      for n in items if n.get("check") == c["name"]]
    shown = [f"• {_shown(line, REASON_MAX)}" for line in lines[:MAX_GAPS]]
    return _fit("*Not measured* (not scored)", shown, len(lines)) if lines else ""


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, CONTEXT_MAX)}]}


def message(report: dict[str, Any], link: str) -> dict[str, Any]:
    """One Block Kit message: verdict and score, where and what was deployed, the first reasons with their evidence,
    what was not measured, what postdeploy did about it, and the link to the report. Every text from the report is
    escaped and every text fits Block Kit's limits."""
    t = report["target"]
    again = checked_again(report)
    categories = " · ".join(
        f"{escape(c['name'])} {'n/a' if c['score'] is None else format(c['score'], 'g')}/{c['weight']:g}"
        for c in report["categories"]
    ) or "none assessed"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _header(report, again), "emoji": True}},
        {"type": "section", "fields": _fields(report)},
        _context(categories),
    ]
    blocks += [_section(text) for text in (_reasons(report), _gaps(report)) if text]
    actions = report.get("actions", [])
    for action in actions[:MAX_ACTIONS]:  # what postdeploy did about it, and whether it worked
        blocks.append(_section(f"*{escape(action['kind'])}: {escape(action['outcome'])}* — {escape(action['detail'])}"))
    if len(actions) > MAX_ACTIONS:
        blocks.append(_context(f"+{len(actions) - MAX_ACTIONS} more actions in the report"))
    if link.startswith("http") and len(link) <= URL_MAX:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open report"}, "url": link}]})
    else:
        blocks.append(_context(f"Report: {escape(link)}"))
    fallback = f"{report['verdict']} {t['service']} {t['revision']} {report['score']:.1f}/100" + \
        (f" ({again})" if again else "") + f" — {link}"
    return {"text": escape(fallback), "blocks": blocks}


@dataclass
class Delivery:
    """How a post went; ``detail`` never contains the webhook URL."""

    ok: bool
    status: int | None
    attempts: int
    detail: str = ""


def webhook_url() -> str:
    """POSTDEPLOY_SLACK_WEBHOOK, or the Secret Manager version named by POSTDEPLOY_SLACK_WEBHOOK_SECRET."""
    url = os.environ.get(WEBHOOK_ENV, "")
    if url:
        return url
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "")
    if secret:
        from sources.gcp import secret_value

        return secret_value(secret)
    return ""


async def post(url: str, body: dict[str, Any], deadline: float) -> Delivery:
    """POST once; on 429 wait Retry-After and on 5xx back off, both only while the deadline allows.

    The body is redacted first (core.redact), the webhook URL with it: nothing a report quoted reaches the channel.
    Only a refused connection is tried again without an answer: after a timeout or a dropped connection Slack may
    have posted the message already, and a second one is worse than none."""
    body = redact(body, also=(url,))
    attempts = 0
    async with httpx.AsyncClient(follow_redirects=False) as client:
        while True:
            attempts += 1
            timeout = max(1.0, min(POST_TIMEOUT_S, deadline - time.monotonic()))
            try:
                response = await client.post(url, json=body, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing reached Slack: safe to retry
                status, text, wait = None, f"{type(exc).__name__}", DEFAULT_RETRY_AFTER_S * attempts
            except httpx.HTTPError as exc:  # Slack may have posted it already: never risk a second message
                return Delivery(False, None, attempts, f"no answer from Slack ({type(exc).__name__}); not retried")
            else:
                status, text = response.status_code, response.text[:200]
                if 200 <= status < 300:
                    return Delivery(True, status, attempts)
                if status == 429:
                    try:
                        wait = float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER_S))
                    except ValueError:  # an HTTP date: Slack sends seconds, so this is a proxy; wait the default
                        wait = DEFAULT_RETRY_AFTER_S
                    if not wait >= 0:  # negative or NaN
                        wait = DEFAULT_RETRY_AFTER_S
                elif status >= 500:
                    wait = DEFAULT_RETRY_AFTER_S * attempts
                else:
                    return Delivery(False, status, attempts, f"Slack refused the message: {status} {text}")
            if attempts >= MAX_ATTEMPTS or time.monotonic() + wait > deadline:
                said = " ".join(str(part) for part in (status, text) if part)
                return Delivery(False, status, attempts, f"gave up after {attempts} attempts: {said}")
            await asyncio.sleep(wait)
