"""Golden files for a report of each verdict in every rendering a person reads: Markdown, HTML and the Slack message.

The reports come from the real pipeline pieces (outcomes → report.score → report.document.make_report) at fixed
times, so a rendering changes only when the code does. A difference fails with a unified diff and the command that
accepts the new output: ``make golden`` (``UPDATE_GOLDEN=1``), then read the diff in ``git diff tests/data/golden``.
tests/report/test_browser.py opens the same reports, with hostile text in them, in Chromium.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.config import DEFAULT_PASS, DEFAULT_WARN, DEFAULT_WEIGHTS
from core.model import Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Target, TrafficInfo, cannot_measure
from report import slack
from report.document import make_report
from report.render import render_html, render_markdown
from report.rollback import Action
from report.score import score

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "verdicts"
ACCEPT = "make golden"  # UPDATE_GOLDEN=1 pytest -k golden tests/report/test_golden_files.py tests/report/test_render.py
DIFF_LINES = 80
VERDICTS = ("PASS", "WARN", "FAIL", "INCONCLUSIVE")
STARTED = datetime(2026, 11, 25, 10, 3, 42, 123456, UTC)
FINISHED = datetime(2026, 11, 25, 10, 6, 1, tzinfo=UTC)
# What the service answered and logged: the characters each format must escape, and non-ASCII.
SAID = 'KeyError: "customer_id" <missing> & *not* |found| in café ✓'
REPORT_LINK = "https://storage.cloud.google.com/acme-reports/orders/5f1c2a9e/report.html"


def target() -> Target:
    return Target(service="orders", project="acme-prod", region="us-central1", revision="orders-00042-new",
                  previous_revision="orders-00041-old", url="https://orders-abc123-uc.a.run.app",
                  image="us-central1-docker.pkg.dev/acme-prod/apps/orders@sha256:1f2e3d4c", match_rule="label gcb-build-id")


def build() -> Build:
    return Build(id="5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77", status="SUCCESS", project_id="acme-prod", trigger_id="trig-1",
                 substitutions={"TRIGGER_NAME": "orders-main", "BRANCH_NAME": "main", "COMMIT_SHA": "9d2b1c0e4f5a6b7c8d9e"},
                 log_url="https://console.cloud.google.com/cloud-build/builds/5f1c2a9e?project=123")


def passing() -> dict[str, Outcome]:
    """Every check of a healthy deploy, by name: each verdict's outcomes change some of them."""
    return {
        "deployment": Outcome("deployment", "Deployment", True, CheckResult(
            Status.PASS, "revision orders-00042-new is Ready and serves 100%",
            [Evidence("Ready condition", "CONDITION_SUCCEEDED", "CONDITION_SUCCEEDED", ok=True),
             Evidence("traffic share", "100%", "more than 0%", "100%", ok=True)]), 41),
        "health": Outcome("health", "Deployment", True, CheckResult(
            Status.PASS, "3/3 tries of /health healthy",
            [Evidence("HTTP status of GET /health", "200, 200, 200", "200", ok=True),
             Evidence("JSON status", {"status": "ok", "db": "ok"}, 'status == "ok"', ok=True),
             Evidence("latency of GET /health (median / max of 3)", "38 ms / 61 ms", "median ≤ 500 ms", "41 ms", ok=True)],
            1.0), 1804),
        "logs": Outcome("logs", "Stability", False, CheckResult(
            Status.PASS, "no new error signature since deploy",
            [Evidence("error entries", "2 (0.2/min)", "≤ 2 per minute", "3 (0.3/min)", ok=True)], 1.0), 512),
        "smoke": Outcome("smoke", "Business", True, CheckResult(
            Status.PASS, "3/3 golden paths pass",
            [Evidence("create-order/create: status of POST /orders", 201, 201, 201, ok=True),
             Evidence("list-orders: JSON items of GET /orders", "[2 items]", "items != null", ok=True)], 1.0), 733),
        "tests": Outcome("tests", "Testing", False, CheckResult(
            Status.PASS, "6/6 tests passed (100%)", [Evidence("pass rate", "100% (6/6)", "≥ 100%", ok=True)], 1.0), 12),
        "imports": Outcome("imports", "Migration", False, CheckResult(Status.SKIPPED, "no import list configured",
                                                                     assessed=False), 0),
    }


