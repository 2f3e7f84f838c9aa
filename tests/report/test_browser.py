"""The HTML reports as a person sees them: each verdict's page, and the history page, open in headless Chromium.

Every page is built from a report with hostile text from the service's responses and logs in it, and must:
show a real screenshot; log no console error; make no request but ``data:``/``file:``/``about:`` (a report is read
from a bucket or a laptop, offline: it must be self-contained); open no dialog, run none of the hostile script and
show the hostile text as text. The self-tests at the end prove each check fails on a page that does the thing.

Chromium is Debian's ``chromium``: `make test` installs it where it runs as root with apt-get; elsewhere these
tests are skipped and say why. Drives it with tests/servers/browser.py (CDP over a WebSocket).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from report.publish import index_with
from report.render import render_html, visible
from tests.report.test_golden_files import VERDICTS, report
from tests.servers.browser import DESKTOP, MAX_SHOT_HEIGHT, Chromium, Page, find_chromium, png_size, why_no_chromium

PHONE = (390, 844)  # CSS pixels of a common phone
MARKER = "__pwned"  # set by every hostile script: it must never be
HOSTILE = {
    "script": f"<script>window.{MARKER}=1;alert(1)</script>",
    "img": f'"><img src=x onerror="window.{MARKER}=1;alert(1)">',
    "svg": f"'><svg onload=window.{MARKER}=1>",
    "javascript": f"javascript:window.{MARKER}=1;alert(1)",
    "template": "{{7*7}} ${7*7} {% raw %}",
    "long": "tok_" + "Ab3_" * 1249,  # a 5,000-character token with no place to break it
    "rtl": "invoice\u202egnp.exe\u202c \u2067isolated\u2069 \u200fmark",  # right-to-left override, isolate and mark
    "style": f"</p><style>/*{MARKER}*/ body{{display:none}}</style>",
}
MIN_SHOT_BYTES = 10_000  # a blank 1280×800 page is about 4 KB; any report with text is well above
# Markup the hostile text would have made had it not been escaped: handlers or javascript: URLs, the img of HOSTILE.
INJECTED_JS = f"""[...document.querySelectorAll('*')].flatMap(el => [...el.attributes]
    .filter(a => (a.name.startsWith('on') && a.value.includes('{MARKER}'))
              || (['href', 'src', 'action', 'formaction', 'xlink:href'].includes(a.name)
                  && /^\\s*javascript:/i.test(a.value))
              || (el.tagName === 'IMG' && a.name === 'src' && a.value === 'x'))
    .map(a => `<${{el.tagName.toLowerCase()}} ${{a.name}}="${{a.value}}">`))
  .concat([...document.scripts].filter(s => s.text.includes('{MARKER}')).map(s => `<script>${{s.text}}</script>`))
  .concat([...document.querySelectorAll('style')].filter(s => s.textContent.includes('{MARKER}'))
    .map(s => `<style>${{s.textContent}}</style>`))"""
# The text a person can see: closed <details> opened first, so a collapsed section still counts as shown.
VISIBLE_JS = "document.querySelectorAll('details').forEach(d => d.open = true), document.body.innerText"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.skip(why_no_chromium())
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: pytest's temporary folder for this run (printed by -v -s, kept for the last 3 runs)."""
    return tmp_path_factory.mktemp("screenshots")


def hostile_report(verdict: str) -> dict[str, Any]:
    """``verdict``'s report where the service answered and logged every HOSTILE text, and its links are javascript:."""
    said = " ".join(HOSTILE.values())
    r = report(verdict, said=said)
    r["target"]["url"] = r["build"]["log_url"] = HOSTILE["javascript"]
    # Each also alone, where evidence quotes a response body: a check that needs one text must not lean on another.
    r["checks"][0]["evidence"] += [{"what": f"body ({name})", "measured": text, "threshold": None, "previous": text,
                                    "ok": False} for name, text in HOSTILE.items()]
    return r


def history_index() -> dict[str, Any]:
    """A service's index.json as report.publish writes it, after one validation of each verdict with hostile build ids."""
    index: str | None = None
    for verdict, text in zip(VERDICTS, HOSTILE.values(), strict=False):
        r = report(verdict)
        r["build"]["id"] = f"b-{verdict.lower()}-{text}"
        index = index_with(index, r, {"report.html": HOSTILE["javascript"] if verdict == "FAIL" else f"{r['build']['id']}/report.html"})
    assert index is not None
    return dict(json.loads(index))


def write(folder: Path, name: str, html: str) -> str:
    path = folder / name
    path.write_text(html, encoding="utf-8")
    return path.as_uri()


