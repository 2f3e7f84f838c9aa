"""HTTP to the revision under test, shared by the checks that probe it: ID tokens and capped, same-origin exchanges."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from core.model import CheckContext, CheckResult, Status, Target

MAX_REDIRECTS = 5
CLOUD_RUN_DOMAIN = ".run.app"
# What lets postdeploy reach a revision that takes no traffic: the service URL reaches the one that does.
NO_URL_FIX = "deploy with --no-traffic --tag=NAME so postdeploy can reach the new revision through its tag URL"


class Refused(Exception):
    """A response we will not read further (foreign redirect, oversize body, too many redirects)."""


def no_url(target: Target) -> CheckResult:
    """SKIPPED: nothing reaches the revision (it takes no traffic and has no tag URL); the service URL would reach another."""
    if target.intent is not None and target.intent.no_traffic:
        why = (f"revision {target.revision} was deployed with --no-traffic and has no tag URL (the service URL reaches "
               f"{target.previous_revision or 'another revision'})")
    elif target.revision:
        why = f"revision {target.revision} takes no traffic and has no tag URL"
    else:
        why = "no URL"
    return CheckResult(Status.SKIPPED, f"nothing to probe: {why}", next_steps=[NO_URL_FIX] if target.revision else [])


def audience(target: Target) -> str:
    """The audience of an ID token for the target: Cloud Run accepts the service's own URL, also for a tag URL."""
    return target.service_info.uri if target.service_info and target.service_info.uri else target.url


def token_may_help(url: str, target: Target) -> bool:
    """Whether a Google ID token can open ``url``: a Cloud Run host (``*.run.app``, or one the Cloud Run API returned
    for this service). Anywhere else a 401/403 is the answer it is, and no credentials are looked up for it."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    if host.endswith(CLOUD_RUN_DOMAIN):
        return True
    service = target.service_info
    known = [service.uri, *(t.uri for t in service.traffic)] if service else []
    return any((urlsplit(u).hostname or "").lower() == host for u in known if u)


async def fetch_token(ctx: CheckContext, for_audience: str) -> tuple[str | None, str]:
    """An ID token for the audience, or None and why not."""
    if ctx.token_source is None:
        return None, "no ID token source"
    try:
        return await asyncio.to_thread(ctx.token_source, for_audience), ""
    except Exception as exc:  # no metadata server, no key file: a reason, not a crash
        return None, f"could not get an ID token for {for_audience}: {type(exc).__name__}: {exc}"


def token_fix(for_audience: str) -> str:
    """How to let postdeploy call a private service."""
    return (f"give postdeploy credentials that can mint an ID token for {for_audience} (a service account; on a laptop "
            "`gcloud auth login` with a service-account key) and roles/run.invoker on the service")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def exchange(http: httpx.AsyncClient, request: httpx.Request, max_body_bytes: int) -> tuple[int, bytes]:
    """Send, following redirects on the same origin only, and read at most ``max_body_bytes`` (else Refused)."""
    origin = _origin(request.url)
    for _ in range(MAX_REDIRECTS + 1):
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.next_request is not None:
                if _origin(response.next_request.url) != origin:
                    raise Refused(f"redirect to another host refused: {response.next_request.url}")
                request = response.next_request
                continue
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_body_bytes:
                    raise Refused(f"body larger than {max_body_bytes} bytes (cap)")
            return response.status_code, bytes(body)
        finally:
            await response.aclose()
    raise Refused(f"more than {MAX_REDIRECTS} redirects")
