"""Pure renderers: a report dict in, text out (JSON, Markdown, HTML)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2

from core.schema import DIAGNOSTIC_EVIDENCE, signature_evidence
from report.charts import timeline_chart

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
URL_SAFE = "-._~:/?#@!$&'*+,;=%"


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
    return f"[{text}]({quote(url, safe=URL_SAFE)})" if https_only(url) else ""


_RELATIVE = re.compile(r"(\.\./)*\w[\w.-]*(/\w[\w.-]*)*\.html")  # folder names as report.history.safe makes them


def _relative(link: str) -> str:
    """A link between the store's own pages (``../../orders/b-1/report.html``): relative, plain names, no scheme."""
    return link if _RELATIVE.fullmatch(link) else ""


def https_only(url: str) -> str:
    """Only https links with a host are rendered as links (HTML and Markdown)."""
    return url if url.startswith("https://") and urlsplit(url).netloc else ""


# Bidirectional controls reorder what follows them on screen ("invoice\u202egnp.exe" shows as "invoiceexe.png"): a
# value from a service or a log shows them as what they are, never applies them.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: Any) -> Any:
    """Every output of a template: bidirectional controls in text shown as ⟨U+202E⟩, never applied."""
    return _BIDI.sub(lambda m: f"⟨U+{ord(m[0]):04X}⟩", value) if isinstance(value, str) else value


@lru_cache(maxsize=2)
def env(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        finalize=visible,
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.globals["icon"] = icon
    env.globals["grouped"] = grouped
    env.globals["ordered"] = lambda checks: [c for _, group, _ in grouped(checks) for c in group]
    env.globals["evidence_rows"] = evidence_rows
    env.globals["timeline_chart"] = timeline_chart
    env.filters["clip"] = clip
    env.filters["md"] = markdown_text
    env.filters["code"] = markdown_code
    env.filters["link"] = markdown_link
    env.filters["show"] = _show
    env.filters["https"] = https_only
    return env


def render_json(report: dict[str, Any]) -> str:
    """The report as indented UTF-8 JSON (not ASCII-escaped)."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    return env(False).get_template("report.md.j2").render(r=report)


def render_html(report: dict[str, Any], nav: dict[str, str] | None = None) -> str:
    """The report as one self-contained HTML page (autoescaped; inline CSS and SVG, no external request).

    ``nav`` links the service's history page and the reports before and after this one (https links only)."""
    links = {k: https_only(v) or _relative(v) for k, v in (nav or {}).items() if k in ("previous", "next", "history")}
    return env(True).get_template("report.html.j2").render(r=report, nav=links, again=checked_again(report))


# The order an on-call engineer reads checks in: what failed, what warns, what postdeploy could not measure (and
# why), then what passed, folded; checks with nothing configured last, folded too.
GROUPS = (("Failed", ("FAIL",), False), ("Warnings", ("WARN",), False), ("Not measured", ("ERROR", "SKIPPED"), False),
          ("Passed", ("PASS",), True))


def grouped(checks: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]], bool]]:
    """``checks`` in reading order: (title, checks, folded) per group, every check in exactly one group."""
    configured = [c for c in checks if c.get("assessed", True)]
    groups = [(title, [c for c in configured if c["status"] in statuses], folded) for title, statuses, folded in GROUPS]
    placed = {id(c) for _, group, _ in groups for c in group}
    rest = [c for c in checks if id(c) not in placed]
    return [*groups, ("Nothing to check", rest, True)]


def evidence_rows(check: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A check's evidence as (findings, postdeploy's own figures); rows its signature table already shows are left out."""
    rows = (check.get("data") or {}).get("signatures") or []
    shown = {signature_evidence(str(g.get("kind")), str(g.get("status")), str(g.get("title"))) for g in rows}
    rows = [e for e in check.get("evidence") or [] if e.get("what") not in shown]
    own = [e for e in rows if str(e.get("what", "")).startswith(DIAGNOSTIC_EVIDENCE)]
    return [e for e in rows if e not in own], own


def clip(text: Any, most: int = 300) -> str:
    """``text`` cut to ``most`` characters with "…": the banner stays a banner whatever a reason quotes."""
    shown = _show(text)
    return shown if len(shown) <= most else shown[: most - 1] + "…"


def checked_again(report: dict[str, Any]) -> str:
    """What a report that is not the deploy's first validation is: "rerun", "step 2 of 3", "follow-up after 24h"."""
    rerun = report.get("rerun")
    if not isinstance(rerun, dict):
        return ""
    kind, check = rerun.get("kind", "rerun"), str(rerun.get("id", ""))
    if kind == "step":
        steps = next((len(a["rollout"]["steps"]) for a in report.get("actions", [])
                      if isinstance(a.get("rollout"), dict) and isinstance(a["rollout"].get("steps"), list)), 0)
        return f"step {rerun.get('step', '?')}" + (f" of {steps}" if steps else "")
    if kind == "follow-up":
        return f"follow-up after {check.removeprefix('follow-up-')}"
    return "rerun"  # validated again on demand, not after a build


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
