"""report.slack.message: the whole FAIL message as a golden file, and the properties every message keeps (what it
shows, escaping, Block Kit's limits)."""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.model import Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Target
from report import slack
from report.document import make_report
from report.score import score
from tests.report.test_render import _texts, representative_report

GOLDEN = Path(__file__).parent.parent / "data" / "golden" / "slack"
REPORT_URL = "https://storage.cloud.google.com/acme-reports/orders/b-7/report.html"
WEIGHTS = {"Deployment": 20.0, "Migration": 25.0, "Stability": 20.0, "Business": 20.0, "Testing": 15.0}
PING = "<!channel> see <https://evil.example|here>"
# Block Kit: https://api.slack.com/reference/block-kit/blocks
HEADER_MAX, SECTION_MAX, FIELD_MAX, MAX_FIELDS, MAX_BLOCKS, URL_MAX = 150, 3000, 2000, 10, 50, 3000


def fail_report(text: str = "", *, actions: list[dict[str, Any]] | None = None, rerun: dict[str, Any] | None = None,
                log_url: str = "https://console.cloud.google.com/cloud-build/builds/b-7?project=123") -> dict[str, Any]:
    """A FAIL with every part of the message: judged reasons with evidence, a SKIPPED and an ERROR check, an action.
    ``text`` is added to every value that comes from a service or a build (hostile-text tests)."""
    target = Target(service="orders", project="acme-prod", region="us-central1", revision="orders-00042-new",
                    previous_revision="orders-00041-old", url="https://orders-abc-uc.a.run.app", image="orders:v2")
    build = Build(id="b-7", status="SUCCESS", project_id="acme-prod", trigger_id="trig-1",
                  substitutions={"TRIGGER_NAME": f"orders-main{text}", "BRANCH_NAME": "main",
                                 "COMMIT_SHA": "9d2b1c0e4f5a6b7c8d9e"}, log_url=log_url)
    outcomes = [
        Outcome("deployment", "Deployment", True, CheckResult(
            Status.PASS, "revision orders-00042-new is Ready and serves 100%",
            [Evidence("Ready condition", "CONDITION_SUCCEEDED", "CONDITION_SUCCEEDED", ok=True)], 1.0), 40),
        Outcome("health", "Deployment", True, CheckResult(
            Status.FAIL, f"expected status 200 from /health, got 503 after 3 tries{text}",
            [Evidence("ran against", "https://orders-abc-uc.a.run.app/health"),
             Evidence("latency of GET /health", "8 ms", "median ≤ 500 ms", "7 ms", ok=True),
             Evidence("HTTP status of GET /health", f"503, 503, 503{text}", "200", "200, 200, 200", ok=False),
             Evidence("JSON status", "degraded", 'status == "healthy"', None, ok=False),
             Evidence("tries passing", "0/3", "3/3", None, ok=False)], 0.0), 2013),
        Outcome("logs", "Stability", True, CheckResult(
            Status.FAIL, "new error since deploy: KeyError at orders/api.py:7 load_customer (10×, 9.88/min)",
            [Evidence("error entries", "16 (15.81/min)", None, "3 (0.3/min)", ok=True),
             Evidence("new signature: KeyError at orders/api.py:7 load_customer",
                      "10× (9.88/min), first seen 2026-12-01 20:16:44Z: Traceback (most recent call last):\n"
                      '  File "/srv/orders/api.py", line 7, in load_customer\n    return CUSTOMERS[customer_id]\n'
                      "KeyError: 'c-41'", None, "0× (0/min)", ok=False)], 0.0), 1200),
        Outcome("smoke", "Business", False, CheckResult(
            Status.WARN, "2/3 golden paths pass; list-orders: latency 900 ms above 500 ms",
            [Evidence("list-orders/http1: latency of GET /orders", "900 ms", "≤ 500 ms", "120 ms", ok=False)], 0.6), 733),
        Outcome("tests", "Testing", False, CheckResult(
            Status.FAIL, "5/6 tests passed (83.3%, minimum 100%)",
            [Evidence("pass rate", {"passed": 5, "failed": 1}, "≥ 100%", None, ok=False)], 0.3), 12),
        Outcome("imports", "Migration", False, CheckResult(
            Status.ERROR, "could not run the image: permission denied", score=None,
            not_measured=[NotMeasured("imports", f"run.jobs.runWithOverrides denied{text}",
                                      "grant roles/run.developer to postdeploy@acme-prod.iam.gserviceaccount.com")]), 30),
        Outcome("metrics", "Stability", False, CheckResult(
            Status.SKIPPED, f"no metric source: Cloud Monitoring needs a Cloud Run revision and its project{text}"), 0),
    ]
    scored = score(outcomes, WEIGHTS, 90.0, 75.0)
    started = datetime(2026, 12, 1, 20, 16, 44, tzinfo=UTC)
    report = make_report(target, build, scored, outcomes, started, started, actions=actions or [
        {"kind": "rollback", "outcome": "done", "detail": f"traffic moved back to orders-00041-old (100%){text}"}],
        rerun=rerun)
    return report


