"""health against the real sample service on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

import httpx
import pytest

from checks import health
from core.expect import MISSING, parse_all
from core.model import CheckContext, CheckResult, ServiceInfo, Status, Target
from demo.sample_service import SampleService
from tests.servers.loopback import LoopbackHandler, LoopbackServer

FAST = {"tries": 2, "interval_s": 0.0}


def probe(url: str, token_source: Any = None, cloud_run: bool = False, **settings: Any) -> CheckResult:
    """One health run over ``url``; ``cloud_run``: the URL is one the Cloud Run API returned (ID tokens may help)."""
    service = ServiceInfo("sample", "acme-prod", "us-central1", uri=url) if cloud_run else None

    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            ctx = CheckContext(http=http, token_source=token_source)
            target = Target(service="sample", url=url, service_info=service)
            return await health.run(target, health.Config(**{**FAST, **settings}), ctx)

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
        ({"path": "/drop"}, Status.FAIL,
         "GET /drop: connection failed: RemoteProtocolError: Server disconnected without sending a response. after 2 tries"),
        ({"path": "/huge?bytes=2000000", "max_body_bytes": 1_000_000}, Status.FAIL, "body larger than 1000000 bytes"),
        ({"path": "/redirect-local"}, Status.PASS, "answered 200"),
        ({"path": "/missing"}, Status.FAIL, "got 404"),
        ({"path": "/status/503", "expect_status": [200, 204]}, Status.FAIL,
         "expected status 200 or 204 from /status/503, got 503 after 2 tries"),
        ({"path": "/status/200?body=", "expect_json": ["a not exists"]}, Status.PASS, "/status/200?body= answered 200 on 2/2"),
        ({"path": "/headers", "expect_json": ["headers.authorization not exists"]}, Status.PASS, "/headers answered 200 on 2/2"),
    ],
    ids=["ok", "json-expectations", "json-mismatch", "json-missing-field", "not-json", "503", "204-expected",
         "slow-over-budget", "timeout", "dropped-connection", "huge-body", "same-host-redirect", "404",
         "one-of-several-statuses", "empty-body-is-no-document", "no-token-no-authorization-header"],
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


@pytest.mark.parametrize(("auth", "cloud_run", "status", "asked"), [
    ("auto", True, Status.PASS, 1), ("id_token", True, Status.PASS, 1), ("id_token", False, Status.PASS, 1),
    ("none", True, Status.FAIL, 0), ("auto", False, Status.FAIL, 0),
], ids=["auto-on-a-cloud-run-url", "id-token-on-a-cloud-run-url", "id-token-asked-for-anywhere", "none",
        "auto-on-a-plain-url"])
def test_private_service_gets_an_id_token(sample: SampleService, auth: str, cloud_run: bool, status: Status, asked: int) -> None:
    audiences: list[str] = []

    def token_source(audience: str) -> str:
        audiences.append(audience)
        return "test-id-token"

    result = probe(sample.url, token_source=token_source, cloud_run=cloud_run, path="/private", auth=auth)
    assert result.status is status, result.summary
    assert audiences == [sample.url] * asked  # fetched once, kept for the later tries
    if status is Status.FAIL:
        assert result.summary == "expected status 200 from /private, got 401 after 2 tries" and result.not_measured == []


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


class NoCredentials:
    """A token source that fails as one without a metadata server does, counting the calls."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, audience: str) -> str:
        self.asked.append(audience)
        raise RuntimeError("metadata server unreachable")


@pytest.mark.parametrize(("auth", "source", "problem"), [
    ("auto", NoCredentials, "could not get an ID token for {url}: RuntimeError: metadata server unreachable"),
    ("id_token", NoCredentials, "could not get an ID token for {url}: RuntimeError: metadata server unreachable"),
    ("auto", None, "no ID token source"),
], ids=["auto", "id-token", "no-token-source"])
def test_a_token_that_cannot_be_had_is_not_measured_not_a_crash(sample: SampleService, auth: str, source: type[NoCredentials] | None,
                                                               problem: str) -> None:
    token_source = source() if source else None
    result = probe(sample.url, token_source=token_source, cloud_run=True, path="/private", auth=auth, tries=3)
    why = f"GET /private answered 401 and {problem.format(url=sample.url)}"
    assert (result.status, result.score, result.summary, result.critical) == (Status.ERROR, None, why, None)
    [missing] = result.not_measured
    assert (missing.what, missing.why) == ("GET /private", why)
    assert "roles/run.invoker" in missing.fix and sample.url in missing.fix
    assert sum(1 for _, p in sample.requests if p == "/private") == 3  # every try was sent, none could be judged
    if token_source is not None:
        assert token_source.asked == [sample.url]  # one failure is enough: not asked again on every try
    assert [(e.measured, e.ok) for e in result.evidence if e.what == "HTTP status of GET /private"] == [("401, 401, 401", False)]


