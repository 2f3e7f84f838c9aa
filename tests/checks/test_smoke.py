"""smoke against the real sample service on loopback: the verdict over golden paths, its time budget and its config."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from checks import smoke
from core.model import CheckContext, CheckResult, NotMeasured, Status, Target
from demo.sample_service import SampleService
from probe.golden.paths import PathConfig
from probe.golden.session import PathOutcome, Session, StepOutcome
from tests.probe.helpers import TOKEN, evidence, http, path, run_smoke, ws

# The shape documented for users; run here so that the example cannot drift from the code.
EXAMPLE = """
paths:
  - name: create-order
    critical: true
    steps:
      - http: {name: create, method: POST, path: /orders, json: {item: "book"}, expect_status: [201],
               expect_json: ["id exists", 'item == "book"'], latency_budget_ms: 800,
               capture: {order_id: id}}
      - http: {name: read, method: GET, path: "/orders/${steps.create.order_id}", expect_status: [200]}
      - http: {name: list, path: /orders, expect_json: ["items.length >= 1"]}
  - name: agent-stream
    steps:
      - websocket: {name: chat, path: /ws/private, subprotocol: agent.v1, headers: {Authorization: "Bearer ${env:AGENT_TOKEN}"},
                    send: [{json: {prompt: "hi"}}], expect_events: [agent_started, agent_thinking, agent_completed],
                    event_field: type, expect: ['type == "agent_completed"'], timeout_s: 5}
"""


# ---------------------------------------------------------------- verdict, budget, config


GOT_500 = "expected status 2xx from GET /status/500, got 500"


@pytest.mark.parametrize(
    ("critical", "result_critical", "summary"),
    [
        ({"checkout": True}, True, f"1/2 golden paths pass; checkout (critical): {GOT_500}"),
        ({}, None, f"1/2 golden paths pass; checkout: {GOT_500}"),
        ({"browse": True}, None, f"1/2 golden paths pass; checkout: {GOT_500}"),
    ],
    ids=["critical-path-fails-critically", "non-critical-path-fails-too", "only-passing-path-critical"],
)
def test_any_failing_path_fails_the_check_and_a_critical_one_marks_it(sample: SampleService, critical: dict[str, bool],
                                                                     result_critical: bool | None, summary: str) -> None:
    paths = [path("browse", http("/ok"), critical=critical.get("browse", False)),
             path("checkout", http("/status/500"), critical=critical.get("checkout", False))]
    result = run_smoke(sample.url, paths)
    assert (result.status, result.score, result.critical, result.summary) == (Status.FAIL, 0.5, result_critical, summary)
    assert result.not_measured == []


def test_critical_failures_lead_the_summary(sample: SampleService) -> None:
    result = run_smoke(sample.url, [path("a", http("/status/503")), path("b", http("/ok")), path("c", http("/status/500"), critical=True)])
    assert result.status is Status.FAIL
    assert result.score == pytest.approx(1 / 3)
    assert result.summary == "1/3 golden paths pass; c (critical): expected status 2xx from GET /status/500, got 500 (+1 more failing)"
    assert result.reasons[1] == "a: expected status 2xx from GET /status/503, got 503"


@pytest.mark.parametrize(
    ("settings", "critical"),
    [({"paths": [path("p", http("/a"), critical=True)]}, False), ({"paths": [path("p", http("/a"))]}, False),
     ({"paths": [path("p", http("/a"))], "critical": True}, True),
     ({"paths": [path("p", http("/a"), critical=True)], "critical": False}, False)],
    ids=["critical-path-leaves-the-check-setting-alone", "no-critical-path", "explicit-true", "explicit-false"],
)
def test_check_criticality_is_only_what_is_configured(settings: dict[str, Any], critical: bool) -> None:
    # A critical path marks the result (result.critical) when it fails; the setting is not promoted by it.
    assert smoke.Config.model_validate(settings).critical is critical


READ_LOGS = "read the revision's logs around the deploy time"


def judged(name: str, kind: str, critical: bool = False) -> PathOutcome:
    """A one-step path that passed ("pass"), failed on the revision's answer ("fail") or was never sent ("unsent")."""
    config = PathConfig.model_validate(path(name, http(f"/{name}"), critical=critical))
    reasons = [] if kind == "pass" else [f"{name} broke"]
    return PathOutcome(config, [StepOutcome("s", f"GET /{name}", reasons, setup_failed=kind == "unsent")])