def outcomes(verdict: str, said: str = SAID) -> list[Outcome]:
    """Outcomes that score as ``verdict``; ``said`` is what the service answered or logged, quoted where a check quotes."""
    checks = passing()
    if verdict == "WARN":  # a non-critical check fails: capped at WARN
        checks["logs"] = Outcome("logs", "Stability", False, CheckResult(
            Status.FAIL, f"new error since deploy: {said} (4×, 0.4/min)",
            [Evidence("new signature: KeyError at orders/api.py:7", f"4× (0.4/min): {said}", "0×", "0×", ok=False)],
            0.2, reasons=[f"new error since deploy: {said}"],
            next_steps=["read the revision's logs around the deploy time"]), 520)
    elif verdict == "FAIL":  # the critical golden path fails
        checks["smoke"] = Outcome("smoke", "Business", True, CheckResult(
            Status.FAIL, f"2/3 golden paths pass; create-order (critical): expected status 201 from POST /orders, got 500: {said}",
            [Evidence("create-order/create: status of POST /orders", 500, 201, 201, ok=False),
             Evidence("create-order/create: body of POST /orders", said, None, None, ok=False)],
            0.0, reasons=["expected status 201 from POST /orders, got 500"],
            next_steps=["curl -i -X POST https://orders-abc123-uc.a.run.app/orders"]), 910)
        checks["health"] = Outcome("health", "Deployment", True, CheckResult(
            Status.WARN, "2/3 tries of /health healthy; expected status 200, got 503 once",
            [Evidence("HTTP status of GET /health", "200, 503, 200", "200", "200, 200, 200", ok=False)], 0.6667), 2013)
    elif verdict == "INCONCLUSIVE":  # a critical check could not measure: postdeploy's problem, not the revision's
        checks["smoke"] = Outcome("smoke", "Business", True, cannot_measure(
            "golden paths", f"the ID token for the golden paths was refused: 401 {said}",
            "grant roles/run.invoker on orders to the postdeploy service account"), 33)
        checks["logs"] = Outcome("logs", "Stability", False, CheckResult(
            Status.PASS, "no new error signature since deploy", [Evidence("error entries", "0", "≤ 2 per minute", ok=True)],
            1.0, not_measured=[NotMeasured("baseline", "the previous revision has no logs in the window",
                                           "widen checks.logs.window")]), 480)
    return list(checks.values())


def report(verdict: str, said: str = SAID) -> dict[str, Any]:
    """A report dict of ``verdict`` built by the real scoring and report code, at fixed times."""
    found = outcomes(verdict, said)
    scored = score(found, dict(DEFAULT_WEIGHTS), DEFAULT_PASS, DEFAULT_WARN)
    actions = None
    if verdict == "FAIL":  # on_fail: rollback
        actions = [Action("rollback", "done", "moved 100 % from orders-00042-new back to orders-00041-old",
                          before=(TrafficInfo("orders-00042-new", 100),), after=(TrafficInfo("orders-00041-old", 100),),
                          planned=(TrafficInfo("orders-00041-old", 100),)).to_dict()]
    return make_report(target(), build(), scored, found, STARTED, FINISHED, actions)


def slack_json(r: dict[str, Any]) -> str:
    """The Slack message for ``r`` as stored: an INCONCLUSIVE links a local path, the others the stored report."""
    link = "reports/orders/5f1c2a9e/report.html" if r["verdict"] == "INCONCLUSIVE" else REPORT_LINK
    return json.dumps(slack.message(r, link), indent=2, ensure_ascii=False) + "\n"


