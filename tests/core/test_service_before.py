"""The service's own settings (ingress, …) before the deploy come from the previous revision's stored report: the
Cloud Run API keeps no history of them."""

from __future__ import annotations

import json
from pathlib import Path

from core.model import Target
from core.pipeline import service_settings_before
from report.store import LocalStore

TARGET = Target(service="orders", revision="orders-00042-new", previous_revision="orders-00041-old")


def latest(store: LocalStore, revision: str, service: object) -> None:
    store.write("orders/latest.json", json.dumps({"target": {"revision": revision}, "changes": {"service": service}}))


def test_the_previous_revisions_report_gives_the_settings_before(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    latest(store, "orders-00041-old", {"ingress": "all"})
    assert service_settings_before(store, TARGET) == {"ingress": "all"}


def test_another_revisions_report_or_none_gives_nothing(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    assert service_settings_before(store, TARGET) is None  # no report yet
    latest(store, "orders-00040-older", {"ingress": "all"})
    assert service_settings_before(store, TARGET) is None  # a report, but not of the revision compared with
    latest(store, "orders-00041-old", "not a mapping")
    assert service_settings_before(store, TARGET) is None
    store.write("orders/latest.json", "{not json")
    assert service_settings_before(store, TARGET) is None


def test_an_ingress_change_is_listed_only_with_the_settings_before() -> None:
    from report.changes import changes

    config = {"image": "img:1"}
    found = changes(config, config, {"ingress": "all"}, {"ingress": "internal"})
    assert [(c["what"], c["before"], c["after"]) for c in found] == [("ingress", "all", "internal")]
    assert changes(config, config, None, {"ingress": "internal"}) == []
