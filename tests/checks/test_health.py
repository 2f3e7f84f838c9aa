"""health against the real sample service on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from checks import health
from core.model import CheckContext, CheckResult, Status, Target
from core.sample_service import SampleService

FAST = {"tries": 2, "interval_s": 0.0}


def probe(url: str, token_source: Any = None, **settings: Any) -> CheckResult:
    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            ctx = CheckContext(http=http, token_source=token_source)
            return await health.run(Target(service="sample", url=url), health.Config(**{**FAST, **settings}), ctx)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("settings", "status", "summary_part"),
    [
        ({"path": "/ok"}, Status.PASS, "/ok answered 200 on 2/2 tries"),
        ({"path": "/health", "expect_json": ['status == "healthy"', "checks.db exists"]}, Status.PASS, "2/2"),
        ({"path": "/health", "expect_json": ['status == "ok"']}, Status.FAIL, 'expected status == "ok" in /health, found "healthy"'),
        ({"path": "/health", "expect_json": ["missing.field exists"]}, Status.FAIL, "no such field"),
        ({"path": "/json?body=not-json", "expect_json": ["a exists"]}, Status.FAIL, "expected a JSON body"),
        ({"path": "/status/503"}, Status.FAIL, "expected status 200 from /status/503, got 503 after 2 tries"),
        ({"path": "/status/204", "expect_status": [204]}, Status.PASS, "answered 204"),
        ({"path": "/slow?ms=300", "latency_budget_ms": 100}, Status.WARN, "within 100 ms"),
        ({"path": "/slow?ms=3000", "request_timeout_s": 0.3}, Status.FAIL, "timed out after 0.3 s"),
        ({"path": "/drop"}, Status.FAIL, "connection failed"),
        ({"path": "/huge?bytes=2000000", "max_body_bytes": 1_000_000}, Status.FAIL, "body larger than 1000000 bytes"),
        ({"path": "/redirect-local"}, Status.PASS, "answered 200"),
        ({"path": "/missing"}, Status.FAIL, "got 404"),
    ],
    ids=["ok", "json-expectations", "json-mismatch", "json-missing-field", "not-json", "503", "204-expected",
         "slow-over-budget", "timeout", "dropped-connection", "huge-body", "same-host-redirect", "404"],
)
def test_health_against_sample_service(sample: SampleService, settings: dict[str, Any], status: Status,
                                       summary_part: str) -> None:
    result = probe(sample.url, **settings)
    assert result.status is status, result.summary
    assert summary_part in result.summary or any(summary_part in r for r in result.reasons), (result.summary, result.reasons)


def test_redirect_to_another_host_is_refused(sample: SampleService) -> None:
    with SampleService() as other:
        elsewhere = other.url.replace("127.0.0.1", "localhost") + "/ok"
        result = probe(sample.url, path=f"/redirect?to={elsewhere}")
        assert result.status is Status.FAIL
        assert f"redirect to another host refused: {elsewhere}" in result.summary
        assert other.requests == []


def test_latency_figures_cover_every_try(sample: SampleService) -> None:
    result = probe(sample.url, path="/slow?ms=120", tries=3)
    latency = next(e for e in result.evidence if e.what.startswith("latency"))
    median_ms, max_ms = (float(part.split()[0]) for part in latency.measured.split(" / "))
    assert 120 <= median_ms <= max_ms
    assert "of 3" in latency.what
    assert sum(1 for method, path in sample.requests if path.startswith("/slow")) == 3


def test_intermittent_failure_is_a_warning_with_a_fraction(sample: SampleService) -> None:
    async def flip_after_first() -> CheckResult:
        async with httpx.AsyncClient() as http:
            ctx = CheckContext(http=http)
            config = health.Config(path="/health", tries=4, interval_s=0.15, expect_json=['status == "healthy"'])
            task = asyncio.create_task(health.run(Target(service="s", url=sample.url), config, ctx))
            await asyncio.sleep(0.2)
            sample.mode = "broken"
            return await task

    result = asyncio.run(flip_after_first())
    assert result.status is Status.WARN
    assert result.score is not None and 0 < result.score < 1


@pytest.mark.parametrize(("auth", "status"), [("auto", Status.PASS), ("id_token", Status.PASS), ("none", Status.FAIL)])
def test_private_service_gets_an_id_token(sample: SampleService, auth: str, status: Status) -> None:
    audiences: list[str] = []

    def token_source(audience: str) -> str:
        audiences.append(audience)
        return "test-id-token"

    result = probe(sample.url, token_source=token_source, path="/private", auth=auth)
    assert result.status is status, result.summary
    if status is Status.PASS:
        assert audiences and set(audiences) == {sample.url}
    else:
        assert "got 401" in result.summary


def test_no_url_is_skipped() -> None:
    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            target = Target(service="s", revision="s-00002-abc")
            return await health.run(target, health.Config(), CheckContext(http=http))

    result = asyncio.run(go())
    assert result.status is Status.SKIPPED
    assert "takes no traffic and has no tag URL" in result.summary


@pytest.mark.parametrize("text", ["status = healthy", "== 1", "a b c", ""], ids=["single-equals", "no-path", "junk", "empty"])
def test_bad_expectations_are_config_errors(text: str) -> None:
    with pytest.raises(ValueError, match="expected '<path> <op> <value>'"):
        health.Config(expect_json=[text])


def test_a_token_that_cannot_be_had_is_a_reason_not_a_crash(sample: SampleService) -> None:
    def no_credentials(audience: str) -> str:
        raise RuntimeError("metadata server unreachable")

    result = probe(sample.url, token_source=no_credentials, path="/private")
    assert result.status is Status.FAIL
    assert f"could not get an ID token for {sample.url}: RuntimeError: metadata server unreachable" in result.reasons