def shot_problems(png: Path) -> list[str]:
    """What is wrong with a screenshot: not a PNG, not the window's width, no height, or too small to hold a page."""
    data = png.read_bytes()
    try:
        width, height = png_size(data)
    except ValueError as exc:
        return [str(exc)]
    problems = [] if width == DESKTOP[0] else [f"screenshot is {width} px wide, expected {DESKTOP[0]}"]
    if not 200 <= height <= MAX_SHOT_HEIGHT:
        problems.append(f"screenshot is {height} px high, expected 200 to {MAX_SHOT_HEIGHT}")
    if len(data) < MIN_SHOT_BYTES:
        problems.append(f"screenshot is {len(data)} bytes: a blank page? (expected at least {MIN_SHOT_BYTES})")
    return problems


def page_problems(page: Page, shown: list[str]) -> list[str]:
    """Everything a person or a security review would object to on ``page``; ``shown`` must be visible as text."""
    problems = [f"console: {e}" for e in page.console_errors]
    problems += [f"external request: {url}" for url in page.external_requests]
    problems += [f"dialog opened: {d}" for d in page.dialogs]
    if page.evaluate(f"window.{MARKER}") is not None:
        problems.append(f"hostile script ran: window.{MARKER} is set")
    problems += [f"hostile text became markup: {m}" for m in page.evaluate(INJECTED_JS)]
    visible = page.evaluate(VISIBLE_JS)
    problems += [f"not shown as text: {text[:60]!r}" for text in shown if text not in visible]
    return problems


def look_at(browser: Chromium, folder: Path, name: str, html: str, shown: list[str]) -> list[str]:
    """Open ``html`` at a desktop size, screenshot it to ``folder``/name.png; every problem found."""
    page = browser.open(write(folder, f"{name}.html", html))
    try:
        png = page.screenshot(folder / f"{name}.png")
        return page_problems(page, shown) + shot_problems(png)
    finally:
        page.close()


@pytest.mark.parametrize("verdict", VERDICTS)
def test_report_page_is_self_contained_and_shows_hostile_text_inert(browser: Chromium, shots: Path, verdict: str) -> None:
    r = hostile_report(verdict)
    assert r["verdict"] == verdict

    # Bidirectional controls are shown by name (⟨U+202E⟩), never applied: that is the text a person must see.
    problems = look_at(browser, shots, f"report-{verdict.lower()}", render_html(r), [visible(t) for t in HOSTILE.values()])

    assert problems == [], f"{verdict} report ({shots}/report-{verdict.lower()}.png):\n" + "\n".join(problems)


@pytest.mark.parametrize("verdict", ["FAIL"])
def test_a_long_token_does_not_widen_the_page(browser: Chromium, tmp_path: Path, verdict: str) -> None:
    page = browser.open(write(tmp_path, "long.html", render_html(hostile_report(verdict))))

    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")

    page.close()
    assert width[0] <= width[1], f"the page is {width[0]} px wide in a {width[1]} px window: a person scrolls sideways"


@pytest.mark.parametrize("verdict", ["FAIL", "PASS"])
def test_on_a_phone_the_page_fits_its_width_and_keeps_the_verdict_first(browser: Chromium, shots: Path,
                                                                       verdict: str) -> None:
    page = browser.open(write(shots, f"phone-{verdict.lower()}.html", render_html(hostile_report(verdict))), PHONE)
    try:
        width, window, first = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth, "
                                             "document.body.innerText.trim().slice(0, 40)]")
        png = page.screenshot(shots / f"phone-{verdict.lower()}.png", max_height=2400)
    finally:
        page.close()
    assert width <= window == PHONE[0], f"the page is {width} px wide on a {window} px phone: a person scrolls sideways"
    assert verdict in first  # the banner comes first
    assert png_size(png.read_bytes())[0] == PHONE[0]


def test_history_page_is_self_contained_and_shows_hostile_text_inert(browser: Chromium, shots: Path) -> None:
    if importlib.util.find_spec("report.history") is None:
        pytest.skip("report/history.py (render_history(index) -> str) is not written yet: this test runs once it is")
    from report.history import render_history  # type: ignore[import-not-found,unused-ignore]

    index = history_index()
    shown = [v["build_id"] for v in index["validations"]]

    problems = look_at(browser, shots, "history", render_history(index), shown)

    assert problems == [], f"history page ({shots}/history.png):\n" + "\n".join(problems)


def test_the_history_index_is_hostile() -> None:
    index = history_index()

    assert [v["verdict"] for v in index["validations"]] == list(reversed(VERDICTS))
    assert {HOSTILE["script"], HOSTILE["javascript"]} <= {v["build_id"].split("-", 2)[2] for v in index["validations"]} | {
        v["report"] for v in index["validations"]}


# --- the checks bite: each must fail on a page that does what it forbids ------------------------------------------


def test_an_image_from_the_internet_is_an_external_request_and_is_never_fetched(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "img", '<p>report</p><img src="https://example.com/x.png">', [])

    assert "external request: https://example.com/x.png" in problems


