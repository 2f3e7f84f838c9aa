"""The whole path in-process: message → fake Cloud Run API (official client) → sample service → store → Slack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.config import Config
from core.errors import StorageUnavailable
from core.pipeline import Adapters, token_per_audience
from demo.sample_service import SampleService
from entry.function import handle
from report.render import render_table
from report.store import LocalStore
from sources.cloud_run import RunRevisionSource
from tests.conftest import add_orders_service
from tests.core.helpers import CONFIG, adapters
from tests.servers.data import load_build, push_body
from tests.servers.fake_run import TRAFFIC_LATEST, TRAFFIC_REVISION, FakeCloudRun
from tests.servers.slack import SlackReceiver


def test_deploy_build_gives_one_report_and_one_message(slack: SlackReceiver, tmp_path: Path,
                                                       orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    first = handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
    second = handle(push_body(orders_build, "m-2"), config=CONFIG, adapters=adapters(store, slack))

    assert first.kind == "validated" and len(first.validations) == 1
    assert second.kind == "validated" and second.validations == []
    report = json.loads((tmp_path / "orders" / orders_build["id"] / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "PASS" and report["score"] == 100.0
    assert report["target"]["revision"] == "orders-00042-new"
    assert report["target"]["previous_revision"] == "orders-00041-old"
    assert report["build"]["commit"] == "9d2b1c0e4f" and report["build"]["branch"] == "main"
    assert {c["name"]: c["status"] for c in report["checks"]} == {"deployment": "PASS", "health": "PASS", "imports": "SKIPPED",
                                                                  "logs": "SKIPPED", "metrics": "SKIPPED", "smoke": "SKIPPED",
                                                                  "tests": "SKIPPED", "window": "SKIPPED"}
    assert (tmp_path / "orders" / "latest.json").read_text(encoding="utf-8") == \
        (tmp_path / "orders" / orders_build["id"] / "report.json").read_text(encoding="utf-8")
    assert (tmp_path / "orders" / orders_build["id"] / "report.md").exists()
    assert len(slack.messages) == 1
    assert "PASS" in slack.messages[0]["blocks"][0]["text"]["text"]
    assert str(tmp_path / "orders" / orders_build["id"] / "report.html") in json.dumps(slack.messages[0])


def test_foreign_builds_are_acked_without_any_call(fake_run: FakeCloudRun, slack: SlackReceiver, tmp_path: Path) -> None:
    for name in ("docker_only", "cloud_function"):
        handled = handle(push_body(load_build(name)), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack))
        assert handled.kind == "ignored", name
    queued = {**load_build("console_cd_trigger"), "status": "QUEUED"}
    assert handle(push_body(queued), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack)).kind == "ignored"
    assert fake_run.requests == [] and slack.messages == [] and list(tmp_path.iterdir()) == []


def test_bad_messages_are_acked(tmp_path: Path) -> None:
    handled = handle({"message": {"data": "%%%not-base64", "messageId": "m-9"}}, config=CONFIG,
                     adapters=adapters(LocalStore(str(tmp_path)), None))
    assert handled.kind == "bad" and "invalid base64" in handled.reason


def test_missing_service_gives_an_inconclusive_report(fake_run: FakeCloudRun, slack: SlackReceiver, tmp_path: Path,
                                                      cd_build: dict[str, Any]) -> None:
    fake_run.add_service("acme-prod", "us-central1", "payments", uri="https://p.example", latest_created="p-1",
                         latest_ready="p-1", traffic=[])
    handled = handle(push_body(cd_build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack))
    report = handled.validations[0].report
    assert report["verdict"] == "INCONCLUSIVE"
    assert report["summary"] == "service 'orders' not found in us-central1 of acme-prod"  # the other one is not named
    assert "payments" not in json.dumps(report) + json.dumps(slack.messages)
    assert report["checks"] == []
    assert len(slack.messages) == 1 and "INCONCLUSIVE" in slack.messages[0]["text"]


def test_revision_not_ready_fails_with_the_reason_first(fake_run: FakeCloudRun, sample: SampleService, slack: SlackReceiver,
                                                        tmp_path: Path, cd_build: dict[str, Any]) -> None:
    add_orders_service(fake_run, sample.url, cd_build["id"], ready=False)
    report = handle(push_body(cd_build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack)).validations[0].report
    assert report["verdict"] == "FAIL"
    assert report["reasons"][0].startswith("deployment: expected revision orders-00042-new to be Ready, found CONDITION_FAILED")
    assert "Container failed to start" in report["reasons"][0]
    assert report["next_steps"][0].startswith("roll back: gcloud run services update-traffic orders --to-revisions=orders-00041-old=100")


def add_web_and_worker(fake: FakeCloudRun, url: str, *, web_canary: bool) -> None:
    """The two services bash_two_services deploys; web optionally as a --no-traffic canary reached by its tag."""
    for name in ("web", "worker"):
        revision = f"{name}-00002-xyz"
        fake.add_revision("acme-prod", "us-east1", name, revision, image=f"gcr.io/acme-prod/{name}:1.8.0",
                          create_time="2026-11-25T12:03:00Z")
        canary = web_canary and name == "web"
        traffic = [{"type": TRAFFIC_REVISION, "revision": revision, "percent": 0, "tag": "canary", "uri": url}] if canary \
            else [{"type": TRAFFIC_LATEST, "percent": 100}]
        fake.add_service("acme-prod", "us-east1", name, uri="https://web.example" if canary else url,
                         latest_created=revision, latest_ready=revision, traffic=traffic)


def test_a_build_deploying_two_services_gives_two_reports(fake_run: FakeCloudRun, sample: SampleService, slack: SlackReceiver,
                                                          tmp_path: Path) -> None:
    build = load_build("bash_two_services")
    add_web_and_worker(fake_run, sample.url, web_canary=True)
    handled = handle(push_body(build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack))
    verdicts = {v.report["target"]["service"]: (v.report["verdict"], v.report["target"]["url"]) for v in handled.validations}
    assert verdicts == {"web": ("PASS", sample.url), "worker": ("PASS", sample.url)}
    assert len(slack.messages) == 2


class FlakyStore(LocalStore):
    """A LocalStore whose first report write fails like a Cloud Storage 503."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.failures = 1

    def write(self, name: str, text: str) -> str:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("writing report: 503 Service Unavailable")
        return super().write(name, text)


