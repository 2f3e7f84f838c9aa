"""Pure renderers: a report dict in, text out (JSON, Markdown, HTML)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2

ICONS = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌", "ERROR": "💥", "SKIPPED": "⏭️", "INCONCLUSIVE": "❔"}
TEMPLATES = Path(__file__).parent / "templates"


def icon(status: str) -> str:
    """The emoji for a verdict or a check status."""
    return ICONS.get(status, "•")


def _show(value: Any) -> str:
    """Evidence as text: structured values as JSON, None as nothing."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


# Markdown: Jinja2's autoescape is for HTML, so every value from a message or a service goes through one of these.
# Inline marks (links, images, code, emphasis, strikethrough, math, table pipes) are escaped wherever they are; block
# marks only where a value would start a line; HTML stays text as entities. Values never break a line.
_LINE_BREAKS = re.compile(r"\r\n|[\x00-\x1f\x7f]")
_INLINE_MARKS = re.compile(r"[\\`*_~\[\]()|$]")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_HTML_CHARS = re.compile("[&<>]")
_LEADING_MARK = re.compile(r"^(?=[#=+-])")  # a heading, a setext underline, a list item
_LEADING_NUMBER = re.compile(r"^(\d+)\.")  # an ordered list item ("1)" is escaped with the inline marks)
_BACKTICKS = re.compile(r"`+")
# Characters a link destination may hold as they are; everything else (")", spaces, "<", "|", non-ASCII) is encoded.
_URL_SAFE = "-._~:/?#@!$&'*+,;=%"


def _one_line(value: Any) -> str:
    return _LINE_BREAKS.sub(" ", _show(value))


def markdown_text(value: Any) -> str:
    """``value`` as Markdown text that reads as it is in any viewer, on one line, in a paragraph, a heading, a list
    item or a table cell: no link, image, code span, emphasis, HTML or block can come out of it."""
    text = _INLINE_MARKS.sub(lambda m: "\\" + m[0], _one_line(value).strip())
    text = _HTML_CHARS.sub(lambda m: _HTML[m[0]], text)
    return _LEADING_NUMBER.sub(r"\1\\.", _LEADING_MARK.sub("\\\\", text))


def markdown_code(value: Any) -> str:
    """``value`` as a code span in a table cell, shown exactly (line breaks as spaces): fenced by more backticks than
    it holds in a row, padded when it starts or ends with a backtick or a space, its pipes escaped for the table."""
    text = _one_line(value).replace("|", "\\|")
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_link(url: str, text: str) -> str:
    """A Markdown link to ``url`` when it is an https URL with a host, every character that could end the link or the
    table cell percent-encoded; else "" (no link at all). ``text`` is ours."""
    return f"[{text}]({quote(url, safe=_URL_SAFE)})" if _https(url) else ""


def _https(url: str) -> str:
    """Only https links with a host are rendered as links (HTML and Markdown)."""
    return url if url.startswith("https://") and urlsplit(url).netloc else ""


@lru_cache(maxsize=2)
def _env(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.globals["icon"] = icon
    env.filters["md"] = markdown_text
    env.filters["code"] = markdown_code
    env.filters["link"] = markdown_link
    env.filters["show"] = _show
    env.filters["https"] = _https
    return env


def render_json(report: dict[str, Any]) -> str:
    """The report as indented UTF-8 JSON (not ASCII-escaped)."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    return _env(False).get_template("report.md.j2").render(r=report)


def render_html(report: dict[str, Any]) -> str:
    """The report as a standalone HTML page (autoescaped)."""
    return _env(True).get_template("report.html.j2").render(r=report)


def render_table(report: dict[str, Any]) -> str:
    """A plain-text verdict table for the terminal."""
    t = report["target"]
    lines = [f"{icon(report['verdict'])} {report['verdict']}  {t['service']}  {t['revision'] or '-'}  "
             f"{report['score']:.1f}/100", f"   {report['summary']}"]
    lines += [f"   {a['kind']}: {a['outcome']} — {a['detail']}" for a in report.get("actions", [])]
    lines.append("")
    width = max((len(c["name"]) for c in report["checks"]), default=8)
    for c in report["categories"]:
        points = "no data" if c["score"] is None else f"{c['score']:g}/{c['weight']:g}"
        lines.append(f"   {c['name']:<12} {points:>9}   {', '.join(c['checks'])}")
    if report["not_assessed"]:
        lines.append(f"   not assessed: {', '.join(report['not_assessed'])}")
    lines.append("")
    for c in report["checks"]:
        lines.append(f"   {icon(c['status'])} {c['name']:<{width}}  {c['status']:<7} {c['summary']}")
    for n in report.get("not_measured", []):
        lines.append(f"   not measured: {n['check']}: {n['why']}" + (f" — fix: {n['fix']}" if n["fix"] else ""))
    if report["next_steps"]:
        lines += ["", "   next: " + report["next_steps"][0]]
    return "\n".join(lines)