@pytest.mark.parametrize("tag", [
    '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Inter">',
    "<script>fetch('http://127.0.0.1:9/beacon').catch(() => {})</script>",
    "<script>new WebSocket('ws://127.0.0.1:9/')</script>",
], ids=["web-font", "fetch-to-loopback", "websocket"])
def test_any_request_off_the_page_is_external_even_to_loopback(browser: Chromium, tmp_path: Path, tag: str) -> None:
    problems = look_at(browser, tmp_path, "net", f"<p>report</p>{tag}", [])

    assert any(p.startswith("external request: ") for p in problems), problems


def test_a_data_url_image_is_not_external(browser: Chromium, tmp_path: Path) -> None:
    dot = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    page = browser.open(write(tmp_path, "data.html", f'<img src="{dot}" alt="">'))

    assert page.external_requests == []
    assert page.requests[0].startswith("file://")
    page.close()


@pytest.mark.parametrize(("script", "expected"), [
    ("console.error(1)", "console: console.error: 1"),
    ("console.assert(false, 'broken')", "console: console.assert: broken"),
    ("throw new Error('boom')", "console: uncaught: Error: boom"),
], ids=["console-error", "console-assert", "uncaught-exception"])
def test_a_console_error_fails_the_page(browser: Chromium, tmp_path: Path, script: str, expected: str) -> None:
    problems = look_at(browser, tmp_path, "console", f"<p>report</p><script>{script}</script>", [])

    assert any(p.startswith(expected) for p in problems), problems


def test_a_dialog_is_caught_and_dismissed_so_the_test_goes_on(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "dialog", "<p>report</p><script>alert(1); confirm('sure?')</script>", [])

    assert "dialog opened: alert: 1" in problems
    assert "dialog opened: confirm: sure?" in problems


def unescaped_report() -> str:
    """The real FAIL page with each hostile text put back as it came: what a `|safe` or a missed autoescape would do."""
    html = render_html(hostile_report("FAIL"))
    for text in HOSTILE.values():
        html = html.replace(str(escape(text)), text)
    return html


def test_the_report_with_its_escaping_undone_fails_the_markup_and_text_checks(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "unescaped", unescaped_report(), list(HOSTILE.values()))

    assert any(p.startswith("hostile text became markup: <img") for p in problems), problems
    assert any(p.startswith(f"hostile text became markup: <style>/*{MARKER}*/") for p in problems), problems
    assert any(p.startswith("not shown as text: ") for p in problems), problems


def test_without_its_content_security_policy_an_unescaped_report_runs_the_hostile_script(browser: Chromium,
                                                                                          tmp_path: Path) -> None:
    # A page's own CSP (if it has one) blocks the inline script: this proves the dialog and marker checks see it when
    # nothing does, and that the CSP is what stops it otherwise (each CSP refusal is a console error).
    html, policies = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", unescaped_report(), flags=re.I)

    problems = look_at(browser, tmp_path, "no-csp", html, [])

    assert "dialog opened: alert: 1" in problems
    assert f"hostile script ran: window.{MARKER} is set" in problems
    if policies:
        with_policy = look_at(browser, tmp_path, "csp", unescaped_report(), [])
        assert f"hostile script ran: window.{MARKER} is set" not in with_policy
        assert any(p.startswith("console: security: ") for p in with_policy), with_policy


def test_a_script_that_runs_sets_the_marker(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "marker", f"<p>report</p><script>window.{MARKER} = 1</script>", [])

    assert problems[0] == f"hostile script ran: window.{MARKER} is set"


def test_a_javascript_link_is_injected_markup(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "link", f'<p><a href="{HOSTILE["javascript"]}">build log</a></p>', [])

    assert problems[:1] == [f'hostile text became markup: <a href="{HOSTILE["javascript"]}">']


def test_hidden_text_is_not_shown(browser: Chromium, tmp_path: Path) -> None:
    html = '<p>shown</p><p style="display:none">hidden</p><details><summary>more</summary>folded</details>'

    problems = look_at(browser, tmp_path, "hidden", html, ["shown", "hidden", "folded"])

    assert [p for p in problems if p.startswith("not shown")] == ["not shown as text: 'hidden'"]


def test_a_blank_page_is_not_a_sane_screenshot(browser: Chromium, tmp_path: Path) -> None:
    problems = look_at(browser, tmp_path, "blank", "<!doctype html><title>blank</title>", [])

    assert len(problems) == 1 and problems[0].startswith("screenshot is ") and "blank page?" in problems[0], problems
    assert shot_problems(write_bytes(tmp_path / "x.png", b"GIF89a not a png")) == [
        "not a PNG: starts with b'GIF89a not a png'"]


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