def test_storage_fault_releases_the_claim_so_redelivery_succeeds(slack: SlackReceiver, tmp_path: Path,
                                                                 orders_build: dict[str, Any]) -> None:
    store = FlakyStore(str(tmp_path))
    with pytest.raises(StorageUnavailable):
        handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
    assert slack.messages == []
    redelivered = handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
    assert len(redelivered.validations) == 1 and len(slack.messages) == 1


def test_slack_failure_keeps_the_report(slack: SlackReceiver, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    slack.responses.append((410, {}, "channel_is_archived"))
    handled = handle(push_body(orders_build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack))
    assert handled.validations[0].slack == "Slack refused the message: 410 channel_is_archived"
    assert (tmp_path / "orders" / orders_build["id"] / "report.json").exists()


def test_run_api_outage_is_retried_not_acked(fake_run: FakeCloudRun, slack: SlackReceiver, tmp_path: Path,
                                             cd_build: dict[str, Any]) -> None:
    from core.errors import RunApiUnavailable

    fake_run.fail_next(1, status=500)
    with pytest.raises(RunApiUnavailable):
        handle(push_body(cd_build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack))
    assert list(tmp_path.iterdir()) == [] and slack.messages == []


def test_index_lists_validations_newest_first(fake_run: FakeCloudRun, sample: SampleService, tmp_path: Path,
                                              orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, None))
    sample.mode = "broken"
    later = {**orders_build, "id": "second-build"}
    fake_run.revision("acme-prod", "us-central1", "orders", "orders-00042-new")["labels"]["gcb-build-id"] = "second-build"
    handle(push_body(later), config=CONFIG, adapters=adapters(store, None))
    index = json.loads((tmp_path / "orders" / "index.json").read_text(encoding="utf-8"))
    assert index["schema"] == "postdeploy.index/v1"
    assert [(e["build_id"], e["verdict"]) for e in index["validations"]] == [("second-build", "FAIL"), (orders_build["id"], "PASS")]
    assert index["validations"][0]["report"] == str(tmp_path / "orders" / "second-build" / "report.html")


@pytest.mark.parametrize(("age_s", "done", "outcome"),
                         [(600, False, "validated"), (600, True, "duplicate"), (60, False, "busy")],
                         ids=["dead-run-taken-over", "finished-run-is-a-duplicate", "live-run-asks-for-redelivery"])
