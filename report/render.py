"""Pure renderers: a report dict in, text out (JSON, Markdown, HTML)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

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


def _md(value: Any) -> str:
    """Free text in Markdown: HTML a service echoed back stays text."""
    return _show(value).replace("<", "&lt;").replace(">", "&gt;")


def _cell(value: Any) -> str:
    """A Markdown table cell: no pipes or newlines breaking the row."""
    return _md(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _https(url: str) -> str:
    """Only https links are rendered as links."""
    return url if url.startswith("https://") else ""


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
    env.filters["cell"] = _cell
    env.filters["md"] = _md
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
             f"{report['score']:.1f}/100", f"   {report['summary']}", ""]
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