def judge(*paths: PathOutcome) -> CheckResult:
    session = Session(Target(service="s", url="http://127.0.0.1:9"), smoke.Config(), CheckContext(http=None))
    return smoke._judge(session, list(paths))


@pytest.mark.parametrize(
    ("paths", "status", "score", "critical", "summary", "unmeasured"),
    [
        ([judged("a", "pass"), judged("b", "pass", True)], Status.PASS, 1.0, None, "2/2 golden paths pass (a, b)", []),
        ([judged("a", "pass"), judged("b", "fail")], Status.FAIL, 0.5, None, "1/2 golden paths pass; b: b broke", []),
        ([judged("a", "pass"), judged("b", "fail", True)], Status.FAIL, 0.5, True, "1/2 golden paths pass; b (critical): b broke", []),
        ([judged("a", "pass", True), judged("b", "fail")], Status.FAIL, 0.5, None, "1/2 golden paths pass; b: b broke", []),
        ([judged("a", "pass"), judged("b", "unsent")], Status.ERROR, None, None, "1/2 golden paths pass; not measured: b: b broke",
         ["golden path b"]),
        ([judged("b", "unsent", True)], Status.ERROR, None, True, "0/1 golden paths pass; not measured: b (critical): b broke",
         ["golden path b"]),
        ([judged("a", "fail"), judged("b", "unsent", True)], Status.ERROR, None, True,
         "0/2 golden paths pass; not measured: b (critical): b broke", ["golden path b"]),
        ([judged("a", "pass"), judged("b", "fail"), judged("c", "unsent")], Status.FAIL, 0.5, None,
         "1/3 golden paths pass; b: b broke", ["golden path c"]),
        ([judged("a", "fail", True), judged("b", "unsent", True)], Status.FAIL, 0.0, True,
         "0/2 golden paths pass; a (critical): a broke", ["golden path b"]),
        ([judged("a", "fail", True), judged("b", "unsent")], Status.FAIL, 0.0, True,
         "0/2 golden paths pass; a (critical): a broke", ["golden path b"]),
        ([judged("a", "fail"), judged("b", "fail", True), judged("c", "pass")], Status.FAIL, 1 / 3, True,
         "1/3 golden paths pass; b (critical): b broke (+1 more failing)", []),
    ],
    ids=["all-pass", "non-critical-failure-fails", "critical-failure-fails-critically", "critical-path-passed",
         "unsent-alone-not-measured", "critical-unsent-alone", "critical-unsent-beside-a-non-critical-failure",
         "unsent-beside-a-failure-is-left-out-of-the-grade", "critical-unsent-beside-a-critical-failure",
         "unsent-beside-a-critical-failure", "critical-failure-leads-and-counts-the-rest"],
)
def test_judge_fails_every_failing_path_and_leaves_unsent_ones_unmeasured(
        paths: list[PathOutcome], status: Status, score: float | None, critical: bool | None, summary: str,
        unmeasured: list[str]) -> None:
    result = judge(*paths)
    assert (result.status, result.critical, result.summary) == (status, critical, summary)
    assert result.score == (pytest.approx(score) if score is not None else None)
    assert [(n.what, n.fix) for n in result.not_measured] == [(what, smoke.SETUP_FIX) for what in unmeasured]
    assert result.evidence == [e for p in paths for e in p.evidence()]  # also when nothing could be judged
    hints = [f"curl -i -X GET 'http://127.0.0.1:9/{p.config.name}'" for p in sorted(paths, key=lambda p: not p.config.critical)
             if not p.ok and not p.steps[0].setup_failed]
    assert result.next_steps == ([*hints, READ_LOGS] if status is not Status.PASS else [])


def test_curl_hints_keep_the_whole_path_and_skip_websocket_steps() -> None:
    spaced = PathOutcome(PathConfig.model_validate(path("find", http("/find"))), [StepOutcome("s", "GET /find?q=two words", ["x"])])
    chat = PathOutcome(PathConfig.model_validate(path("chat", ws())), [StepOutcome("s", "WebSocket /ws/agent", ["y"])])
    assert judge(spaced, chat).next_steps == ["curl -i -X GET 'http://127.0.0.1:9/find?q=two words'", READ_LOGS]


