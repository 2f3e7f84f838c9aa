"""The traffic reads and the one traffic write of RunRevisionSource, through google-cloud-run against the fake API."""

from __future__ import annotations

import pytest

from core.errors import AccessDenied, ConcurrentModification, RunApiUnavailable, TargetNotFound
from core.model import TrafficInfo
from sources.cloud_run import RunRevisionSource
from tests.conftest import add_orders_service
from tests.servers.fake_run import TRAFFIC_REVISION, FakeCloudRun

P, R, S = "acme-prod", "us-central1", "orders"
OLD, NEW = "orders-00041-old", "orders-00042-new"
BACK = (TrafficInfo(OLD, 100), TrafficInfo(NEW, 0, tag="canary"))


@pytest.fixture
def orders(fake_run: FakeCloudRun) -> FakeCloudRun:
    add_orders_service(fake_run, "https://orders-abc-uc.a.run.app", "build-1")
    return fake_run


def test_get_traffic_reads_the_configured_split_and_the_etag(orders: FakeCloudRun) -> None:
    state = RunRevisionSource().get_traffic(P, R, S)
    assert state.traffic == (TrafficInfo("", 100, latest=True),)
    assert state.etag == orders.service(P, R, S)["etag"] and state.etag
    assert (state.latest_ready_revision, state.latest_created_revision) == (NEW, NEW)


def test_update_traffic_sends_only_traffic_with_the_etag_and_waits_for_the_operation(orders: FakeCloudRun) -> None:
    source = RunRevisionSource()
    etag = source.get_traffic(P, R, S).etag
    state = source.update_traffic(P, R, S, BACK, etag=etag, timeout_s=10, poll_s=0.01)
    assert orders.service_updates == [{
        "service": f"projects/{P}/locations/{R}/services/{S}", "updateMask": "traffic", "etag": etag,
        "traffic": [{"type": TRAFFIC_REVISION, "revision": OLD, "percent": 100},
                    {"type": TRAFFIC_REVISION, "revision": NEW, "tag": "canary"}],
    }]
    assert state.traffic == BACK and state.etag != etag
    assert any(path.split("?")[0].startswith(f"/v2/projects/{P}/locations/{R}/operations/")
               for method, path in orders.requests if method == "GET")


def test_a_stale_etag_is_a_concurrent_modification(orders: FakeCloudRun) -> None:
    source = RunRevisionSource()
    etag = source.get_traffic(P, R, S).etag
    orders.set_traffic(P, R, S, [{"type": TRAFFIC_REVISION, "revision": NEW, "percent": 100}])
    stale = r"the service changed since it was read \(409 .*: etag \S+ does not match the current etag"
    with pytest.raises(ConcurrentModification, match=stale):
        source.update_traffic(P, R, S, BACK, etag=etag, timeout_s=10, poll_s=0.01)
    assert orders.service(P, R, S)["traffic"] == [{"type": TRAFFIC_REVISION, "revision": NEW, "percent": 100}]


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        pytest.param(403, AccessDenied, "needs run.services.update on service orders", id="403"),
        pytest.param(409, ConcurrentModification, "the service changed since it was read", id="409"),
        pytest.param(412, ConcurrentModification, "the service changed since it was read", id="412"),
        pytest.param(500, RunApiUnavailable, "Cloud Run Admin API failed on update traffic", id="500"),
        pytest.param(503, RunApiUnavailable, "Cloud Run Admin API failed on update traffic", id="503"),
    ],
)
def test_update_errors_are_wrapped_and_sent_once(orders: FakeCloudRun, status: int, error: type[Exception],
                                                 text: str) -> None:
    orders.fail_next_update(status)
    with pytest.raises(error, match=text) as caught:
        RunRevisionSource().update_traffic(P, R, S, BACK, etag="", timeout_s=10, poll_s=0.01)
    assert len(orders.service_updates) == 1
    if status == 403:
        assert "run.services.update" in getattr(caught.value, "fix", "")


def test_get_revision_reads_one_revision(orders: FakeCloudRun) -> None:
    revision = RunRevisionSource().get_revision(P, R, S, OLD)
    assert revision.name == OLD and revision.ready is not None and revision.ready.state == "CONDITION_SUCCEEDED"
    with pytest.raises(TargetNotFound):
        RunRevisionSource().get_revision(P, R, S, "orders-00001-gone")
