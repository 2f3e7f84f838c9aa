"""report.render and report.slack: golden files for the whole text, plus the properties that must hold."""

from __future__ import annotations

import difflib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.model import Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Target, Verdict
from report import slack
from report.document import make_report
from report.render import render_html, render_json, render_markdown, render_table
from report.score import CategoryScore, Scored, Unmeasured

GOLDEN = Path(__file__).parent.parent / "data" / "golden"
SCRIPT = "<script>alert(1)</script>"


def representative_report() -> dict[str, Any]:
    """A WARN report touching every part of the templates, with hostile and non-ASCII text."""
    target = Target(
        service="café-orders", project="acme-prod", region="us-central1", revision="café-orders-00042-abc",
        previous_revision="café-orders-00041-xyz", url="https://café-orders-abc-uc.a.run.app",
        image="us-central1-docker.pkg.dev/acme-prod/apps/orders@sha256:1f2e3d", match_rule="label gcb-build-id",
    )
    build = Build(
        id="5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77", status="SUCCESS", project_id="acme-prod", trigger_id="trig-1",
        substitutions={"TRIGGER_NAME": "orders-main", "BRANCH_NAME": "main", "COMMIT_SHA": "9d2b1c0e4f5a6b7c8d9e"},
        log_url="https://console.cloud.google.com/cloud-build/builds/5f1c2a9e?project=123",
    )
    outcomes = [
        Outcome("deployment", "Deployment", True, CheckResult(
            Status.PASS, "revision café ✓ is Ready and serves 100%",
            [Evidence("Ready condition", "CONDITION_SUCCEEDED", "CONDITION_SUCCEEDED", ok=True),
             Evidence("traffic share", "100%", "> 0%", "100%", ok=True)], 1.0,
        ), 41),
        Outcome("health", "Deployment", True, CheckResult(
            Status.WARN, "2/3 tries of /health healthy; expected status | 200, got 503",
            [Evidence("HTTP status of GET /health", "200, 503, 200", "200", ok=False),
             Evidence("JSON a|b", {"state": "ok|degraded"}, 'a|b == "ok"', None, ok=False),
             Evidence("body", SCRIPT, None, None)],
            0.6667, reasons=["expected status 200 from /health, got 503"], next_steps=["curl -i https://café-orders/health"],
        ), 2013),
        Outcome("smoke", "Business", False, CheckResult(
            Status.FAIL, f"checkout returned {SCRIPT}", [Evidence("POST /checkout", 500, 201, 201, ok=False)],
            next_steps=["replay the checkout sequence against the tag URL"],
        ), 733),
        Outcome("imports", "Migration", False, CheckResult(Status.SKIPPED, "no import list configured"), 0),
    ]
    scored = Scored(
        score=81.5, verdict=Verdict.WARN,
        categories=[
            CategoryScore("Deployment", 20.0, 16.67, ["deployment", "health"]),
            CategoryScore("Business", 20.0, 0.0, ["smoke"]),
            CategoryScore("Migration", 25.0, None, ["imports"], missing_share=1.0),
        ],
        not_assessed=["Stability", "Testing"],
        reasons=[f"smoke: checkout returned {SCRIPT}", "health: 2/3 tries of /health healthy; expected status | 200, got 503",
                 "not measured: imports"],
        missing_weight_share=0.385,
        not_measured=[Unmeasured("imports", NotMeasured("imports", "no import list configured <b>", "set checks.imports.modules | a|b"))],
    )
    return make_report(target, build, scored, outcomes,
                       datetime(2026, 11, 25, 10, 3, 42, 123456, UTC), datetime(2026, 11, 25, 10, 3, 45, tzinfo=UTC))


RENDERERS = [
    pytest.param(render_markdown, "report.md", id="markdown"),
    pytest.param(render_html, "report.html", id="html"),
    pytest.param(render_json, "report.json", id="json"),
]


@pytest.mark.parametrize(("render", "name"), RENDERERS)
def test_golden(render: Any, name: str) -> None:
    actual = render(representative_report())
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            f"golden/{name}", f"rendered {name}"))
        print(diff)
        pytest.fail(f"{name} differs from tests/data/golden/{name} (UPDATE_GOLDEN=1 rewrites it):\n{diff}")


def test_html_escapes_hostile_text() -> None:
    html = render_html(representative_report())

    assert SCRIPT not in html
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "café ✓" in html


def test_html_shows_structured_evidence_as_json() -> None:
    html = render_html(representative_report())

    assert "{&#34;state&#34;: &#34;ok|degraded&#34;}" in html