def test_judge_lists_every_failure_and_suggests_curl_only_for_judged_ones() -> None:
    result = judge(judged("a", "unsent"), judged("b", "fail"), judged("c", "fail", True))
    assert result.reasons == ["c (critical): c broke", "b: b broke", "a: a broke"]
    assert result.next_steps == ["curl -i -X GET 'http://127.0.0.1:9/c'", "curl -i -X GET 'http://127.0.0.1:9/b'", READ_LOGS]
    assert result.not_measured == [NotMeasured("golden path a", "a broke", smoke.SETUP_FIX)]


def test_a_critical_path_postdeploy_cannot_send_leaves_the_check_unmeasured(sample: SampleService,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTDEPLOY_TEST_UNSET", raising=False)
    keyed = path("keyed", http("/headers", headers={"X-Api-Key": "${env:POSTDEPLOY_TEST_UNSET}"}), critical=True)
    result = run_smoke(sample.url, [keyed, path("checkout", http("/status/500"))])
    why = ("GET /headers: header X-Api-Key: could not resolve ${env:POSTDEPLOY_TEST_UNSET}: "
           "expected environment variable POSTDEPLOY_TEST_UNSET to be set, found nothing")
    # A non-critical failure cannot stand in for a critical path nobody measured: no verdict, not a pass.
    assert (result.status, result.score, result.critical) == (Status.ERROR, None, True)
    assert result.summary == f"0/2 golden paths pass; not measured: keyed (critical): {why}"
    assert result.not_measured == [NotMeasured("golden path keyed", why, smoke.SETUP_FIX)]
    assert f"checkout: {GOT_500}" in result.reasons
    assert result.next_steps == [f"curl -i -X GET '{sample.url}/status/500'", READ_LOGS]
    assert ("GET", "/headers") not in sample.requests


def test_a_path_may_run_for_the_checks_whole_timeout_less_a_small_margin(sample: SampleService) -> None:
    # 60 s leaves min(2.5 s, 60 s / 4) to close and report: a path answering in 2.6 s is well within its budget.
    result = run_smoke(sample.url, [path("slow", http("/slow?ms=2600"))], timeout_s=60)
    assert result.status is Status.PASS, result.summary


def test_a_short_timeout_keeps_a_quarter_of_itself_to_close_and_report(sample: SampleService) -> None:
    # 2 s leaves min(2.5 s, 2 s / 4): paths get 1.5 s. Quick ones pass; one bounded at 1.55 s is cut by the check's budget first.
    paths = [path("quick", http("/ok")), path("slow", http("/slow?ms=3000"), timeout_s=1.55)]
    result = run_smoke(sample.url, paths, timeout_s=2)
    assert result.summary == ("1/2 golden paths pass; slow: GET /slow?ms=3000: the check's time budget ran out "
                              "(timeout_s 2 s or the run's deadline)")


def test_no_paths_is_skipped(sample: SampleService) -> None:
    result = run_smoke(sample.url, [])
    assert (result.status, result.summary) == (Status.SKIPPED, "no golden paths configured")


def test_no_url_is_skipped() -> None:
    result = run_smoke("", [path("p", http("/ok"))])
    assert (result.status, result.summary) == (Status.SKIPPED, "nothing to probe: no URL")


def test_paths_run_concurrently_each_within_its_bound(sample: SampleService) -> None:
    # The run ends in 4.5 s, less the 2.5 s kept to close and report: 2 s for five 0.6 s paths, which only fit side by side.
    slow = [path(name, http("/slow?ms=600")) for name in "abcde"]
    result = run_smoke(sample.url, [*slow, path("bounded", http("/slow?ms=3000"), http("/ok"), timeout_s=0.4)], deadline_in_s=4.5)
    assert result.summary == "5/6 golden paths pass; bounded: GET /slow?ms=3000: path bounded did not finish within 0.4 s"
    assert [e.measured for e in evidence(result, "bounded/http2")] == ["not run"]


def test_the_runs_deadline_less_the_margin_bounds_every_path(sample: SampleService) -> None:
    # The run ends in 3.5 s, less the 2.5 s kept to close and report: a 2 s answer comes too late.
    result = run_smoke(sample.url, [path("slow", http("/slow?ms=2000"))], deadline_in_s=3.5)
    assert result.summary == ("0/1 golden paths pass; slow: GET /slow?ms=2000: the check's time budget ran out "
                              "(timeout_s 60 s or the run's deadline)")
    assert [e.measured for e in evidence(result, "slow/http1")] == ["unfinished"]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([path("p", http("/a", expect_json=['name matches "("']))], "expected a valid regex after 'matches'"),
        ([path("p", http("/a", expect_json=["status = ok"]))], "expected '<path> <op> <value>'"),
        ([path("p", http("/a", expect_json=["status == healthy"]))],
         "expected a JSON literal after '==', found bare word healthy in 'status == healthy'; quote strings"),
        ([path("p", ws(expect=["type != done"]))], "found bare word done in 'type != done'"),
        ([path("p", {"http": {"path": "/a"}, "websocket": {"path": "/b"}})], "expected a mapping with one key, http or websocket"),
        ([path("p", http("/a"), {"grpc": {"path": "/a"}})], "paths.0.steps.1\n  expected a mapping with one key, http or websocket"),
        ([path("p", {"http": "/a"})], "expected a mapping with one key, http or websocket"),
        ([path("p", http("/a", unknown=1))], "Extra inputs are not permitted"),
        ([path("p", http("/a/${steps.later.json.id}"), http("/b", name="later"))],
         "refers to 'later', which is not an earlier step (earlier steps: none)"),
        ([path("p", http("/a", name="one"), http("/b/${steps.one.order_id}"))],
         "${steps.one.order_id}: expected one of status, json.PATH after steps.one, found 'order_id'"),
        ([path("p", http("/a?t=${env:TOKEN}"))], "${env:TOKEN} is a secret reference; secrets are only allowed in headers"),
        ([path("p", http("/a", json={"password": "${secret:projects/p/secrets/s/versions/1}"}))], "secrets are only allowed in headers"),
        ([path("p", http("/a", headers={"X-Id": "${nonsense}"}))], "expected ${env:NAME}"),
        ([path("p", http("/a", name="x"), http("/b", name="x"))], "steps[1] (x): duplicate step name"),
        ([path("p", http("/a")), path("p", http("/b"))], "expected unique path names, found p more than once"),
        ([path("p", http("a"))], "expected a path starting with '/'"),
        ([path("p", http("/a", json={}, text="x"))], "expected at most one body, json or text, found both"),
        ([path("p", http("/a", method="FETCH"))], "expected one of GET, HEAD"),
        ([path("p", ws(send=[{"json": 1, "text": "x"}]))], "expected exactly one of json or text"),
        ([path("p", http("/a", capture={"status": "x"}))], "other than status and json"),
        ([path("p")], "at least 1 item"),
        ([path("p", http("/a"), timeout_s=120)],
         "expected each path's and step's timeout_s ≤ the enclosing timeout_s (60 s), found p (120 s)"),
    ],
    ids=["bad-regex", "bad-expression", "bare-word", "bare-word-in-websocket-expect", "two-kinds", "unknown-kind", "not-a-mapping",
         "unknown-key", "later-step", "unknown-capture",
         "secret-in-query", "secret-in-body", "bad-reference", "duplicate-step", "duplicate-path", "relative-path", "two-bodies",
         "bad-method", "message-two-bodies", "reserved-capture-name", "no-steps", "path-timeout-over-check-timeout"],
)
def test_config_errors(paths: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        smoke.Config.model_validate({"paths": paths})
    assert message in str(caught.value)


def test_the_documented_example_runs(sample: SampleService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN", TOKEN)
    settings = yaml.safe_load(EXAMPLE)
    config = smoke.Config.model_validate(settings)
    assert not config.critical and config.paths[0].critical  # a critical path marks a failing result, not the setting
    assert [type(s).__name__ for p in config.paths for s in p.steps] == ["HttpStep"] * 3 + ["WebSocketStep"]
    result = run_smoke(sample.url, **settings)
    assert result.status is Status.PASS, result.reasons
    assert result.summary == "2/2 golden paths pass (create-order, agent-stream)"