def test_an_existing_claim(slack: SlackReceiver, tmp_path: Path, orders_build: dict[str, Any], age_s: int, done: bool,
                           outcome: str) -> None:
    from datetime import UTC, datetime, timedelta

    from core.errors import Busy

    store = LocalStore(str(tmp_path))
    claimed_at = datetime.now(UTC) - timedelta(seconds=age_s)
    store.claim(f"orders/{orders_build['id']}/claim-orders-00042-new.txt", f"{claimed_at.isoformat()} earlier-run")
    if done:
        store.write(f"orders/{orders_build['id']}/done-orders-00042-new.txt", "done")
    if outcome == "busy":
        with pytest.raises(Busy, match=r"another delivery has been validating .* for 60 s"):
            handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
        assert slack.messages == []
        return
    handled = handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
    assert len(handled.validations) == (1 if outcome == "validated" else 0)
    assert len(slack.messages) == len(handled.validations)


class FlakyRevisions:
    """The real client, except that one service's lookup fails like a Cloud Run 503 until cleared."""

    def __init__(self, failing: str) -> None:
        self.real = RunRevisionSource()
        self.failing = failing

    def get_service(self, project: str, region: str, name: str) -> Any:
        from core.errors import RunApiUnavailable

        if name == self.failing:
            raise RunApiUnavailable(f"get {name}: 503 Service Unavailable")
        return self.real.get_service(project, region, name)

    def list_revisions(self, project: str, region: str, service: str) -> Any:
        return self.real.list_revisions(project, region, service)


def test_one_service_failing_does_not_lose_the_other(fake_run: FakeCloudRun, sample: SampleService, slack: SlackReceiver,
                                                     tmp_path: Path) -> None:
    from core.errors import RunApiUnavailable

    build = load_build("bash_two_services")
    add_web_and_worker(fake_run, sample.url, web_canary=False)
    store, revisions = LocalStore(str(tmp_path)), FlakyRevisions("worker")
    flaky = Adapters(revisions=lambda: revisions, store=lambda: store, webhook=lambda: slack.url)
    with pytest.raises(RunApiUnavailable):
        handle(push_body(build), config=CONFIG, adapters=flaky)
    assert [m["text"].split()[1] for m in slack.messages] == ["web"]
    revisions.failing = ""
    redelivered = handle(push_body(build), config=CONFIG, adapters=flaky)
    assert [v.report["target"]["service"] for v in redelivered.validations] == ["worker"]
    assert sorted(m["text"].split()[1] for m in slack.messages) == ["web", "worker"]


def test_a_bucket_that_refuses_us_still_gets_a_slack_message(slack: SlackReceiver, gcs: Any,
                                                             orders_build: dict[str, Any]) -> None:
    from report.store import GcsStore

    proxy, bucket = gcs
    store = GcsStore(bucket, retry_deadline_s=1.0)
    proxy.fail_next(50, status=403)
    handled = handle(push_body(orders_build), config=CONFIG, adapters=adapters(store, slack))
    assert handled.validations[0].report["verdict"] == "PASS"
    assert len(slack.messages) == 1
    assert "not stored: permission denied claiming gs://" in json.dumps(slack.messages[0])
    assert "storage.objects.create, get and delete on the bucket" in json.dumps(slack.messages[0])


def test_an_unexpected_error_is_logged_and_acked(slack: SlackReceiver, tmp_path: Path, cd_build: dict[str, Any]) -> None:
    class Broken:
        def get_service(self, project: str, region: str, name: str) -> Any:
            raise RuntimeError("bug in our code")

        def list_revisions(self, project: str, region: str, service: str) -> list[Any]:
            return []

    broken = Adapters(revisions=lambda: Broken(), store=lambda: LocalStore(str(tmp_path)), webhook=lambda: slack.url)
    handled = handle(push_body(cd_build), config=CONFIG, adapters=broken)
    assert (handled.kind, handled.reason) == ("error", "RuntimeError: bug in our code")
    assert slack.messages == []


def test_permission_denied_on_cloud_run_is_an_inconclusive_report(fake_run: FakeCloudRun, slack: SlackReceiver,
                                                                  tmp_path: Path, cd_build: dict[str, Any]) -> None:
    fake_run.fail_next(1, status=403)
    report = handle(push_body(cd_build), config=CONFIG, adapters=adapters(LocalStore(str(tmp_path)), slack)).validations[0].report
    assert report["verdict"] == "INCONCLUSIVE"
    assert report["summary"].startswith("permission denied on get projects/acme-prod/locations/us-central1/services/orders")
    assert "roles/run.viewer" in report["summary"]
    assert report["next_steps"] and not report["next_steps"][0].startswith("roll back")