@pytest.mark.parametrize(("statuses", "last"), [((403,), 403), ((401, 401, 403), 403), ((403, 403, 401), 401)],
                         ids=["403", "401-then-403", "403-then-401"])
def test_every_refusal_without_a_token_is_not_measured_and_names_the_last(statuses: tuple[int, ...], last: int) -> None:
    with Scripted(*statuses) as server:
        url = server.base_url
        result = probe(url, token_source=NoCredentials(), cloud_run=True, tries=3)
    problem = f"could not get an ID token for {url}: RuntimeError: metadata server unreachable"
    assert (result.status, result.summary) == (Status.ERROR, f"GET / answered {last} and {problem}")
    assert server.answered == [*statuses, *[statuses[-1]] * (3 - len(statuses))]


def test_a_trailing_slash_on_the_url_is_not_doubled(sample: SampleService) -> None:
    result = probe(sample.url + "/", path="/status/503")
    assert result.summary == "expected status 200 from /status/503, got 503 after 2 tries"
    assert result.next_steps == [f"curl -i {sample.url}/status/503", "read the revision's logs around the deploy time"]


def test_the_urls_own_path_is_kept_whatever_it_ends_with(sample: SampleService) -> None:
    result = probe(sample.url + "/v1X/", path="/ok")  # only the trailing slash goes, not the X before it
    assert result.summary == "expected status 200 from /ok, got 404 after 2 tries"
    assert result.next_steps[0] == f"curl -i {sample.url}/v1X/ok"


def test_one_try_does_not_wait_the_interval(sample: SampleService) -> None:
    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            config = health.Config(path="/ok", tries=1, interval_s=60, request_timeout_s=2, timeout_s=5)
            # Bounded by its timeout as the runner bounds it: a pause before the only try would overrun it 12 times.
            return await asyncio.wait_for(health.run(Target(service="s", url=sample.url), config, CheckContext(http=http)),
                                          timeout=config.timeout_s)

    assert asyncio.run(go()).status is Status.PASS


class _ResetHandler(LoopbackHandler["Resetting"]):
    def do_GET(self) -> None:
        # Closing with a zero linger sends a TCP reset: httpx reads it as a ReadError without a message.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


class Resetting(LoopbackServer):
    """Resets every connection once it has read the request."""

    def __init__(self) -> None:
        super().__init__(_ResetHandler, "resetting server")


def test_an_error_without_a_message_ends_the_reason_with_its_name() -> None:
    with Resetting() as server:
        result = probe(server.base_url)
    assert (result.status, result.summary) == (Status.FAIL, "GET /: connection failed: ReadError after 2 tries")


class _ScriptedHandler(LoopbackHandler["Scripted"]):
    def do_GET(self) -> None:
        self.send_text(self.owner.next_status(), "scripted")


