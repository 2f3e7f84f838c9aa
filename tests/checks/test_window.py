"""window: availability and latency percentiles over repeated probes of the real sample service."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from checks import health, smoke, window
from core.config import Config
from core.errors import ConfigError
from core.model import CheckContext, CheckResult, ServiceInfo, Status, Target
from demo.sample_service import SampleService
from probe.golden.paths import read_only
from tests.servers.processes import free_port


def observe(url: str, progress: list[tuple[str, float]] | None = None, *, peers: dict[str, Any] | None = None,
            token_source: Any = None, secrets: Any = None, cloud_run: bool = False, **settings: Any) -> CheckResult:
    """One window over ``url``; ``cloud_run``: the URL is one the Cloud Run API returned (ID tokens may help)."""
    service = ServiceInfo("sample", "acme-prod", "us-central1", uri=url) if cloud_run else None

    async def go() -> CheckResult:
        async with httpx.AsyncClient() as http:
            ctx = CheckContext(http=http, progress=(lambda what, done: progress.append((what, done))) if progress is not None else None,
                               peers=peers or {}, token_source=token_source, secrets=secrets)
            return await window.run(Target(service="sample", url=url, service_info=service), window.Config(**settings), ctx)

    return asyncio.run(go())


def smoke_paths(*paths: dict[str, Any], **settings: Any) -> smoke.Config:
    return smoke.Config.model_validate({"paths": list(paths), **settings})


BROWSE = {"name": "browse", "steps": [{"http": {"path": "/orders"}}, {"http": {"path": "/json?body=%7B%7D"}}]}
ORDER = {"name": "order", "steps": [{"http": {"path": "/orders", "method": "POST", "json": {"item": "tea"},
                                              "expect_status": [201]}}]}
LISTEN = {"name": "listen", "steps": [{"websocket": {"path": "/ws/agent", "expect_events": ["done"], "timeout_s": 2}}]}


def test_a_healthy_window_reports_availability_and_percentiles(sample: SampleService) -> None:
    progress: list[tuple[str, float]] = []
    result = observe(sample.url, progress, window_s=1.0, interval_s=0.2, paths=["/ok"])
    assert result.status is Status.PASS
    assert result.summary.startswith("availability 100.0% over 1 s")
    figures = next(e for e in result.evidence if e.what == "latency p50 / p95 / p99")
    assert figures.measured.count("ms") == 3
    assert progress and progress[-1][1] == 1.0 and [d for _, d in progress] == sorted(d for _, d in progress)
    assert sum(1 for _, path in sample.requests if path == "/ok") >= 5


def test_intermittent_500s_lower_availability(sample: SampleService) -> None:
    # every 3rd request fails: about 67 % available, below the 95 % warn floor
    result = observe(sample.url, window_s=1.0, interval_s=0.1, paths=["/flaky?every=3"])
    assert result.status is Status.FAIL
    assert "window aborted at +" in result.summary and "first failure at +" in result.summary and "status 500" in result.summary
    assert result.score is not None and 0.5 < result.score < 0.8


def test_a_slow_route_breaks_the_latency_budget(sample: SampleService) -> None:
    result = observe(sample.url, window_s=0.6, interval_s=0.2, paths=["/slow?ms=150"], max_p95_ms=100)
    assert result.status is Status.WARN
    assert "expected p95 latency ≤ 100 ms during the window" in result.summary


@pytest.mark.parametrize(("values", "p", "expected"), [([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 95, 4), ([5], 99, 5),
                                                       (list(range(1, 101)), 95, 95)])
def test_nearest_rank_percentile(values: list[float], p: int, expected: float) -> None:
    assert window.percentile(values, p) == expected


def test_no_window_is_not_configured(sample: SampleService) -> None:
    result = observe(sample.url, window_s=0)
    assert result.status is Status.SKIPPED and result.assessed is False


def test_a_window_that_cannot_fit_the_deadline_is_rejected() -> None:
    text = "version: 1\ndefaults:\n  deadline_s: 100\n  checks:\n    window: {window_s: 90, timeout_s: 120}\n    logs: {settle_s: 10}\n"
    with pytest.raises(ConfigError) as caught:
        Config.parse(text, "t.yaml")
    assert any("window_s + checks.logs.settle_s + 15 s of log queries ≤ deadline_s (100 s), found 90 + 10 + 15 = 115 s" in p
               for p in caught.value.problems)


def test_by_default_the_window_repeats_the_health_path_and_the_read_only_smoke_paths(sample: SampleService) -> None:
    peers = {"health": health.Config(path="/health"), "smoke": smoke_paths(BROWSE, ORDER)}
    result = observe(sample.url, peers=peers, window_s=0.6, interval_s=0.2)
    assert result.status is Status.PASS, result.summary
    rounds = sum(1 for method, path in sample.requests if (method, path) == ("GET", "/health"))
    assert rounds >= 3
    # each round: GET /health, and browse's two GETs (a run that overran its slot on a busy machine gives up the
    # next one); order POSTs, so it is not repeated
    runs = sum(1 for method, path in sample.requests if (method, path) == ("GET", "/orders"))
    assert rounds - 1 <= runs <= rounds
    assert not sample.orders and ("POST", "/orders") not in sample.requests
    lines = {e.what: e.measured for e in result.evidence}
    assert lines["GET /health"].startswith(f"{rounds}/{rounds} ok, latency p50")
    assert lines["smoke browse"].startswith(f"{runs}/{runs} ok, duration p50")
    assert "smoke order" not in lines
    assert f"({rounds} probes)" in result.summary  # availability counts the GETs; browse is not critical: listed only


def test_all_repeats_smoke_paths_that_write_and_a_list_picks_by_name(sample: SampleService) -> None:
    peers = {"smoke": smoke_paths(BROWSE, ORDER)}
    result = observe(sample.url, peers=peers, window_s=0.4, interval_s=0.2, paths=[], smoke="all")
    assert result.status is Status.PASS, result.summary
    assert len(sample.orders) >= 2 and len(sample.orders) == sum(1 for r in sample.requests if r == ("POST", "/orders"))
    before = len(sample.orders)
    result = observe(sample.url, peers=peers, window_s=0.4, interval_s=0.2, paths=[], smoke=["order"])
    assert {e.what for e in result.evidence} >= {"smoke order"} and "smoke browse" not in {e.what for e in result.evidence}
    assert len(sample.orders) > before
    # only smoke paths: the latency figures are theirs, reported per path, with no p95 verdict
    assert not any(e.what == "latency p50 / p95 / p99" for e in result.evidence)


@pytest.mark.parametrize(("critical", "status", "result_critical", "reason"), [
    pytest.param(True, Status.FAIL, None, "first failure at +", id="a-critical-path-fails-the-window"),
    pytest.param(False, Status.WARN, False, "non-critical smoke flaky failed", id="a-non-critical-path-warns-only"),
])
def test_a_smoke_path_failing_during_the_window(sample: SampleService, critical: bool, status: Status,
                                                result_critical: bool | None, reason: str) -> None:
    flaky = {"name": "flaky", "critical": critical, "steps": [{"http": {"path": "/flaky?every=2"}}]}
    result = observe(sample.url, peers={"smoke": smoke_paths(flaky)}, window_s=0.8, interval_s=0.1, paths=["/ok"],
                     smoke=["flaky"])
    assert (result.status, result.critical) == (status, result_critical), result.summary
    assert reason in result.summary and "smoke flaky" in result.reasons[0] and "500" in result.reasons[0]
    ok_line = next(e for e in result.evidence if e.what == "GET /ok")
    flaky_line = next(e for e in result.evidence if e.what == "smoke flaky")
    assert ok_line.ok is True and flaky_line.ok is False


def test_smoke_is_not_repeated_when_the_smoke_check_is_off_and_none_means_none(sample: SampleService) -> None:
    off = smoke_paths(BROWSE, enabled=False)
    assert window.chosen_smoke_paths(window.Config(), off) == []
    assert window.chosen_smoke_paths(window.Config(smoke="none"), smoke_paths(BROWSE)) == []
    assert [p.name for p in window.chosen_smoke_paths(window.Config(), smoke_paths(BROWSE, ORDER, LISTEN))] == \
        ["browse", "listen"]
    result = observe(sample.url, peers={"smoke": off}, window_s=0.2, interval_s=0.1, paths=[])
    assert result.status is Status.SKIPPED and result.assessed is False and "nothing to repeat" in result.summary


def test_read_only_means_safe_methods_and_websockets_that_send_nothing() -> None:
    talk = {"name": "talk", "steps": [{"websocket": {"path": "/ws/agent", "send": [{"text": "hi"}], "expect_events": ["done"]}}]}
    head = {"name": "head", "steps": [{"http": {"path": "/ok", "method": "HEAD"}}, {"http": {"path": "/ok", "method": "options"}}]}
    config = smoke_paths(BROWSE, ORDER, LISTEN, talk, head)
    assert {p.name: read_only(p) for p in config.paths} == \
        {"browse": True, "order": False, "listen": True, "talk": False, "head": True}


def test_a_private_service_is_probed_with_an_id_token_fetched_once(sample: SampleService) -> None:
    audiences: list[str] = []

    def token_source(audience: str) -> str:
        audiences.append(audience)
        return "test-id-token"

    result = observe(sample.url, token_source=token_source, window_s=0.4, interval_s=0.1, paths=["/private"], cloud_run=True)
    assert result.status is Status.PASS, result.summary
    assert audiences == [sample.url]
    result = observe(sample.url, window_s=0.2, interval_s=0.1, paths=["/private"], auth="none")
    assert result.status is Status.FAIL and "status 401" in result.summary


def test_a_token_postdeploy_cannot_get_is_an_error_not_an_outage(sample: SampleService) -> None:
    def no_credentials(audience: str) -> str:
        raise OSError("no metadata server")

    result = observe(sample.url, token_source=no_credentials, window_s=0.3, interval_s=0.1, paths=["/private", "/ok"],
                     cloud_run=True)
    assert result.status is Status.PASS, result.summary  # /ok answered throughout; /private is not held against it
    assert result.reasons[0] == ("GET /private was not repeated: status 401 and could not get an ID token for "
                                 f"{sample.url}: OSError: no metadata server")
    assert sum(1 for r in sample.requests if r[1] == "/private") == 1  # dropped after the first refusal
    result = observe(sample.url, window_s=0.3, interval_s=0.1, paths=["/private"], cloud_run=True)  # no token source at all
    assert result.status is Status.ERROR and result.summary.startswith("GET /private was not repeated: status 401")
    assert [n.what for n in result.not_measured] == ["GET /private"] and "roles/run.invoker" in result.not_measured[0].fix


def test_a_smoke_path_postdeploy_cannot_send_is_dropped_not_held_against_the_revision(sample: SampleService,
                                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTDEPLOY_TEST_MISSING", raising=False)
    needs_key = {"name": "keyed", "steps": [{"http": {"path": "/headers", "headers": {"X-Api-Key": "${env:POSTDEPLOY_TEST_MISSING}"}}}]}
    result = observe(sample.url, peers={"smoke": smoke_paths(needs_key)}, window_s=0.4, interval_s=0.1, paths=["/ok"],
                     smoke=["keyed"])
    assert result.status is Status.PASS, result.summary
    assert sum(1 for r in sample.requests if r[1] == "/headers") == 0
    dropped = next(e for e in result.evidence if e.what == "not repeated: smoke keyed")
    assert "POSTDEPLOY_TEST_MISSING" in dropped.measured and dropped.ok is False
    assert any(r.startswith("smoke keyed was not repeated: ") for r in result.reasons)
    assert not any(e.what == "smoke keyed" for e in result.evidence)  # no availability line for what never ran


def test_window_smoke_must_name_smoke_paths() -> None:
    text = ("version: 1\ndefaults:\n  checks:\n    smoke: {paths: [{name: browse, steps: [{http: {path: /ok}}]}]}\n"
            "    window: {smoke: [browse, checkout]}\n")
    with pytest.raises(ConfigError) as caught:
        Config.parse(text, "t.yaml")
    assert any("expected checks.window.smoke to name paths of checks.smoke (browse), found checkout" in p
               for p in caught.value.problems)


def test_a_slow_smoke_path_does_not_thin_out_the_health_probes(sample: SampleService) -> None:
    slow = {"name": "slow", "steps": [{"http": {"path": "/slow?ms=600"}}]}
    result = observe(sample.url, peers={"smoke": smoke_paths(slow)}, window_s=1.0, interval_s=0.1, paths=["/ok"])
    assert result.status is Status.PASS, result.summary
    ok_probes = sum(1 for r in sample.requests if r[1] == "/ok")
    slow_runs = sum(1 for r in sample.requests if r[1].startswith("/slow"))
    assert slow_runs <= 3 and ok_probes >= 3 * slow_runs  # the GETs keep their own 0.1 s schedule


def test_a_smoke_run_the_window_budget_cuts_short_is_not_counted(sample: SampleService) -> None:
    slow = {"name": "slow", "steps": [{"http": {"path": "/slow?ms=2000"}}]}
    # budget: timeout_s 3.2 - 0.5 margin - 2 s for closing sockets = 0.7 s, less than the path takes
    result = observe(sample.url, peers={"smoke": smoke_paths(slow)}, window_s=0.5, interval_s=0.1, paths=["/ok"],
                     timeout_s=3.2, request_timeout_s=1.0)
    assert result.status is Status.PASS, result.summary
    assert not any(e.what == "smoke slow" for e in result.evidence)
    cut = next(e for e in result.evidence if e.what == "cut short: smoke slow")
    assert cut.measured == "1 run(s) ended by the window's time budget, not counted"


# ---------------------------------------------------------------- the verdicts a team can trust


def later(seconds: float, action: Any) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_a_revision_that_dies_mid_window_fails_it_and_the_window_stops_there() -> None:
    with SampleService() as service:
        timer = later(0.5, service.stop)
        result = observe(service.url, window_s=6.0, interval_s=0.1, paths=["/ok"])
        timer.join()
    assert result.status is Status.FAIL, result.summary
    assert "window aborted at +" in result.summary and "availability can no longer reach 95%" in result.summary
    answered = sum(1 for r in service.requests if r[1] == "/ok")
    assert 0 < answered < 61  # stopped well before the 61 probes of the whole window


def test_one_probe_in_six_answering_503_fails_the_window(sample: SampleService) -> None:
    result = observe(sample.url, window_s=1.0, interval_s=0.1, paths=["/flaky?every=6"], abort_after=0)
    assert result.status is Status.FAIL, result.summary
    assert "status 500" in result.summary


def test_a_revision_that_starts_hanging_fails_on_time(sample: SampleService) -> None:
    timer = later(0.6, lambda: setattr(sample, "mode", "hanging"))
    result = observe(sample.url, window_s=1.5, interval_s=0.1, paths=["/ok"], request_timeout_s=8.0)
    timer.join()
    assert result.status is Status.FAIL, result.summary
    # judged when the window closed, not after the 8 s request timeout; the schedule went on while requests hung
    assert "no answer after" in result.summary and "when the window closed" in result.summary
    assert sum(1 for r in sample.requests if r[1] == "/ok") >= 15  # of 16 scheduled


def test_a_dead_revision_is_judged_at_once_not_after_the_whole_window() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = observe(dead, window_s=6.0, interval_s=0.5, paths=["/health"])  # 13 probes planned, as 60 s every 5 s
    assert result.status is Status.FAIL
    aborted = next(e for e in result.evidence if e.what == "window aborted")
    assert "availability can no longer reach 95%: 1 of at most 13 probes failed" in aborted.measured
    assert result.summary.startswith("availability 0.0% over 0 s (1 probe); window aborted at +0 s: availability can no longer")
    assert result.summary.endswith("first failure at +0 s: GET /health: ConnectError")


def test_abort_after_consecutive_failures_when_the_floor_is_still_reachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = observe(dead, window_s=20.0, interval_s=0.05, paths=["/a"], fail_below=0.0, warn_below=0.0, abort_after=4,
                     timeout_s=40)
    assert result.status is Status.FAIL
    assert "4 probes failed in a row (abort_after 4)" in result.summary
    assert "(4 probes)" in result.summary  # of the 401 the window had planned


def probe(ok: bool, latency_ms: float = 10.0, path: str = "GET /ok") -> window.Probe:
    return window.Probe(0.0, path, ok, latency_ms, "" if ok else "status 503")


def tally(probes: list[window.Probe], config: window.Config | None = None, *, aborted: str = "") -> window._Tally:
    t = window._Tally(config or window.Config(), 0.0, len(probes), probes=probes)
    t.aborted = aborted
    return t


@pytest.mark.parametrize(
    ("good", "bad", "settings", "expected"),
    [
        pytest.param(19, 1, {}, Status.WARN, id="exactly-fail-below-is-warn"),
        pytest.param(18, 1, {}, Status.FAIL, id="just-below-fail-below-is-fail"),
        pytest.param(99, 1, {}, Status.PASS, id="exactly-warn-below-is-pass"),
        pytest.param(98, 1, {}, Status.WARN, id="just-below-warn-below-is-warn"),
        pytest.param(5, 0, {}, Status.PASS, id="all-answered"),
        pytest.param(0, 3, {}, Status.FAIL, id="none-answered"),
        pytest.param(3, 1, {"fail_below": 0.75, "warn_below": 0.75}, Status.PASS, id="custom-floor-met-exactly"),
        pytest.param(2, 1, {"fail_below": 0.75, "warn_below": 0.9}, Status.FAIL, id="custom-floor-missed"),
    ],
)
def test_availability_thresholds(good: int, bad: int, settings: dict[str, Any], expected: Status) -> None:
    result = window._judge(window.Config(**settings), tally([probe(True)] * good + [probe(False)] * bad), 60.0)
    assert result.status is expected, result.summary
    assert result.score == good / (good + bad)


def test_p95_is_taken_over_every_answer_not_one() -> None:
    quick, slow = [probe(True, 10.0)] * 18, [probe(True, 3000.0)] * 2
    result = window._judge(window.Config(), tally([*quick, *slow]), 60.0)  # nearest rank 19 of 20 is slow
    assert result.status is Status.WARN and "found 3000 ms" in result.summary
    result = window._judge(window.Config(), tally([*slow[:1], *quick, probe(True, 10.0)]), 60.0)  # rank 19 is quick
    assert result.status is Status.PASS, result.summary
    figures = next(e for e in result.evidence if e.what == "latency p50 / p95 / p99")
    assert figures.measured == "10 ms / 10 ms / 3000 ms"


def test_an_aborted_window_fails_even_when_the_answers_so_far_met_the_floor() -> None:
    result = window._judge(window.Config(), tally([probe(True)] * 95 + [probe(False)] * 5, aborted="5 probes failed in a row"),
                           30.0)
    assert result.status is Status.FAIL
    assert result.reasons[0] == "window aborted at +0 s: 5 probes failed in a row; first failure at +0 s: GET /ok: status 503"


@pytest.mark.parametrize(
    ("good", "bad", "planned", "streak", "settings", "expected"),
    [
        pytest.param(19, 1, 20, 1, {}, "", id="floor-still-reachable"),
        pytest.param(18, 2, 20, 1, {}, "availability can no longer reach 95%: 2 of at most 20 probes failed (best case 90.0%)",
                     id="floor-lost"),
        pytest.param(0, 1, 13, 1, {}, "availability can no longer reach 95%: 1 of at most 13 probes failed (best case 92.3%)",
                     id="first-of-thirteen"),
        pytest.param(3, 5, 1000, 5, {}, "5 probes failed in a row (abort_after 5)", id="streak-reached"),
        pytest.param(3, 4, 1000, 4, {}, "", id="streak-one-short"),
        pytest.param(3, 9, 1000, 9, {"abort_after": 0}, "", id="abort-after-zero-never-aborts"),
        pytest.param(5, 0, 10, 0, {}, "", id="no-failure-never-aborts"),
        pytest.param(30, 1, 20, 1, {}, "", id="more-probes-than-planned-counts-the-probes"),
    ],
)
def test_abort_reason(good: int, bad: int, planned: int, streak: int, settings: dict[str, Any], expected: str) -> None:
    probes = [probe(True)] * good + [probe(False)] * bad
    assert window.abort_reason(window.Config(**settings), probes, planned, streak) == expected


@pytest.mark.parametrize(("old", "new"), [("min_availability", "warn_below"), ("warn_availability", "fail_below")])
def test_the_old_threshold_names_point_to_the_new_ones(old: str, new: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.parse(f"version: 1\ndefaults:\n  checks:\n    window: {{{old}: 0.9}}\n", "t.yaml")
    assert any(p.startswith("defaults.checks.window: ") and f"{old} was renamed to {new}" in p for p in caught.value.problems)


def test_a_401_from_a_host_that_is_not_cloud_run_is_the_status_it_is(sample: SampleService) -> None:
    asked: list[str] = []
    result = observe(sample.url, token_source=asked.append, window_s=0.2, interval_s=0.1, paths=["/private"])
    assert result.status is Status.FAIL and "status 401" in result.summary
    assert asked == []  # no ID token is looked for where none can work
    assert window.Config().critical is True


@pytest.mark.parametrize(("runs", "status", "critical", "reason"), [
    pytest.param([False, True, False], Status.WARN, False,
                 "non-critical smoke refunds failed 2× during the window, passing otherwise: status 503", id="now-and-then-warns"),
    pytest.param([False, False, False], Status.PASS, None,
                 "non-critical smoke refunds failed every run during the window (the smoke check judges it)",
                 id="every-run-is-the-smoke-checks-finding"),
])
def test_a_non_critical_smoke_path_in_the_window(runs: list[bool], status: Status, critical: bool | None, reason: str) -> None:
    flows = [window.Probe(0.0, "smoke refunds", ok, 10.0, "" if ok else "status 503", critical=False) for ok in runs]
    result = window._judge(window.Config(), tally([probe(True)] * 10 + flows), 30.0)
    assert (result.status, result.critical) == (status, critical), result.summary
    assert reason in result.reasons and result.score == 1.0
    assert result.summary.startswith("availability 100.0% over 30 s (10 probes)")


@pytest.mark.parametrize(("latencies", "expected"), [
    pytest.param([10, 10, 13], "too few answers for a trend", id="three-answers-are-too-few"),
    pytest.param([10, 10, 13, 13], "rising: median 10 ms → 13 ms (+30%)", id="rising"),
    pytest.param([10, 10, 12, 12], "steady: median 10 ms → 12 ms (+20%)", id="plus-twenty-is-steady"),
    pytest.param([10, 10, 8, 8], "steady: median 10 ms → 8 ms (-20%)", id="minus-twenty-is-steady"),
    pytest.param([10, 10, 7, 7], "falling: median 10 ms → 7 ms (-30%)", id="falling"),
    pytest.param([0, 0, 5, 5], "steady: median 0 ms → 5 ms (+0%)", id="from-zero-no-ratio"),
    pytest.param([10, 30, 20, 20, 90], "steady: median 20 ms → 20 ms (+0%)", id="odd-count-splits-low"),
    pytest.param([10, 12, 40, 60, 14, 16], "rising: median 12 ms → 16 ms (+33%)", id="medians-not-means"),
])
def test_latency_trend(latencies: list[float], expected: str) -> None:
    answered = [probe(True, ms) for ms in latencies]
    assert window._trend([probe(False, 9999.0), *answered]) == expected  # a failed probe has no latency to trend


def test_one_line_per_path_with_its_own_figures() -> None:
    probes = [probe(True, 10.0, "GET /a"), probe(False, 5.0, "GET /a"), probe(True, 30.0, "GET /a"),
              probe(True, 100.0, "smoke x"), probe(False, 1.0, "GET /b")]
    lines = [(e.what, e.measured, e.ok) for e in window._per_target(probes)]
    assert lines == [("GET /a", "2/3 ok, latency p50 10 ms / p95 30 ms", False),
                     ("smoke x", "1/1 ok, duration p50 100 ms / p95 100 ms", True),
                     ("GET /b", "0/1 ok", False)]


def test_the_tally_counts_judged_probes_and_sets_aside_what_was_cut_or_ours() -> None:
    seen: list[tuple[str, float]] = []
    t = window._Tally(window.Config(window_s=10.0, abort_after=2), 0.0, 100, progress=lambda what, done: seen.append((what, done)))
    t.record(window.Probe(1.0, "smoke s", False, 1.0, "cut", cut=True))
    t.record(window.Probe(1.0, "smoke s", False, 1.0, "cut", cut=True))
    t.record(window.Probe(1.0, "GET /p", False, 1.0, "401", ours="no token"))
    t.record(window.Probe(1.0, "GET /p", False, 1.0, "401", ours="still no token"))
    t.record(window.Probe(1.0, "smoke n", False, 1.0, "500", critical=False))
    t.record(probe(False))
    assert (t.cut, t.dropped, len(t.probes), t.streak, t.aborted) == ({"smoke s": 2}, {"GET /p": "no token"}, 2, 1, "")
    t.record(probe(False))
    assert t.aborted == "2 probes failed in a row (abort_after 2)" and t.stop.is_set()
    t.record(probe(True))
    assert len(t.probes) == 3  # nothing is counted once the window was stopped
    assert seen[-1][0] == "window: 3 probes, 0 ok" and all(0 <= done <= 0.99 for _, done in seen) and len(seen) == 8


def test_a_probe_postdeploy_broke_sending_is_set_aside_as_its_own() -> None:
    async def broken() -> window.Probe:
        raise ValueError("boom")

    async def fine() -> window.Probe:
        return probe(True)

    assert asyncio.run(window._guarded(broken(), "GET /x")) == window.Probe(0.0, "GET /x", False, 0.0,
                                                                          ours="postdeploy failed: ValueError: boom")
    assert asyncio.run(window._guarded(fine(), "GET /x")) == probe(True)


def test_nearest_rank_rounds_up_on_a_hundred_and_one_values() -> None:
    assert window.percentile(list(range(1, 102)), 1) == 2  # rank ⌈1.01⌉


def test_none_repeats_no_smoke_path_whatever_the_paths_are_called() -> None:
    named = smoke_paths({"name": "one", "steps": [{"http": {"path": "/ok"}}]}, {"name": "no", "steps": [{"http": {"path": "/ok"}}]})
    assert window.chosen_smoke_paths(window.Config(smoke="none"), named) == []


def test_an_answer_between_failures_starts_the_count_again() -> None:
    t = tally([], window.Config(abort_after=2, fail_below=0.0, warn_below=0.0))
    t.planned = 100
    for ok in (False, True, False):
        t.record(probe(ok))
    assert (t.streak, t.aborted) == (1, "")


def test_progress_is_the_share_of_the_window_gone() -> None:
    seen: list[float] = []
    t = window._Tally(window.Config(window_s=10.0), time.monotonic() - 5.0, 100, progress=lambda what, done: seen.append(done))
    t.record(probe(True))
    assert 0.45 <= seen[0] <= 0.6


def test_per_path_p95_is_the_ninety_fifth_value() -> None:
    lines = window._per_target([probe(True, float(ms), "GET /a") for ms in range(1, 101)] + [probe(True, 5.0, "smoke s")])
    assert lines[0].measured == "100/100 ok, latency p50 50 ms / p95 95 ms"


def whole(result: CheckResult) -> tuple[Any, ...]:
    """Everything a reader of the report sees of a result."""
    return (result.status.value, result.summary, result.score, result.reasons, result.next_steps, result.critical,
            [(e.what, e.measured, e.threshold, e.ok) for e in result.evidence], [(n.what, n.why, n.fix) for n in result.not_measured])


def judged(probes: list[window.Probe], *, aborted: str = "", dropped: dict[str, str] | None = None) -> tuple[Any, ...]:
    t = tally(probes, aborted=aborted)
    t.dropped = dropped or {}
    return whole(window._judge(window.Config(), t, 12.0))


def test_nothing_ran_is_not_measured() -> None:
    assert judged([]) == ("ERROR", "no probe ran during the window", None, ["no probe ran during the window"], [], None,
                          [("window", "no probe ran during the window", None, False)],
                          [("window", "no probe ran during the window", "raise checks.window.timeout_s or deadline_s")])
    assert judged([], dropped={"GET /p": "status 401 and no token"}) == (
        "ERROR", "GET /p was not repeated: status 401 and no token", None, ["GET /p was not repeated: status 401 and no token"],
        [], None, [("not repeated: GET /p", "status 401 and no token", "postdeploy can send it", False)],
        [("GET /p", "status 401 and no token", window.DROPPED_FIX)])


def test_a_pass_names_what_it_could_not_send() -> None:
    assert judged([probe(True, 10.0), probe(True, 20.0)], dropped={"smoke s": "could not resolve ${env:K}"}) == (
        "PASS", "availability 100.0% over 12 s (2 probes), p95 20 ms", 1.0, ["smoke s was not repeated: could not resolve ${env:K}"],
        [], None,
        [("window", "12 s, 2 probes of GET /ok every 5 s", "60 s", None),
         ("availability", "100.0% (2/2)", "≥ 99% (FAIL below 95%)", True),
         ("not repeated: smoke s", "could not resolve ${env:K}", "postdeploy can send it", False),
         ("latency p50 / p95 / p99", "10 ms / 20 ms / 20 ms", "p95 ≤ 1000 ms", True),
         ("latency trend", "too few answers for a trend", None, None)],
        [("smoke s", "could not resolve ${env:K}", window.DROPPED_FIX)])


def test_an_aborted_slow_window_says_everything_once() -> None:
    probes = [window.Probe(0.0, "GET /h", False, 5.0, "status 503"), probe(True, 2000.0, "GET /h"), probe(True, 3000.0, "GET /h"),
              window.Probe(0.0, "smoke n", False, 1.0, "status 503", critical=False),
              window.Probe(0.0, "smoke n", True, 1.0, critical=False)]
    assert judged(probes, aborted="2 probes failed in a row") == (
        "FAIL", "availability 66.7% over 12 s (3 probes), p95 3000 ms; window aborted at +0 s: 2 probes failed in a row; "
                "first failure at +0 s: GET /h: status 503", 2 / 3,
        ["window aborted at +0 s: 2 probes failed in a row; first failure at +0 s: GET /h: status 503",
         "expected p95 latency ≤ 1000 ms during the window, found 3000 ms",
         "non-critical smoke n failed 1× during the window, passing otherwise: status 503"],
        ["read the revision's logs from the first failed probe on"], None,
        [("window", "12 s, 5 probes of GET /h, smoke n every 5 s", "60 s", None),
         ("window aborted", "at +0 s: 2 probes failed in a row", "60 s unless the floor is lost or 5 fail in a row", False),
         ("availability", "66.7% (2/3)", "≥ 99% (FAIL below 95%)", False),
         ("latency p50 / p95 / p99", "2000 ms / 3000 ms / 3000 ms", "p95 ≤ 1000 ms", False),
         ("latency trend", "too few answers for a trend", None, None),
         ("GET /h", "2/3 ok, latency p50 2000 ms / p95 3000 ms", None, False),
         ("smoke n", "1/2 ok, duration p50 1 ms / p95 1 ms", None, False)],
        [])


@pytest.mark.parametrize(("ms", "status"), [pytest.param(1000.0, "PASS", id="p95-at-the-budget-passes"),
                                            pytest.param(1001.0, "WARN", id="p95-over-the-budget-warns")])
def test_the_p95_budget_is_inclusive(ms: float, status: str) -> None:
    result = judged([probe(True, ms)] * 4)
    assert (result[0], result[3], result[4], result[5]) == (
        status, [] if status == "PASS" else [f"expected p95 latency ≤ 1000 ms during the window, found {ms:.0f} ms"], [], None)
    assert result[6][2] == ("latency p50 / p95 / p99", f"{ms:.0f} ms / {ms:.0f} ms / {ms:.0f} ms", "p95 ≤ 1000 ms",
                            status == "PASS")


def test_a_failure_and_a_slow_window_put_the_failure_first() -> None:
    result = judged([window.Probe(0.0, "GET /ok", False, 1.0, "status 503"), *[probe(True, 3000.0)] * 39])
    assert result[0] == "WARN" and result[3][:2] == [
        "1/40 probes failed during the window; first at +0 s: GET /ok: status 503",
        "expected p95 latency ≤ 1000 ms during the window, found 3000 ms"]
    assert result[4] == ["read the revision's logs from the first failed probe on"]
    assert [line[0] for line in result[6]] == ["window", "availability", "latency p50 / p95 / p99", "latency trend"]
    assert result[6][1] == ("availability", "97.5% (39/40)", "≥ 99% (FAIL below 95%)", False)


def test_only_a_non_critical_path_failing_every_run_leaves_the_verdict_alone() -> None:
    result = judged([*[probe(True)] * 4, *[window.Probe(0.0, "smoke n", False, 1.0, "status 500", critical=False)] * 2])
    assert result[:6] == ("PASS", "availability 100.0% over 12 s (4 probes), p95 10 ms", 1.0,
                          ["non-critical smoke n failed every run during the window (the smoke check judges it)"], [], None)


def test_what_could_not_be_sent_never_hides_the_revisions_own_failures() -> None:
    dropped = {"GET /p": "status 401 and no token"}
    failed = judged([window.Probe(0.0, "GET /ok", False, 1.0, "status 503"), *[probe(True)] * 39], dropped=dropped)
    assert failed[3][0] == "1/40 probes failed during the window; first at +0 s: GET /ok: status 503"
    slow = judged([probe(True, 3000.0)] * 4, dropped=dropped)
    assert slow[0] == "WARN" and slow[3][0] == "expected p95 latency ≤ 1000 ms during the window, found 3000 ms"
    assert slow[7] == [("GET /p", "status 401 and no token", window.DROPPED_FIX)]
    side = judged([*[probe(True)] * 4, window.Probe(0.0, "smoke n", False, 1.0, "status 500", critical=False),
                   window.Probe(0.0, "smoke n", True, 1.0, critical=False)], dropped=dropped)
    assert side[3][0] == "non-critical smoke n failed 1× during the window, passing otherwise: status 500"
    assert (side[0], side[5]) == ("WARN", False)


def test_a_window_of_non_critical_paths_only_fails_without_failing_the_deploy() -> None:
    runs = [window.Probe(0.0, "smoke n", ok, 1.0, "" if ok else "status 500", critical=False) for ok in (False, True, True)]
    result = judged(runs, dropped={"smoke s": "no secret"})
    assert (result[0], result[5], result[7]) == ("FAIL", False, [("smoke s", "no secret", window.DROPPED_FIX)])


def test_availability_at_the_warn_line_is_ok_in_the_evidence() -> None:
    result = judged([*[probe(True)] * 99, window.Probe(0.0, "GET /ok", False, 1.0, "status 503")])
    assert result[0] == "PASS" and result[6][1] == ("availability", "99.0% (99/100)", "≥ 99% (FAIL below 95%)", True)
