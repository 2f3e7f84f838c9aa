"""A service's history page and the links between its reports, from its index.json (pure).

``{prefix}/{service}/index.html`` lists the last validations (verdict, score, revision, commit, build, time) newest
first, with a score sparkline; every report links to the history and to the reports before and after it. Links
between objects of the store are relative, so they work the same in a local folder and in a bucket.
"""

from __future__ import annotations

from typing import Any

from report.charts import sparkline
from report.render import env


def safe(part: str) -> str:
    """A name as one folder name: letters, digits, '-', '_' and '.' kept, anything else '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


def folder(service: str, build_id: str, rerun: str = "") -> str:
    """``{service}/{build_id}``: where one validation's objects live (under the store's prefix); a rerun's, a step's
    and a follow-up's live in ``{service}/{build_id}/{rerun}``, beside the original's and never over them."""
    base = f"{safe(service)}/{safe(build_id or 'manual')}"
    return f"{base}/{safe(rerun)}" if rerun else base


def rerun_of(report: dict[str, Any]) -> str:
    """The rerun id a report was made under ("" for a validation of a deploy)."""
    rerun = report.get("rerun")
    return str(rerun.get("id", "")) if isinstance(rerun, dict) else ""


def folder_of(service: str, entry: dict[str, Any]) -> str:
    """The folder of the report an index entry names, relative to the store's prefix."""
    return folder(service, str(entry.get("build_id") or ""), str(entry.get("rerun") or ""))


def up(folder: str) -> str:
    """The relative path from a report's folder back to the store's prefix: "../../" for ``orders/b-1``."""
    return "../" * (folder.count("/") + 1)


def neighbours(entries: list[dict[str, Any]], build_id: str, rerun: str = "") -> tuple[dict[str, Any] | None,
                                                                                       dict[str, Any] | None]:
    """The index entries of the reports just before and just after (build_id, rerun) in time; None at either end."""
    at = next((i for i, e in enumerate(entries) if (e.get("build_id"), e.get("rerun") or "") == (build_id, rerun)), None)
    if at is None:
        return None, None
    return (entries[at + 1] if at + 1 < len(entries) else None), (entries[at - 1] if at > 0 else None)


def nav(service: str, index: dict[str, Any], build_id: str, rerun: str = "") -> dict[str, str]:
    """The report's links to the history page and its neighbours, relative to its own folder."""
    entries = [e for e in index.get("validations") or [] if isinstance(e, dict)]
    here = folder(service, build_id, rerun)
    root = up(here)
    links = {"history": f"{root}{safe(service)}/index.html"}
    before, after = neighbours(entries, build_id, rerun)
    if before is not None:
        links["previous"] = f"{root}{folder_of(service, before)}/report.html"
    if after is not None:
        links["next"] = f"{root}{folder_of(service, after)}/report.html"
    return links


def render_history(index: dict[str, Any]) -> str:
    """The service's history page: one self-contained HTML file (inline CSS and SVG, autoescaped)."""
    service = str(index.get("service") or "")
    entries = [e for e in index.get("validations") or [] if isinstance(e, dict)]
    rows = [{**e, "href": f"{folder_of(service, e).split('/', 1)[1]}/report.html"} for e in entries]
    return env(True).get_template("history.html.j2").render(service=service, rows=rows, spark=sparkline(entries))
