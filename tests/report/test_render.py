"""report.render and report.slack: golden files for the whole text, plus the properties that must hold."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from core.model import Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Target, Verdict
from report import slack
from report.document import make_report
from report.render import markdown_code, markdown_link, markdown_text, render_html, render_json, render_markdown, render_table
from report.score import CategoryScore, Scored, Unmeasured
from tests.report.test_golden_files import compare, page

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
    compare(GOLDEN / name, page(actual) if name.endswith(".html") else actual)


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


# --- Markdown built from message fields stays text -----------------------------------------------------------------

HOSTILE = "x`y``[click](javascript:alert(1))<img src=x onerror=alert(1)>|*a*_b_ $c$ &lt;\n# h\r\n- i\r1. j"
FLAT = HOSTILE.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")  # what a viewer must show
LOG_URL = "https://ci.example/log?id=1) [evil](javascript:alert(5)"
# CommonMark with GFM tables and raw HTML on, as GitHub, GitLab and most viewers parse it; and, unlike them, a link to
# anything is accepted (markdown-it drops javascript: links itself; a laxer viewer would not), so a smuggled one shows.
MARKDOWN = MarkdownIt("commonmark").enable("table")
MARKDOWN.validateLink = lambda url: True  # type: ignore[method-assign]


def hostile_report() -> dict[str, Any]:
    """The representative report with every field that comes from a message or a service made hostile."""
    report = representative_report()
    report["target"].update(service=HOSTILE, revision=HOSTILE, previous_revision=HOSTILE, image=HOSTILE, url=HOSTILE,
                            match_rule=HOSTILE, project=HOSTILE, region=HOSTILE)
    report["build"].update(id=HOSTILE, status=HOSTILE, trigger=HOSTILE, branch=HOSTILE, commit=HOSTILE, log_url=LOG_URL)
    report["summary"] = HOSTILE
    report["reasons"].append(HOSTILE)
    report["next_steps"].append(HOSTILE)
    report["not_measured"][0].update(what=HOSTILE, why=HOSTILE, fix=HOSTILE)
    check = report["checks"][1]
    check["summary"] = HOSTILE
    check["evidence"][0].update(what=HOSTILE, measured=HOSTILE, threshold=HOSTILE, previous=HOSTILE)
    return report


def _tokens(tokens: list[Token]) -> list[Token]:
    """Every token, inline children included."""
    return [t for token in tokens for t in [token, *_tokens(token.children or [])]]


def _text(inline: Token) -> str:
    """The text a viewer shows for an inline token: what is left once escapes and entities are read."""
    return "".join(c.content for c in inline.children or [] if c.type in ("text", "text_special", "code_inline"))


def test_markdown_keeps_every_message_field_as_text() -> None:
    tokens = MARKDOWN.parse(render_markdown(hostile_report()))
    every = _tokens(tokens)

    assert [t.attrGet("href") for t in every if t.type == "link_open"] == [
        "https://ci.example/log?id=1%29%20%5Bevil%5D%28javascript:alert%285%29"]
    assert [t.type for t in every if t.type in ("image", "html_inline", "html_block", "fence", "code_block")] == []
    # next steps, scores, why, not measured, checks (failures first: smoke, health, imports, deployment)
    assert [t.tag for t in every if t.type == "heading_open"] == ["h1", "h2", "h2", "h2", "h2", "h2", "h3", "h3", "h3", "h3"]
    assert [t.type for t in tokens if t.type.endswith("list_open")] == ["ordered_list_open", "bullet_list_open"]
    inlines = [t for t in tokens if t.type == "inline"]
    assert _text(inlines[0]) == f"⚠️ WARN · {FLAT} · {FLAT} · 81.5/100"
    assert _text(inlines[1]) == FLAT  # the summary paragraph
    codes = [t.content for t in every if t.type == "code_inline"]
    assert codes.count(FLAT) == 5 and set(codes) == {FLAT, FLAT[:12]}  # service, revision, previous, image, build; commit
    cells = [_text(t) for t in inlines]
    assert f"{FLAT} in {FLAT} ({FLAT})" in cells  # service, region, project
    assert f"{FLAT} (previous: {FLAT}) — matched by {FLAT}" in cells
    assert f"{FLAT} {FLAT} · trigger {FLAT} · branch {FLAT} · commit {FLAT[:12]} · build log" in cells
    assert cells.count(FLAT) >= 8  # url, the check's summary, evidence and the not-measured row, a reason, a next step


def test_markdown_tables_keep_their_columns_whatever_the_fields_hold() -> None:
    tokens = MARKDOWN.parse(render_markdown(hostile_report()))

    rows: list[int] = []
    widths: list[list[int]] = []
    for token in tokens:
        if token.type == "table_open":
            widths.append([])
        elif token.type == "tr_open":
            rows.append(0)
        elif token.type in ("td_open", "th_open"):
            rows[-1] += 1
        elif token.type == "tr_close":
            widths[-1].append(rows.pop())
    assert [sorted(set(w)) for w in widths] == [[2], [4], [4], [4], [4], [4]]
    assert [len(w) for w in widths] == [7, 4, 2, 2, 4, 3]  # facts, scores, not measured, smoke, health, deployment


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,<script>alert(1)</script>",
                                 "http://ci.example/log", " https://ci.example/log", "https://", "//ci.example/log", ""],
                         ids=["javascript", "javascript-upper", "data", "plain-http", "leading-space", "no-host",
                              "scheme-relative", "empty"])
def test_a_log_url_that_is_not_https_is_not_a_link(url: str) -> None:
    report = representative_report()
    report["build"]["log_url"] = url

    markdown, html = render_markdown(report), render_html(report)

    assert [t for t in _tokens(MARKDOWN.parse(markdown)) if t.type == "link_open"] == []
    assert "build log" not in markdown and "build log" not in html
    assert "href" not in html


def test_html_keeps_every_message_field_as_text() -> None:
    html = render_html(hostile_report())

    assert re.findall(r"<(a|img|script)\b[^>]*>", html) == [
        "a"]  # the build log link only
    assert re.findall(r'href="([^"]*)"', html) == ["https://ci.example/log?id=1) [evil](javascript:alert(5)"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("orders-00042-new", "orders-00042-new", id="plain-stays-plain"),
        pytest.param("[x](javascript:alert(1))", r"\[x\]\(javascript:alert\(1\)\)", id="link"),
        pytest.param("![i](https://x/i.png)", r"!\[i\]\(https://x/i.png\)", id="image"),
        pytest.param("<script>&amp;", "&lt;script&gt;&amp;amp;", id="html-and-entity"),
        pytest.param("a|b", r"a\|b", id="pipe"),
        pytest.param("`code`", r"\`code\`", id="backtick"),
        pytest.param("*a* _b_ ~c~ $d$", r"\*a\* \_b\_ \~c\~ \$d\$", id="emphasis-strike-math"),
        pytest.param("\\[x]", r"\\\[x\]", id="backslash-cannot-undo-an-escape"),
        pytest.param("a\nb\r\nc\rd", "a b c d", id="line-breaks-become-spaces"),
        pytest.param("a\x00b\x1bc\x7f", "a b c", id="control-characters-become-spaces"),
        pytest.param("# h", r"\# h", id="heading-at-the-start"),
        pytest.param("- item", r"\- item", id="bullet-at-the-start"),
        pytest.param("+ item", r"\+ item", id="plus-at-the-start"),
        pytest.param("= x", r"\= x", id="setext-at-the-start"),
        pytest.param("12. item", r"12\. item", id="ordered-at-the-start"),
        pytest.param("  # h  ", r"\# h", id="trimmed-then-escaped"),
        pytest.param("a # b - c 1. d", "a # b - c 1. d", id="block-marks-inside-stay"),
        pytest.param(None, "", id="none"),
        pytest.param({"k": "[x](y)"}, r'{"k": "\[x\]\(y\)"}', id="structured-as-json"),
        pytest.param(3, "3", id="number"),
    ],
)
def test_markdown_text(value: Any, text: str) -> None:
    assert markdown_text(value) == text


@pytest.mark.parametrize(
    ("value", "span"),
    [
        pytest.param("orders-00042-new", "`orders-00042-new`", id="plain"),
        pytest.param("a`b", "``a`b``", id="one-backtick-inside"),
        pytest.param("a``b`c", "```a``b`c```", id="longest-run-plus-one"),
        pytest.param("`a", "`` `a ``", id="backtick-first-padded"),
        pytest.param("a`", "`` a` ``", id="backtick-last-padded"),
        pytest.param(" a", "`  a `", id="space-first-padded"),
        pytest.param("a|b", r"`a\|b`", id="pipe-escaped-for-the-table"),
        pytest.param("a\nb\r\nc", "`a b c`", id="line-breaks-become-spaces"),
        pytest.param("<b>[x](y)*_", "`<b>[x](y)*_`", id="literal-inside-a-code-span"),
        pytest.param("", "", id="empty-is-no-span"),
    ],
)
def test_markdown_code(value: str, span: str) -> None:
    assert markdown_code(value) == span
    if span:  # what a viewer shows is the value, line breaks as spaces
        cell = _tokens(MARKDOWN.parse(f"| c |\n|---|\n| {span} |\n"))
        assert [t.content for t in cell if t.type == "code_inline"] == [" ".join(value.splitlines())]


@pytest.mark.parametrize(
    ("url", "link"),
    [
        pytest.param("https://ci.example/b/1?project=12&x=y#frag", "[log](https://ci.example/b/1?project=12&x=y#frag)",
                     id="plain"),
        pytest.param("https://ci.example/a b)(<>[]|`\"\\{}^", "[log](https://ci.example/a%20b%29%28%3C%3E%5B%5D%7C%60%22%5C%7B%7D%5E)",
                     id="breaking-characters-encoded"),
        pytest.param("https://ci.example/\n[x](javascript:1)", "[log](https://ci.example/%0A%5Bx%5D%28javascript:1%29)",
                     id="newline-encoded"),
        pytest.param("https://ci.example/café", "[log](https://ci.example/caf%C3%A9)", id="non-ascii-encoded"),
        pytest.param("javascript:alert(1)", "", id="javascript-is-no-link"),
        pytest.param("http://ci.example/", "", id="http-is-no-link"),
        pytest.param("https://", "", id="no-host-is-no-link"),
    ],
)
def test_markdown_link(url: str, link: str) -> None:
    assert markdown_link(url, "log") == link


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


@pytest.mark.parametrize("render", [render_html, render_markdown], ids=["html", "markdown"])
def test_bidirectional_controls_from_a_service_are_shown_not_applied(render: Any) -> None:
    report = representative_report()
    report["summary"] = report["reasons"][0] = "invoice\u202egnp.exe and \u2066isolated\u2069"
    page = render(report)
    assert "\u202e" not in page and "\u2066" not in page and "\u2069" not in page
    assert "invoice⟨U+202E⟩gnp.exe and ⟨U+2066⟩isolated⟨U+2069⟩" in page


def test_the_banner_quotes_a_long_reason_clipped() -> None:
    report = representative_report()
    report["reasons"][0] = "expected 200, found " + "x" * 5000
    page = render_html(report)
    banner = page.split("</header>", 1)[0]
    assert ("expected 200, found " + "x" * 279 + "…") in banner and "x" * 300 not in banner


def test_a_report_without_a_revision_says_nothing_of_changes() -> None:
    report = representative_report()
    report["changes"] = {"previous": "", "changes": [], "unknown": "the new revision's configuration was not read"}
    assert "What changed" in render_html(report)
    report["target"]["revision"] = ""  # validated by URL only: no revision to compare
    assert "What changed" not in render_html(report)
