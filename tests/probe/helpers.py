"""What the golden-path and smoke tests share: one smoke run over a URL, and path and step builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from checks import smoke
from core.model import CheckContext, CheckResult, ServiceInfo, Target

TOKEN = "test-id-token"  # what the `sample` fixture accepts on /private and /ws/private
AGENT_EVENTS = ["agent_started", "agent_thinking", "agent_completed"]
PROMPT = [{"json": {"prompt": "hi"}}]


def run_smoke(url: str, paths: list[dict[str, Any]], *, token_source: Callable[[str], str] | None = None,
              secrets: Callable[[str], str] | None = None, deadline_in_s: float | None = None, cloud_run: bool = False,
              **settings: Any) -> CheckResult:
    """One smoke run over ``url``; ``cloud_run``: the URL is one the Cloud Run API returned (ID tokens may help)."""
    service = ServiceInfo("sample", "acme-prod", "us-central1", uri=url) if cloud_run else None

    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + deadline_in_s if deadline_in_s else 0.0
            ctx = CheckContext(http=http, token_source=token_source, secrets=secrets, deadline=deadline)
            config = smoke.Config.model_validate({"paths": paths, **settings})
            return await smoke.run(Target(service="sample", url=url, service_info=service), config, ctx)

    return asyncio.run(go())


def path(name: str, *steps: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"name": name, "steps": list(steps), **settings}


def http(path: str, **settings: Any) -> dict[str, Any]:
    return {"http": {"path": path, **settings}}


def ws(path: str = "/ws/agent", **settings: Any) -> dict[str, Any]:
    return {"websocket": {"path": path, "send": PROMPT, "expect_events": AGENT_EVENTS, "timeout_s": 3, **settings}}


def evidence(result: CheckResult, what_part: str) -> list[Any]:
    return [e for e in result.evidence if what_part in e.what]