def _mrkdwn(msg: dict[str, Any]) -> list[str]:
    """The texts Slack parses as mrkdwn: section text and fields, context elements."""
    found = []
    for block in msg["blocks"]:
        found += [block["text"]["text"]] if block["type"] == "section" and "text" in block else []
        found += [f["text"] for f in block.get("fields", [])]
        found += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return found


def _section(msg: dict[str, Any], title: str) -> str:
    return next(b["text"]["text"] for b in msg["blocks"] if b["type"] == "section" and "text" in b
                and b["text"]["text"].startswith(title))


def test_golden_fail_message() -> None:
    actual = json.dumps(slack.message(fail_report(), REPORT_URL), indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / "fail.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            "golden/slack/fail.json", "rendered"))
        pytest.fail(f"the message differs from tests/data/golden/slack/fail.json (UPDATE_GOLDEN=1 rewrites it):\n{diff}")


def test_verdict_and_score_come_first_then_where_it_was_deployed() -> None:
    msg = slack.message(fail_report(), REPORT_URL)
    assert msg["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "❌ FAIL 33.9/100 · orders", "emoji": True}}
    fields = [f["text"] for f in msg["blocks"][1]["fields"]]
    assert fields == [
        "*Service*\n`orders` · us-central1",
        "*Revision*\n`orders-00042-new`\nprevious `orders-00041-old`",
        "*Build*\norders-main · main\n`b-7`",
        "*Commit*\n`9d2b1c0` · <https://console.cloud.google.com/cloud-build/builds/b-7?project=123|build log>",
    ]


@pytest.mark.parametrize(("rerun", "suffix"), [
    pytest.param(None, "", id="first-validation"),
    pytest.param({"id": "r-1", "kind": "rerun"}, " · rerun", id="rerun"),
    pytest.param({"id": "follow-up-24h", "kind": "follow-up"}, " · follow-up after 24h", id="follow-up"),
    pytest.param({"id": "step-2", "kind": "step", "step": 2}, " · step 2", id="step-without-a-rollout"),
])
def test_the_title_says_when_the_deploy_was_checked_again(rerun: dict[str, Any] | None, suffix: str) -> None:
    msg = slack.message(fail_report(rerun=rerun), REPORT_URL)
    assert msg["blocks"][0]["text"]["text"] == f"❌ FAIL 33.9/100 · orders{suffix}"
    assert msg["text"].startswith("FAIL orders orders-00042-new 33.9/100" + (f" ({suffix[3:]})" if suffix else "") + " — ")


def test_a_step_counts_the_rollout_steps_from_the_actions() -> None:
    actions = [{"kind": "promote", "outcome": "done", "detail": "10% → 50%", "rollout": {"steps": [10, 50, 100]}}]
    msg = slack.message(fail_report(actions=actions, rerun={"id": "step-2", "kind": "step", "step": 2}), REPORT_URL)
    assert msg["blocks"][0]["text"]["text"].endswith(" · step 2 of 3")


def test_a_long_service_name_gives_way_in_the_header_never_the_verdict_or_the_suffix() -> None:
    report = fail_report(rerun={"id": "follow-up-24h", "kind": "follow-up"})
    report["target"]["service"] = "s" * 400
    title = slack.message(report, REPORT_URL)["blocks"][0]["text"]["text"]
    assert len(title) == HEADER_MAX
    assert title.startswith("❌ FAIL 33.9/100 · sss") and title.endswith("s… · follow-up after 24h")


def test_three_reasons_each_with_what_was_measured_the_threshold_and_the_previous_value() -> None:
    why = _section(slack.message(fail_report(), REPORT_URL), "*Why*")
    assert why.splitlines()[1:] == [
        "• *health*: expected status 200 from /health, got 503 after 3 tries",
        "    ↳ HTTP status of GET /health: measured 503, 503, 503 · threshold 200 · previous 200, 200, 200",
        "    ↳ JSON status: measured degraded · threshold status == \"healthy\"",
        "• *logs*: new error since deploy: KeyError at orders/api.py:7 load_customer (10×, 9.88/min)",
        "    ↳ new signature: KeyError at orders/api.py:7 load_customer: measured 10× (9.88/min), first seen "
        "2026-12-01 20:16:44Z: Traceback (most recent call last): File \"/srv/orders/api.py\", line 7, … "
        "· previous 0× (0/min)",
        "• *tests*: 5/6 tests passed (83.3%, minimum 100%)",
        "    ↳ pass rate: measured {\"passed\": 5, \"failed\": 1} · threshold ≥ 100%",
        "_+1 more in the report_",
    ]


@pytest.mark.parametrize(("reason", "check"), [
    pytest.param("health: expected 200, got 503", "health", id="check-first"),
    pytest.param("capped at WARN, a check failed: smoke: latency 900 ms", "smoke", id="capped"),
    pytest.param("critical check not measured: logs: no credentials", "logs", id="critical-not-measured"),
    pytest.param("the service orders was not found in us-central1", None, id="a-target-problem"),
])
def test_a_reason_finds_the_check_it_names(reason: str, check: str | None) -> None:
    report = fail_report()
    report["reasons"] = [reason]
    why = _section(slack.message(report, REPORT_URL), "*Why*")
    rows = {"health": "HTTP status of GET /health", "smoke": "list-orders/http1", "logs": "new signature"}
    assert [name for name, row in rows.items() if row in why] == ([check] if check else [])


def test_a_pass_has_no_why_section() -> None:
    report = fail_report()
    report["reasons"] = ["not measured: imports, metrics"]  # a gap is listed where gaps are, not as a reason
    msg = slack.message(report, REPORT_URL)
    assert not any(t.startswith("*Why*") for t in _mrkdwn(msg))


def test_what_was_not_measured_is_listed_with_why_and_the_fix() -> None:
    gaps = _section(slack.message(fail_report(), REPORT_URL), "*Not measured*")
    assert gaps.splitlines() == [
        "*Not measured* (not scored)",
        "• imports (ERROR): run.jobs.runWithOverrides denied — fix: grant roles/run.developer to "
        "postdeploy@acme-prod.iam.gserviceaccount.com",
        "• metrics (SKIPPED): no metric source: Cloud Monitoring needs a Cloud Run revision and its project",
    ]


def test_a_judged_check_that_left_part_out_is_listed_too_and_a_full_run_lists_nothing() -> None:
    report = fail_report()
    report["not_measured"].append({"check": "smoke", "what": "agent", "why": "no token for the WebSocket", "fix": "",
                                   "critical": False})
    assert "• smoke: agent: no token for the WebSocket" in _section(slack.message(report, REPORT_URL), "*Not measured*")
    report["checks"] = [c for c in report["checks"] if c["status"] not in ("SKIPPED", "ERROR")]
    report["not_measured"] = []
    assert not any(t.startswith("*Not measured*") for t in _mrkdwn(slack.message(report, REPORT_URL)))


def test_the_action_taken_is_said_as_before() -> None:
    msg = slack.message(fail_report(), REPORT_URL)
    assert "*rollback: done* — traffic moved back to orders-00041-old (100%)" in _mrkdwn(msg)


@pytest.mark.parametrize(("log_url", "shown"), [
    pytest.param("https://ci.example/b?a=1&b=2", "<https://ci.example/b?a=1%26b=2|build log>", id="ampersand-encoded"),
    pytest.param("https://ci.example/x|y>z", "<https://ci.example/x%7Cy%3Ez|build log>", id="link-breakers-encoded"),
    pytest.param("javascript:alert(1)", "build log", id="javascript-is-no-link"),
    pytest.param("http://ci.example/", "build log", id="http-is-no-link"),
    pytest.param("", None, id="no-log-no-link"),
])
def test_the_build_log_link(log_url: str, shown: str | None) -> None:
    commit = slack.message(fail_report(log_url=log_url), REPORT_URL)["blocks"][1]["fields"][3]["text"]
    assert commit == "*Commit*\n`9d2b1c0`" + (f" · {shown}" if shown else "")


def test_nothing_from_a_service_or_a_build_can_ping_or_link() -> None:
    msg = slack.message(fail_report(PING), REPORT_URL)
    texts = _mrkdwn(msg)
    escaped = PING.replace("<", "&lt;").replace(">", "&gt;")
    assert sum(t.count(escaped) for t in texts) == 6  # trigger, reason, its evidence row, two gaps, the action
    ours = re.compile(r"<https://console\.cloud\.google\.com/[^<>|]*\|build log>")
    for text in texts:
        assert "<" not in ours.sub("", text) and ">" not in ours.sub("", text).replace("->", ""), text
    assert "<!" not in msg["text"]


def test_the_message_fits_block_kit_whatever_the_report_holds() -> None:
    report = fail_report("x" * 5000, actions=[{"kind": "rollback", "outcome": "failed", "detail": "&" * 4000}] * 60)
    report["reasons"] = [f"health: {'<' * 3000}"] * 40
    report["checks"][1]["evidence"] = [{"what": "w" * 900, "measured": "&" * 9000, "threshold": "t" * 900,
                                        "previous": "p" * 900, "ok": False}] * 30
    report["target"]["service"] = report["target"]["revision"] = report["target"]["previous_revision"] = "r" * 3000
    report["not_measured"] += [{"check": "imports", "what": "x", "why": "&" * 3000, "fix": "f" * 3000}] * 20
    msg = slack.message(report, "https://storage.example/" + "a" * 4000)
    assert len(msg["blocks"]) <= MAX_BLOCKS
    for block in msg["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] in ("section", "context"):
            for text in [block["text"]["text"]] if "text" in block else []:
                assert len(text) <= SECTION_MAX
            assert len(block.get("fields", [])) <= MAX_FIELDS
            assert all(len(f["text"]) <= FIELD_MAX for f in block.get("fields", []))
            assert all(len(e["text"]) <= SECTION_MAX for e in block.get("elements", []))
        assert all(len(e["url"]) <= URL_MAX for e in block.get("elements", []) if "url" in e)
    assert not any(re.search(r"&[a-z]{0,4}…", t) for t in _texts(msg))  # never cut through an escaped character
    assert "_+3" in _section(msg, "*Why*")  # the reasons past the first three are counted, not shown
    assert sum(1 for b in msg["blocks"] if b["type"] == "section" and "text" in b
               and b["text"]["text"].startswith("*rollback")) == slack.MAX_ACTIONS


def test_message_is_pure() -> None:
    report = fail_report()
    before = copy.deepcopy(report)
    assert slack.message(report, REPORT_URL) == slack.message(report, REPORT_URL)
    assert report == before


def test_bidirectional_controls_are_shown_by_name_in_slack_too() -> None:
    report = representative_report()
    report["reasons"][0] = "invoice\u202egnp.exe"
    texts = _texts(slack.message(report, "https://storage.cloud.google.com/b/r.html"))
    assert not any("\u202e" in t for t in texts) and any("invoice⟨U+202E⟩gnp.exe" in t for t in texts)
