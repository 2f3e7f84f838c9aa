"""store_report: the report objects, latest.json and the service index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from report.publish import store_report
from report.store import LocalStore
from tests.report.test_render import representative_report


class ContendedIndex(LocalStore):
    """A folder whose index is always being rewritten by someone else."""

    def update(self, name: str, change: Callable[[str | None], str]) -> str:
        raise StorageUnavailable(f"updating {name}: changed by other writers 8 times in a row")


def test_reports_index_latest_and_a_second_validation_first_in_the_index(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    first = representative_report()
    links = store_report(store, first)
    assert set(links) == {"report.md", "report.html", "report.json", "latest.json", "index.json"}
    second = {**first, "build": {**first["build"], "id": "b-2"}}
    store_report(store, second)
    index = json.loads(Path(links["index.json"]).read_text(encoding="utf-8"))
    assert [v["build_id"] for v in index["validations"]] == ["b-2", first["build"]["id"]]


def test_an_index_that_cannot_be_updated_keeps_the_reports_and_says_so(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    report = representative_report()
    links = store_report(ContendedIndex(str(tmp_path)), report)
    assert Path(links["report.json"]).exists() and Path(links["latest.json"]).exists()
    service = report["target"]["service"]
    assert links["index.json"] == f"(not updated: updating {service}/index.json: changed by other writers 8 times in a row)"
    assert any(r.levelname == "WARNING" and r.getMessage().startswith("index not updated") for r in caplog.records)
