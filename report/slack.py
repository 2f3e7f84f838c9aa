"""Slack: build the Block Kit message (pure) and post it to an incoming webhook (I/O)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from core.redact import redact
from report.render import icon

MAX_REASONS = 3
MAX_ATTEMPTS = 4
DEFAULT_RETRY_AFTER_S = 1.0
WEBHOOK_ENV = "POSTDEPLOY_SLACK_WEBHOOK"
WEBHOOK_SECRET_ENV = "POSTDEPLOY_SLACK_WEBHOOK_SECRET"


def escape(text: str) -> str:
    """Slack mrkdwn control characters: a quoted body must not ping a channel or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def checked_again(report: dict[str, Any]) -> str:
    """What a report that is not the deploy's first validation is: "rerun", "step 2 of 3", "follow-up after 24h"."""
    rerun = report.get("rerun")
    if not isinstance(rerun, dict):
        return ""
    kind, check = rerun.get("kind", "rerun"), str(rerun.get("id", ""))
    if kind == "step":
        steps = next((len(a["rollout"]["steps"]) for a in report.get("actions", [])
                      if isinstance(a.get("rollout"), dict) and isinstance(a["rollout"].get("steps"), list)), 0)
        return f"step {rerun.get('step', '?')}" + (f" of {steps}" if steps else "")
    if kind == "follow-up":
        return f"follow-up after {check.removeprefix('follow-up-')}"
    return "rerun"  # validated again on demand, not after a build


def message(report: dict[str, Any], link: str) -> dict[str, Any]:
    """One Block Kit message: verdict, service/revision, score, categories, top reasons, link."""
    t = report["target"]
    again = checked_again(report)
    title = f"{icon(report['verdict'])} {report['verdict']} · {t['service']} · {report['score']:.1f}/100" + \
        (f" · {again}" if again else "")
    categories = " · ".join(
        f"{c['name']} {'n/a' if c['score'] is None else format(c['score'], 'g')}/{c['weight']:g}"
        for c in report["categories"]
    ) or "none assessed"
    reasons = [escape(r) for r in report["reasons"][:MAX_REASONS]]
    revision = f"`{escape(t['revision'])}`" if t["revision"] else "unknown"
    fields = [
        {"type": "mrkdwn", "text": f"*Service*\n`{escape(t['service'])}` {escape(t['region'])}"},
        {"type": "mrkdwn", "text": f"*Revision*\n{revision}"},
        {"type": "mrkdwn", "text": f"*Score*\n{report['score']:.1f}/100"},
        {"type": "mrkdwn", "text": f"*Build*\n`{escape(report['build']['id'] or 'none')}`"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": categories}]},
    ]
    if reasons:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {r}" for r in reasons)[:2900]}})
    for action in report.get("actions", []):  # what postdeploy did about it, and whether it worked
        text = f"*{escape(action['kind'])}: {escape(action['outcome'])}* — {escape(action['detail'])}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
    if link.startswith("http"):
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open report"}, "url": link}]})
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: {escape(link)}"}]})
    fallback = f"{report['verdict']} {t['service']} {t['revision']} {report['score']:.1f}/100" + \
        (f" ({again})" if again else "") + f" — {link}"
    return {"text": fallback, "blocks": blocks}


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

    The body is redacted first (core.redact), the webhook URL with it: nothing a report quoted reaches the channel."""
    body = redact(body, also=(url,))
    attempts = 0
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        while True:
            attempts += 1
            try:
                response = await client.post(url, json=body)
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
                    except ValueError:
                        wait = DEFAULT_RETRY_AFTER_S
                elif status >= 500:
                    wait = DEFAULT_RETRY_AFTER_S * attempts
                else:
                    return Delivery(False, status, attempts, f"Slack refused the message: {status} {text}")
            if attempts >= MAX_ATTEMPTS or time.monotonic() + wait > deadline:
                return Delivery(False, status, attempts, f"gave up after {attempts} attempts: {status or ''} {text}".strip())
            await asyncio.sleep(wait)
