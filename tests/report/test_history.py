"""A service's history: the page (index.html), the links between its reports, and the charts' geometry."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from report import history
from report.charts import sparkline, timeline_chart
from report.history import folder, nav, neighbours, render_history, up
from report.publish import store_report
from report.render import render_html
from report.store import LocalStore
from tests.report.test_render import representative_report as sample_report


def entry(build_id: str, verdict: str = "PASS", score: float = 100.0, rerun: str = "", **more: Any) -> dict[str, Any]:
    return {"build_id": build_id, "revision": f"orders-{build_id}", "verdict": verdict, "score": score,
            "finished_at": f"2026-12-01T10:00:{build_id[-2:]}Z", "report": "x", **({"rerun": rerun} if rerun else {}),
            **more}


INDEX: dict[str, Any] = {"schema": "postdeploy.index/v1", "service": "orders",
         "validations": [entry("b-03", "FAIL", 40.0), entry("b-02", "PASS", 95.0, rerun="step-1"), entry("b-01")]}


@pytest.mark.parametrize(("build_id", "rerun", "before", "after"), [
    pytest.param("b-03", "", "b-02", None, id="newest"),
    pytest.param("b-02", "step-1", "b-01", "b-03", id="middle-a-step"),
    pytest.param("b-01", "", None, "b-02", id="oldest"),
    pytest.param("b-02", "", None, None, id="not-listed-without-its-rerun-id"),
])
def test_neighbours_are_the_reports_just_before_and_after(build_id: str, rerun: str, before: str | None,
                                                          after: str | None) -> None:
    found = neighbours(INDEX["validations"], build_id, rerun)
    assert tuple(e["build_id"] if e else None for e in found) == (before, after)


def test_links_are_relative_to_the_reports_own_folder() -> None:
    assert up("orders/b-02") == "../../" and up("orders/b-02/step-1") == "../../../"
    assert nav("orders", INDEX, "b-02", "step-1") == {"history": "../../../orders/index.html",
                                                      "previous": "../../../orders/b-01/report.html",
                                                      "next": "../../../orders/b-03/report.html"}
    assert nav("orders", INDEX, "b-01") == {"history": "../../orders/index.html", "next": "../../orders/b-02/step-1/report.html"}
    assert folder("web/api", "b 1", "step-2") == "web_api/b_1/step-2"  # every part one plain folder name


def test_the_history_page_lists_each_validation_linked_to_its_report() -> None:
    page = render_history({**INDEX, "validations": [entry("b-03", "FAIL", 40.0, commit="9d2b1c0e4f5a6b7c8d"),
                                                     *INDEX["validations"][1:]]})
    assert page.count("<tr><td") == 3
    assert 'href="b-03/report.html"' in page and 'href="b-02/step-1/report.html"' in page
    assert "<code>9d2b1c0e4f5a</code>" in page and "9d2b1c0e4f5a6" not in page  # 12 characters of the commit
    assert "step-1" in page and "40.0" in page and "orders-b-01" in page
    assert page.index('href="b-03') < page.index('href="b-02') < page.index('href="b-01')  # newest first
    assert "<polyline" in page and "http" not in page.split("<body>", 1)[1]  # no external link or request


def test_hostile_index_text_stays_text() -> None:
    page = render_history({"service": "<b>orders</b>", "validations": [
        entry("b-01", verdict='"><script>x()</script>', revision="<img src=x onerror=alert(1)>")]})
    assert "<script>x()" not in page and "<img src=x" not in page and "&lt;img src=x" in page


def test_a_broken_index_entry_does_not_break_the_page() -> None:
    page = render_history({"service": "orders", "validations": [{"build_id": "b-01"}, "not an entry", entry("b-02")]})
    assert page.count("<tr><td") == 2 and "?" in page


# --- the charts' geometry ------------------------------------------------------------------------------------------

def test_the_timeline_places_answers_by_latency_and_failures_in_their_band() -> None:
    chart = timeline_chart({"window_s": 60.0, "aborted_at_s": 30.0, "probes": 3, "samples": [
        {"at_s": 0.0, "path": "GET /health", "ok": True, "ms": 100.0},
        {"at_s": 15.0, "path": "GET /health", "ok": True, "ms": 50.0},
        {"at_s": 30.0, "path": "smoke orders", "ok": False, "ms": 9000.0, "detail": "status 500"}]})
    assert chart is not None
    left, top, right, bottom = chart.plot
    health, smoke = chart.series
    assert [p.x for p in health.points] == [left, round(left + (right - left) / 4, 1)]
    assert health.points[0].y == top and health.points[1].y == round((top + bottom) / 2, 1)  # 100 ms is the scale's top
    assert smoke.points[0].y == chart.fail_y < top and not smoke.points[0].ok
    assert smoke.points[0].title == "+30.0 s smoke orders: failed: status 500"
    assert chart.abort_x == round((left + right) / 2, 1) and chart.abort_label == "aborted at +30.0 s"
    assert chart.end_x == right and [label for _, label in chart.y_ticks] == ["0 ms", "25 ms", "50 ms", "75 ms", "100 ms"]
    assert health.colour != smoke.colour


def test_nothing_to_draw_is_no_chart() -> None:
    assert timeline_chart({}) is None and timeline_chart({"samples": []}) is None and sparkline([]) is None


def test_the_sparkline_runs_oldest_to_newest_on_a_0_to_100_scale() -> None:
    line = sparkline([entry("b-3", score=0.0), entry("b-2", score=50.0), entry("b-1", score=100.0)], width=108, height=48)
    assert line is not None
    assert line.points == "4.0,4.0 54.0,24.0 104.0,44.0"
    assert [d[2] for d in line.dots] == ["PASS"] * 3


# --- as the store writes them -----------------------------------------------------------------------------------------

def stored(store: LocalStore, build_id: str, rerun: str = "") -> dict[str, Any]:
    report = sample_report()
    report["build"]["id"] = build_id
    if rerun:
        report["rerun"] = {"id": rerun, "of": {}}
    store_report(store, report)
    return report


def test_each_report_links_the_one_before_and_the_history_links_them_all(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    for build_id in ("b-01", "b-02", "b-03"):
        stored(store, build_id)
    service = tmp_path / "café-orders"
    pages = {b: (service / b / "report.html").read_text(encoding="utf-8") for b in ("b-01", "b-02", "b-03")}
    assert 'href="../../café-orders/b-02/report.html">next report' in pages["b-01"]  # rewritten when b-02 came
    assert 'href="../../café-orders/b-01/report.html">← previous report' in pages["b-02"]
    assert 'href="../../café-orders/b-03/report.html">next report' in pages["b-02"]
    assert "next report" not in pages["b-03"] and 'href="../../café-orders/index.html"' in pages["b-03"]
    page = (service / "index.html").read_text(encoding="utf-8")
    assert [line.split('href="')[1].split('"')[0] for line in page.splitlines() if line.startswith("<tr><td")] == [
        "b-03/report.html", "b-02/report.html", "b-01/report.html"]
    assert json.loads((service / "index.json").read_text(encoding="utf-8"))["validations"][0]["commit"] == "9d2b1c0e4f5a6b7c8d9e"


def test_two_validations_finishing_together_are_both_on_the_history_page(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    threads = [threading.Thread(target=stored, args=(store, f"b-{i:02d}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    page = (tmp_path / "café-orders" / "index.html").read_text(encoding="utf-8")
    assert all(f"b-{i:02d}/report.html" in page for i in range(8))


def test_the_report_page_takes_only_https_or_the_stores_own_relative_links() -> None:
    report = sample_report()
    page = render_html(report, {"previous": "javascript:alert(1)", "next": "../../a/b/report.html",
                                "history": "https://storage.cloud.google.com/b/orders/index.html"})
    assert "javascript:" not in page
    assert 'href="../../a/b/report.html"' in page and 'href="https://storage.cloud.google.com/b/orders/index.html"' in page
    assert history.up("a/b") == "../../"


class StaleFirstRead(LocalStore):
    """A store where another validation lands between this one's first look at the index and its update."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.stale = True

    def read(self, name: str) -> str | None:
        if name.endswith("index.json") and self.stale:
            self.stale = False
            return None  # as it was a moment before the other validation's entry landed
        return super().read(name)


def test_a_validation_landing_in_between_is_linked_all_the_same(tmp_path: Path) -> None:
    stored(LocalStore(str(tmp_path)), "b-01")
    stored(StaleFirstRead(str(tmp_path)), "b-02")
    service = tmp_path / "café-orders"
    assert 'href="../../café-orders/b-01/report.html">← previous report' in (service / "b-02" / "report.html").read_text(
        encoding="utf-8")
    assert 'href="../../café-orders/b-02/report.html">next report' in (service / "b-01" / "report.html").read_text(
        encoding="utf-8")


def test_an_older_report_the_page_cannot_render_costs_only_its_next_link(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    old = stored(store, "b-01")
    legacy = {k: v for k, v in old.items() if k not in ("actions", "changes", "generator")}  # stored by an older version
    (tmp_path / "café-orders" / "b-01" / "report.json").write_text(json.dumps(legacy), encoding="utf-8")
    links = store_report(store, {**sample_report(), "build": {**old["build"], "id": "b-02"}})
    assert Path(links["report.json"]).exists() and Path(links["index.html"]).exists()
    assert "next report" not in (tmp_path / "café-orders" / "b-01" / "report.html").read_text(encoding="utf-8")