class Scripted(LoopbackServer):
    """Answers each GET with the next scripted status; the last one repeats."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(_ScriptedHandler, "scripted server")
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self.answered: list[int] = []

    def next_status(self) -> int:
        with self._lock:
            status = self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]
            self.answered.append(status)
            return status


@pytest.mark.parametrize(("auth", "statuses", "status", "answered"), [
    ("auto", (401, 200, 200), Status.WARN, [401, 200, 200]),
    ("id_token", (503,), Status.FAIL, [503, 503, 503]),
], ids=["auto-one-refusal-then-healthy", "id-token-and-a-5xx"])
def test_a_token_problem_beside_a_judged_answer_is_a_reason_not_the_verdict(auth: str, statuses: tuple[int, ...], status: Status,
                                                                           answered: list[int]) -> None:
    token_source = NoCredentials()
    with Scripted(*statuses) as server:
        url = server.base_url
        result = probe(url, token_source=token_source, cloud_run=True, auth=auth, tries=3)
    problem = f"could not get an ID token for {url}: RuntimeError: metadata server unreachable"
    assert (result.status, result.not_measured) == (status, [])  # the revision answered something judgeable
    assert server.answered == answered and token_source.asked == [url]
    assert result.reasons[-1] == problem
    assert [(e.measured, e.threshold, e.ok) for e in result.evidence if e.what == "ID token"] == [
        (problem, "a token for a private service", False)]


def test_a_healthy_answer_needs_no_token_and_mentions_none() -> None:
    token_source = NoCredentials()
    with Scripted(200) as server:
        result = probe(server.base_url, token_source=token_source, cloud_run=True, auth="id_token")
        assert server.answered == [200, 200]
    assert result.status is Status.PASS and result.reasons == []
    assert not [e for e in result.evidence if e.what == "ID token"]


@pytest.mark.parametrize("cloud_run", [False, True], ids=["plain-url", "cloud-run-url"])
def test_a_403_asks_for_an_id_token_only_where_one_can_work(sample: SampleService, cloud_run: bool) -> None:
    asked: list[str] = []

    def token_source(audience: str) -> str:
        asked.append(audience)
        return "test-id-token"

    result = probe(sample.url, token_source=token_source, cloud_run=cloud_run, path="/status/403")
    # With or without a token the service refuses: judged, the status it is.
    assert (result.status, result.summary, result.not_measured) == (
        Status.FAIL, "expected status 200 from /status/403, got 403 after 2 tries", [])
    assert asked == ([sample.url] if cloud_run else [])  # fetched once on the first refusal, then kept
    assert sum(1 for _, p in sample.requests if p == "/status/403") == (3 if cloud_run else 2)


OK = [200]


def attempts(*tries: tuple[int | None, float]) -> list[health.Attempt]:
    """(status, latency ms) per try; a None status is a try without a response."""
    return [health.Attempt(status=s, latency_ms=ms, error="" if s else "timed out after 1 s") for s, ms in tries]


@pytest.mark.parametrize(
    ("tries", "status", "score", "latency"),
    [
        (attempts((200, 50), (200, 150), (200, 400)), Status.WARN, 0.75, "150 ms / 400 ms"),
        (attempts((200, 400), (200, 50), (200, 80)), Status.PASS, 1.0, "80 ms / 400 ms"),
        (attempts((200, 100), (200, 100), (200, 100)), Status.PASS, 1.0, "100 ms / 100 ms"),
        (attempts((200, 90), (200, 101), (200, 300)), Status.WARN, 0.75, "101 ms / 300 ms"),
        (attempts((200, 50), (200, 150)), Status.PASS, 1.0, "100 ms / 150 ms"),
        (attempts((None, 5000), (200, 50), (200, 60)), Status.WARN, 2 / 3, "55 ms / 60 ms"),
        (attempts((200, 150), (200, 150), (503, 150)), Status.WARN, 2 / 3 - 0.25, "150 ms / 150 ms"),
        (attempts((200, 150), *[(503, 150)] * 4), Status.WARN, 0.0, "150 ms / 150 ms"),
    ],
    ids=["min-within-median-over", "median-within-max-over", "median-at-budget", "median-just-over", "even-tries-middle-two",
         "no-response-left-out", "slow-and-failing", "grade-floors-at-zero"],
)
def test_latency_is_judged_on_the_median_of_tries(tries: list[health.Attempt], status: Status, score: float, latency: str) -> None:
    result = health._judge(health.Config(path="/ok", latency_budget_ms=100, **FAST), "http://x/ok", tries, [])
    assert (result.status, result.score) == (status, pytest.approx(score))
    [evidence] = [e for e in result.evidence if e.what.startswith("latency of GET /ok")]
    responded = sum(1 for t in tries if t.status is not None)
    median_over = float(latency.split()[0]) > 100
    assert (evidence.what, evidence.measured, evidence.threshold, evidence.ok) == (
        f"latency of GET /ok (median / max of {responded})", latency, "median ≤ 100 ms", not median_over)
    slow = f"expected GET /ok within 100 ms (median), took {latency.split()[0]} ms"
    assert (slow in result.reasons) is median_over


@pytest.mark.parametrize(
    ("tries", "status", "score", "summary", "statuses"),
    [
        (attempts((200, 10), (204, 30), (200, 20)), Status.PASS, 1.0, "/ok answered 200 on 3/3 tries, median 20 ms", "200, 204, 200"),
        (attempts((204, 10), (200, 10)), Status.PASS, 1.0, "/ok answered 204 on 2/2 tries, median 10 ms", "204, 200"),
        (attempts((200, 10), (503, 10), (200, 10)), Status.WARN, 2 / 3,
         "2/3 tries of /ok healthy; expected status 200 or 204 from /ok, got 503", "200, 503, 200"),
        (attempts((503, 10), (503, 10)), Status.FAIL, 0.0, "expected status 200 or 204 from /ok, got 503 after 2 tries", "503, 503"),
        (attempts((503, 10)), Status.FAIL, 0.0, "expected status 200 or 204 from /ok, got 503", "503"),
        (attempts((None, 10), (503, 10)), Status.FAIL, 0.0, "GET /ok: timed out after 1 s after 2 tries", "no response, 503"),
    ],
    ids=["all-healthy", "first-status-is-reported", "one-unhealthy-warns", "none-healthy-fails", "one-try-no-count", "no-response"],
)
def test_judge_counts_healthy_tries(tries: list[health.Attempt], status: Status, score: float, summary: str, statuses: str) -> None:
    result = health._judge(health.Config(path="/ok", expect_status=[200, 204], **FAST), "http://x/ok", tries, [])
    assert (result.status, result.summary, result.score) == (status, summary, pytest.approx(score))
    passing = sum(1 for t in tries if t.status in (200, 204))
    shown = {e.what: (e.measured, e.threshold, e.ok) for e in result.evidence}
    assert shown["HTTP status of GET /ok"] == (statuses, "200 or 204", passing == len(tries))
    assert shown["tries passing"] == (f"{passing}/{len(tries)}", f"{len(tries)}/{len(tries)}", passing == len(tries))
    assert any(w.startswith("latency of") for w in shown) is any(t.status is not None for t in tries)
    unhealthy = [f"expected status 200 or 204 from /ok, got {t.status}" if t.status else "GET /ok: timed out after 1 s"
                 for t in tries if t.status not in (200, 204)]
    assert result.reasons == list(dict.fromkeys(unhealthy))
    failed = status is Status.FAIL
    assert result.next_steps == (["curl -i http://x/ok", "read the revision's logs around the deploy time"] if failed else [])


def test_judge_reads_json_expectations_on_every_try() -> None:
    tries = attempts((200, 10), (200, 10), (200, 10))
    tries[0].body, tries[1].body, tries[2].body = {"status": "healthy"}, MISSING, {"status": "down"}
    result = health._judge(health.Config(path="/h", **FAST), "http://x/h", tries, parse_all(['status == "healthy"', "a not exists"]))
    assert (result.status, result.score) == (Status.WARN, pytest.approx(1 / 3))
    # A body that is not JSON is no healthy answer, even for an expectation that would hold on nothing.
    assert result.reasons[:1] == ["expected a JSON body from /h, got something else"]
    assert 'expected status == "healthy" in /h, found "down"' in result.reasons
    shown = {e.what: (e.measured, e.threshold, e.ok) for e in result.evidence if e.what.startswith("JSON ")}
    assert shown == {"JSON status": ("down", 'status == "healthy"', False), "JSON a": ("no such field", "a not exists", True)}


def test_an_unparseable_body_fails_even_an_expectation_that_holds_on_nothing() -> None:
    tries = attempts((200, 10))
    tries[0].body = MISSING
    result = health._judge(health.Config(path="/h", **FAST), "http://x/h", tries, parse_all(["a not exists"]))
    assert (result.status, result.summary) == (Status.FAIL, "expected a JSON body from /h, got something else")