_STYLE = re.compile(r"(<style>\n).*?(</style>)", re.S)


def page(html: str) -> str:
    """An HTML rendering without its stylesheet, which is report/templates/report.css verbatim: a CSS change is not a
    change of every golden page."""
    return _STYLE.sub(r"\1/* report/templates/report.css */\n\2", html, count=1)


def html_page(r: dict[str, Any]) -> str:
    return page(render_html(r))


RENDERINGS: dict[str, Callable[[dict[str, Any]], str]] = {"md": render_markdown, "html": html_page, "slack.json": slack_json}


def differences(expected: str, actual: str, name: str) -> str:
    """The unified diff of a golden file and what was rendered, cut to DIFF_LINES lines."""
    lines = list(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                      f"tests/data/golden/{name}", f"rendered {name}"))
    shown = "".join(line if line.endswith("\n") else line + "\n" for line in lines[:DIFF_LINES])
    return shown + (f"… {len(lines) - DIFF_LINES} more diff lines\n" if len(lines) > DIFF_LINES else "")


def compare(path: Path, actual: str) -> None:
    """Fail with the diff unless ``path`` holds ``actual``; with UPDATE_GOLDEN=1 write it instead."""
    name = str(path.relative_to(GOLDEN.parent)) if path.is_relative_to(GOLDEN.parent) else path.name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file tests/data/golden/{name}: `{ACCEPT}` writes it from the current code")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        pytest.fail(f"{name} is not what the code renders now. If the change is meant, accept it with `{ACCEPT}` "
                    f"and review `git diff tests/data/golden`.\n{differences(expected, actual, name)}", pytrace=False)


@pytest.mark.parametrize("kind", RENDERINGS)
@pytest.mark.parametrize("verdict", VERDICTS)
def test_rendering_matches_its_golden_file(verdict: str, kind: str) -> None:
    compare(GOLDEN / f"{verdict.lower()}.{kind}", RENDERINGS[kind](report(verdict)))


@pytest.mark.parametrize("verdict", VERDICTS)
def test_each_report_has_the_verdict_it_is_named_for(verdict: str) -> None:
    r = report(verdict)
    assert r["verdict"] == verdict, r["reasons"]
    assert (r["started_at"], r["finished_at"]) == ("2026-11-25T10:03:42.123456Z", "2026-11-25T10:06:01Z")


def test_every_golden_file_is_one_a_test_renders() -> None:
    rendered = {f"{v.lower()}.{kind}" for v in VERDICTS for kind in RENDERINGS}
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(rendered), f"stale golden files: `{ACCEPT}` and delete the rest"


def test_a_difference_fails_with_the_diff_and_the_command_that_accepts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    golden = tmp_path / "fail.md"
    golden.write_text("# FAIL\nold line\nsame\n", encoding="utf-8")

    with pytest.raises(pytest.fail.Exception) as failed:
        compare(golden, "# FAIL\nnew line\nsame\n")

    message = str(failed.value)
    assert "-old line\n+new line\n" in message
    assert "`make golden`" in message
    compare(golden, "# FAIL\nold line\nsame\n")  # the same text passes


def test_a_long_diff_is_cut_and_says_how_much_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    golden = tmp_path / "long.html"
    golden.write_text("".join(f"line {i}\n" for i in range(200)), encoding="utf-8")

    with pytest.raises(pytest.fail.Exception) as failed:
        compare(golden, "".join(f"changed {i}\n" for i in range(200)))

    diff = str(failed.value).split("\n", 1)[1]
    assert len(diff.splitlines()) == DIFF_LINES + 1
    assert diff.splitlines()[-1].endswith("more diff lines")


def test_a_missing_golden_file_says_how_to_write_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)

    with pytest.raises(pytest.fail.Exception, match="`make golden` writes it"):
        compare(tmp_path / "absent.md", "text\n")
