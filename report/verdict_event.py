"""The verdict as an event: one ``postdeploy.verdict/v1`` Pub/Sub message per validation (building it is pure,
publishing is I/O). Pipelines subscribe to the topic instead of parsing Slack; the service is the ordering key, so
the verdicts of one service arrive in the order they were given."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from core.logs import log
from core.redact import redact
from report.history import rerun_of

SCHEMA = "postdeploy.verdict/v1"
MAX_REASONS = 3
PUBLISH_TIMEOUT_S = 30.0
_publisher: Any = None
_publisher_lock = threading.Lock()


def event(report: dict[str, Any], link: str) -> tuple[bytes, dict[str, str]]:
    """(JSON body, attributes) of the verdict message for a redacted report; ``link`` is the report's URL."""
    target, build = report["target"], report["build"]
    body = {
        "schema": SCHEMA,
        "service": target["service"], "region": target["region"], "project": target["project"],
        "revision": target["revision"], "previous_revision": target["previous_revision"],
        "build_id": build["id"], "commit": build["commit"],
        "verdict": report["verdict"], "score": report["score"],
        "reasons": report["reasons"][:MAX_REASONS],
        "report_url": link if link.startswith("http") else "",
        "actions": report.get("actions", []),
        "finished_at": report.get("finished_at", ""),
        "rerun": rerun_of(report),  # set when validated again: on demand (`rerun`), a step, a follow-up
    }
    attributes = {"service": target["service"], "revision": target["revision"], "verdict": report["verdict"],
                  "score": f"{report['score']:g}", "build_id": build["id"], "rerun": body["rerun"]}
    return json.dumps(redact(body), ensure_ascii=False).encode("utf-8"), {k: v for k, v in attributes.items() if v}


def _client() -> Any:
    """One publisher per instance (it batches and keeps ordering keys), made on first use."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            from sources.gcp import publisher_client

            _publisher = publisher_client()
        return _publisher


def _publish(topic: str, data: bytes, attributes: dict[str, str], key: str, timeout_s: float) -> str:
    client = _client()
    try:
        return str(client.publish(topic, data, ordering_key=key, **attributes).result(timeout=timeout_s))
    except Exception:
        client.resume_publish(topic, key)  # a failed message pauses its ordering key; the next verdict must still go
        raise


async def publish(topic: str, report: dict[str, Any], link: str, deadline: float) -> str:
    """Publish the verdict to ``topic`` (nothing when it is empty); what happened, in a few words. Never raises:
    the report and the Slack message are out already, and a redelivery would repeat them."""
    if not topic:
        return "not configured"
    data, attributes = event(report, link)
    timeout_s = max(min(PUBLISH_TIMEOUT_S, deadline - time.monotonic()), 1.0)
    try:
        message_id = await asyncio.to_thread(_publish, topic, data, attributes, report["target"]["service"], timeout_s)
    except Exception as exc:  # a missing topic, a refusal or an outage: logged, and the report says so
        detail = f"not published to {topic}: {type(exc).__name__}: {exc}"
        log("ERROR", f"verdict event {detail}", build_id=report["build"]["id"], service=report["target"]["service"])
        return detail
    return f"published {message_id}"