def test_one_id_token_per_audience_is_fetched_per_validation_and_a_failure_is_not_kept() -> None:
    asked: list[str] = []
    failing = [True]

    def fetch(audience: str) -> str:
        asked.append(audience)
        if audience.endswith("flaky") and failing.pop():
            raise OSError("metadata server busy")
        return f"token-for-{audience}"

    token = token_per_audience(fetch)
    assert token is not None and token_per_audience(None) is None
    assert [token("https://a"), token("https://a"), token("https://b")] == ["token-for-https://a"] * 2 + ["token-for-https://b"]
    with pytest.raises(OSError):
        token("https://flaky")
    failing.append(False)
    assert token("https://flaky") == "token-for-https://flaky"
    assert asked == ["https://a", "https://b", "https://flaky", "https://flaky"]


def rollback_config() -> Config:
    return Config.parse("version: 1\ndefaults:\n  on_fail: rollback\n  checks:\n"
                        "    health: {path: /health, expect_json: ['status == \"healthy\"'], tries: 2, interval_s: 0}\n"
                        "    window: {window_s: 0}\n", "test")


def test_a_fail_rolls_the_traffic_back_once_and_says_so_everywhere(fake_run: FakeCloudRun, sample: SampleService,
                                                                    slack: SlackReceiver, tmp_path: Path,
                                                                    orders_build: dict[str, Any]) -> None:
    sample.mode = "broken"  # /health answers 503: health FAILs, and it is critical
    store = LocalStore(str(tmp_path))
    first = handle(push_body(orders_build), config=rollback_config(), adapters=adapters(store, slack))
    again = handle(push_body(orders_build, "m-2"), config=rollback_config(), adapters=adapters(store, slack))

    report = first.validations[0].report
    assert report["verdict"] == "FAIL"
    [action] = report["actions"]
    assert (action["kind"], action["outcome"]) == ("rollback", "done")
    assert "orders-00041-old" in action["detail"] and "100" in action["detail"]
    assert [u["traffic"] for u in fake_run.service_updates] == [[{"type": TRAFFIC_REVISION, "revision": "orders-00041-old",
                                                                   "percent": 100}]]
    assert report["next_steps"][0] == "traffic is back on orders-00041-old: fix orders-00042-new and deploy again"
    assert not any("update-traffic" in step for step in report["next_steps"])
    assert "rollback: done" in json.dumps(slack.messages[0]) and len(slack.messages) == 1
    assert "**rollback: done**" in (tmp_path / "orders" / orders_build["id"] / "report.md").read_text(encoding="utf-8")
    assert render_table(report).splitlines()[2].startswith("   rollback: done — ")
    assert again.validations == [] and len(fake_run.service_updates) == 1  # a redelivery is a duplicate: no second update


@pytest.mark.parametrize(("mode", "on_fail", "updates"), [("healthy", "rollback", 0), ("broken", "report", 0)],
                         ids=["pass-never-rolls-back", "not-opted-in"])
def test_no_rollback_unless_opted_in_and_failed(fake_run: FakeCloudRun, sample: SampleService, slack: SlackReceiver,
                                                tmp_path: Path, orders_build: dict[str, Any], mode: str, on_fail: str,
                                                updates: int) -> None:
    sample.mode = mode
    config = rollback_config() if on_fail == "rollback" else CONFIG
    report = handle(push_body(orders_build), config=config, adapters=adapters(LocalStore(str(tmp_path)), slack)).validations[0].report
    assert len(fake_run.service_updates) == updates
    assert [a["outcome"] for a in report["actions"]] == (["skipped"] if on_fail == "rollback" else [])


def test_a_refused_rollback_is_reported_not_retried(fake_run: FakeCloudRun, sample: SampleService, slack: SlackReceiver,
                                                   tmp_path: Path, orders_build: dict[str, Any]) -> None:
    sample.mode = "broken"
    fake_run.fail_next_update(403)
    report = handle(push_body(orders_build), config=rollback_config(),
                    adapters=adapters(LocalStore(str(tmp_path)), slack)).validations[0].report
    [action] = report["actions"]
    assert action["outcome"] == "refused" and "run.services.update" in action["detail"] + action["fix"]
    assert "rollback: refused" in json.dumps(slack.messages[0])
    assert any("update-traffic" in step for step in report["next_steps"])  # the person still gets the command