def _tables(markdown: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _columns(row: str) -> int:
    """Cells in a GFM table row: unescaped pipes minus one."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_rows_keep_their_column_count_despite_pipes() -> None:
    markdown = render_markdown(representative_report())

    tables = _tables(markdown)
    assert len(tables) == 6  # summary, categories, not measured, three checks with evidence
    for table in tables:
        assert {_columns(row) for row in table} == {_columns(table[0])}, table
    assert r"a\|b" in markdown
    assert r"ok\|degraded" in markdown


def test_json_round_trips_with_every_design_field() -> None:
    text = render_json(representative_report())
    report = json.loads(text)

    assert report == representative_report()
    assert "café ✓" in text  # UTF-8, not \u escapes
    assert report["schema"] == "postdeploy.report/v1"
    assert {"score", "verdict", "target", "build", "categories", "checks", "started_at", "finished_at"} <= set(report)
    assert (report["score"], report["verdict"]) == (81.5, "WARN")
    assert {"project", "region", "service", "revision", "previous_revision", "url", "image"} <= set(report["target"])
    assert report["build"] == {
        "id": "5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77", "status": "SUCCESS", "trigger": "orders-main", "branch": "main",
        "commit": "9d2b1c0e4f5a6b7c8d9e", "log_url": "https://console.cloud.google.com/cloud-build/builds/5f1c2a9e?project=123",
    }
    for category in report["categories"]:
        assert {"name", "weight", "score", "checks"} <= set(category)
    for check in report["checks"]:
        assert {"name", "category", "status", "score", "critical", "summary", "evidence", "duration_ms"} <= set(check)
        for evidence in check["evidence"]:
            assert {"what", "measured", "threshold", "previous"} <= set(evidence)
    assert [c["score"] for c in report["checks"]] == [1.0, 0.7, 0.0, None]  # WARN 0.6667 → 0.5 + 0.3 × 0.6667
    assert (report["started_at"], report["finished_at"]) == ("2026-11-25T10:03:42.123456Z", "2026-11-25T10:03:45Z")


def test_table_has_the_verdict_and_every_check() -> None:
    table = render_table(representative_report())

    assert "WARN" in table.splitlines()[0]
    assert "81.5/100" in table.splitlines()[0]
    for name in ("deployment", "health", "smoke", "imports"):
        assert re.search(rf"^\s+\S+ {name}\s", table, re.MULTILINE), name
    assert "not assessed: Stability, Testing" in table


WEBHOOK = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/xoxbSECRETTOKEN3"
REPORT_URL = "https://storage.googleapis.com/acme-reports/café-orders/5f1c2a9e/report.html"


def _texts(node: Any) -> list[str]:
    """Every string anywhere in a Block Kit message."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [t for v in node.values() for t in _texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v)]
    return []


def _blocks(msg: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in msg["blocks"] if b["type"] == kind]


def test_slack_header_has_verdict_and_score() -> None:
    header = _blocks(slack.message(representative_report(), REPORT_URL), "header")

    assert len(header) == 1
    assert "WARN" in header[0]["text"]["text"]
    assert "81.5/100" in header[0]["text"]["text"]
    assert "café-orders" in header[0]["text"]["text"]


def test_slack_shows_at_most_three_reasons() -> None:
    report = representative_report()
    report["reasons"] = [f"reason number {i}" for i in range(1, 6)]

    text = "\n".join(_texts(slack.message(report, REPORT_URL)))

    assert [f"reason number {i}" in text for i in range(1, 6)] == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("link", "button"),
    [
        pytest.param(REPORT_URL, True, id="https-link-is-a-button"),
        pytest.param("reports/café-orders/5f1c2a9e/report.html", False, id="local-path-is-context-text"),
        pytest.param("/tmp/reports/café-orders/5f1c2a9e/report.html", False, id="absolute-local-path"),
    ],
)
def test_slack_link(link: str, button: bool) -> None:
    msg = slack.message(representative_report(), link)

    buttons = [e for b in _blocks(msg, "actions") for e in b["elements"] if e["type"] == "button"]
    if button:
        assert [b["url"] for b in buttons] == [link]
    else:
        assert buttons == []
        assert f"Report: {link}" in [e["text"] for b in _blocks(msg, "context") for e in b["elements"]]


def test_slack_message_never_contains_the_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTDEPLOY_SLACK_WEBHOOK", WEBHOOK)

    dumped = json.dumps(slack.message(representative_report(), REPORT_URL), ensure_ascii=False)

    for secret in ("hooks.slack.com", "T0SECRET1", "B0SECRET2", "xoxbSECRETTOKEN3"):
        assert secret not in dumped


def test_slack_escapes_control_sequences_in_reasons() -> None:
    report = representative_report()
    report["reasons"] = ["health: expected status == \"ok\", found \"<!channel> see <https://evil.example|here>\""]

    text = "\n".join(_texts(slack.message(report, REPORT_URL)))

    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
