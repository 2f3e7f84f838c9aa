"""Re-run on demand: in-process through the pipeline, `python main.py rerun` in a subprocess, and the HTTP function
served by functions-framework; all against the fake Cloud Run API and the sample service on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import Busy
from core.model import Build, DeployIntent
from demo.sample_service import SampleService
from entry.function import handle
from entry.rerun import Refused, checked, rerun
from report.store import LocalStore
from sources.cloud_run import RunRevisionSource
from tests.core.helpers import CONFIG, adapters
from tests.entry.test_cli import HEALTH, ROOT, cli
from tests.servers import processes
from tests.servers.data import IMAGE, push_body
from tests.servers.fake_logging import FakeLogging
from tests.servers.fake_monitoring import FakeMonitoring
from tests.servers.fake_run import TRAFFIC_REVISION, FakeCloudRun
from tests.servers.slack import SlackReceiver
from trigger.resolve import resolve


def validated(store: LocalStore, build: dict[str, Any], slack: SlackReceiver | None = None) -> dict[str, Any]:
    """The original validation of ``build`` (through the function's path), its report as stored."""
    handled = handle(push_body(build), config=CONFIG, adapters=adapters(store, slack))
    assert handled.kind == "validated" and len(handled.validations) == 1, handled
    stored: dict[str, Any] = json.loads((store.root / "orders" / build["id"] / "report.json").read_text(encoding="utf-8"))
    return stored


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file directly in ``folder`` (not in its sub-folders), by name."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_rerun_files_a_second_report_beside_the_first_and_sees_the_service_now(
        slack: SlackReceiver, sample: SampleService, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    first = validated(store, orders_build, slack)
    assert first["verdict"] == "PASS"
    original = tmp_path / "orders" / orders_build["id"]
    before = files_of(original)

    sample.mode = "broken"
    validation = rerun(orders_build["id"], "orders", CONFIG, adapters(store, slack))

    assert validation is not None
    report = validation.report
    assert report["verdict"] == "FAIL"
    assert report["reasons"][0].startswith("health: expected status 200 from /health, got 503")
    assert (report["target"]["revision"], report["target"]["previous_revision"]) == ("orders-00042-new", "orders-00041-old")
    assert (report["build"]["id"], report["build"]["status"], report["build"]["commit"]) == (orders_build["id"], "RERUN", "9d2b1c0e4f")
    rerun_id = report["rerun"]["id"]
    assert rerun_id.startswith("rerun-") and rerun_id.endswith("Z")
    assert report["rerun"]["of"] == {"verdict": "PASS", "score": 100.0, "finished_at": first["finished_at"],
                                     "report": str(original / "report.html")}
    assert report["target"]["match_rule"] == (f"the stored report of build {orders_build['id']} ({rerun_id}; "
                                              "that report said PASS 100.0/100)")
    beside = original / rerun_id
    assert sorted(p.name for p in beside.iterdir()) == ["claim-orders-00042-new.txt", "done-orders-00042-new.txt",
                                                        "report.html", "report.json", "report.md"]
    assert validation.links["report.html"] == str(beside / "report.html")
    after = files_of(original)  # the original report and its markers are untouched; its page now links the rerun
    assert {k: v for k, v in after.items() if k != "report.html"} == {k: v for k, v in before.items() if k != "report.html"}
    assert f'href="../../orders/{orders_build["id"]}/{rerun_id}/report.html">next report' in after["report.html"].decode()
    assert json.loads((beside / "report.json").read_text(encoding="utf-8"))["verdict"] == "FAIL"
    assert (tmp_path / "orders" / "latest.json").read_bytes() == (beside / "report.json").read_bytes()
    index = json.loads((tmp_path / "orders" / "index.json").read_text(encoding="utf-8"))["validations"]
    assert [(e["build_id"], e.get("rerun"), e["verdict"], e["report"]) for e in index] == [
        (orders_build["id"], rerun_id, "FAIL", str(beside / "report.html")),
        (orders_build["id"], None, "PASS", str(original / "report.html")),
    ]
    assert [m["text"].split(" ", 1)[0] for m in slack.messages] == ["PASS", "FAIL"]
    assert str(beside / "report.html") in slack.messages[1]["text"]
    titles = [m["blocks"][0]["text"]["text"] for m in slack.messages]
    assert not titles[0].endswith("· rerun") and titles[1].endswith("· rerun")


def test_a_rerun_compares_with_the_previous_revision_the_report_named(
        fake_run: FakeCloudRun, sample: SampleService, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    validated(store, orders_build)
    # A later deploy: orders-00043-next now serves everything, and is what resolve alone would call "previous".
    fake_run.add_revision("acme-prod", "us-central1", "orders", "orders-00043-next", image=IMAGE,
                          create_time="2026-11-26T08:00:00.000000Z")
    fake_run.add_service("acme-prod", "us-central1", "orders", uri=sample.url, latest_created="orders-00043-next",
                         latest_ready="orders-00043-next",
                         traffic=[{"type": TRAFFIC_REVISION, "revision": "orders-00043-next", "percent": 100}])
    intent = DeployIntent(service="orders", region="us-central1", project="acme-prod")
    alone = resolve(intent, Build(id=orders_build["id"], status="RERUN"), RunRevisionSource(), "", "orders-00042-new")
    assert alone.previous_revision == "orders-00043-next"

    validation = rerun(orders_build["id"], "orders", CONFIG, adapters(store))

    assert validation is not None
    target = validation.report["target"]
    assert (target["revision"], target["previous_revision"]) == ("orders-00042-new", "orders-00041-old")
    assert target["url"] == ""  # it serves nothing now: the service URL would reach orders-00043-next


def test_a_retried_rerun_id_runs_once(slack: SlackReceiver, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    validated(store, orders_build)
    first = rerun(orders_build["id"], "orders", CONFIG, adapters(store, slack), "rerun-tooling-7")
    again = rerun(orders_build["id"], "orders", CONFIG, adapters(store, slack), "rerun-tooling-7")
    assert first is not None and again is None
    assert len(slack.messages) == 1
    assert sorted(p.name for p in (tmp_path / "orders" / orders_build["id"]).iterdir() if p.is_dir()) == ["rerun-tooling-7"]
    index = json.loads((tmp_path / "orders" / "index.json").read_text(encoding="utf-8"))["validations"]
    assert [e.get("rerun") for e in index] == ["rerun-tooling-7", None]


def test_a_rerun_id_in_progress_is_busy_not_run_twice(slack: SlackReceiver, tmp_path: Path, orders_build: dict[str, Any]) -> None:
    store = LocalStore(str(tmp_path))
    validated(store, orders_build)
    claim = tmp_path / "orders" / orders_build["id"] / "rerun-held" / "claim-orders-00042-new.txt"
    claim.parent.mkdir()
    claim.write_text(f"{datetime.now(UTC).isoformat()} another-request", encoding="utf-8")
    with pytest.raises(Busy):
        rerun(orders_build["id"], "orders", CONFIG, adapters(store, slack), "held")
    assert slack.messages == [] and sorted(p.name for p in claim.parent.iterdir()) == [claim.name]


URL_REPORT = {"schema": "postdeploy.report/v1", "verdict": "PASS", "summary": "all checks passed",
              "target": {"project": "", "region": "", "service": "orders", "revision": ""}, "build": {"id": "b-1"}}


@pytest.mark.parametrize(
    ("stored", "status", "found"),
    [
        (None, 404, "found nothing there"),
        ("{not json", 422, "found text that is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        (json.dumps({"schema": "other/v2"}), 422, "found schema 'other/v2'"),
        (json.dumps({**URL_REPORT, "build": {"id": "b-2"}}), 422, "found one of build 'b-2' for service 'orders'"),
        (json.dumps(URL_REPORT), 422, "found project '', region '', revision '' (that validation was PASS: all checks passed)"),
    ],
    ids=["missing", "not-json", "other-schema", "another-build", "url-validation"],
)
def test_a_report_that_cannot_be_rerun_is_refused_before_anything_runs(tmp_path: Path, stored: str | None, status: int,
                                                                       found: str) -> None:
    store = LocalStore(str(tmp_path))
    if stored is not None:
        store.write("orders/b-1/report.json", stored)
    with pytest.raises(Refused) as refused:
        rerun("b-1", "orders", CONFIG, adapters(store))
    assert refused.value.status == status
    assert str(tmp_path / "orders" / "b-1" / "report.json") in refused.value.expected
    assert str(refused.value).endswith(found)
    folder = tmp_path / "orders" / "b-1"
    assert not folder.exists() if stored is None else [p.name for p in folder.iterdir()] == ["report.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("../x", "orders", None), "build_id: expected a Build id of 1 to 128 ASCII letters"),
        (("b-1", "Orders", None), "service: expected a Cloud Run service name (1 to 63 lowercase"),
        (("b-1", None, None), "service: expected a Cloud Run service name (1 to 63 lowercase letters, digits or hyphens, "
                              "starting with a letter and not ending with a hyphen), found nothing"),
        (("b-1", "orders", "../../x"), "rerun_id: expected 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a "
                                       "letter or digit, found '../../x'"),
        ((["b-1"], "orders", None), "build_id: expected a Build id of 1 to 128 ASCII letters, digits, '.', '_' or '-', "
                                    "starting with a letter or digit, found a JSON array"),
    ],
    ids=["build-id-path", "service-upper", "service-missing", "rerun-id-path", "build-id-array"],
)
def test_a_request_that_cannot_name_a_stored_report_is_refused(args: tuple[Any, Any, Any], message: str) -> None:
    with pytest.raises(Refused) as refused:
        checked(*args)
    assert refused.value.status == 400 and str(refused.value).startswith(message)


def test_rerun_ids_are_new_for_each_request_and_kept_when_given() -> None:
    first, second = checked("b-1", "orders"), checked("b-1", "orders")
    assert first != second and first.startswith("rerun-20") and first.endswith("Z")
    assert checked("b-1", "orders", "x-1") == "rerun-x-1" and checked("b-1", "orders", "rerun-x-1") == "rerun-x-1"


def test_cli_rerun_exits_with_the_new_verdict(fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, sample: SampleService,
                                              tmp_path: Path, orders_build: dict[str, Any]) -> None:
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    out = tmp_path / "r"
    validated(LocalStore(str(out)), orders_build)
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH, encoding="utf-8")
    args = ("rerun", orders_build["id"], "--service", "orders", "--config", str(config), "--out", str(out))

    sample.mode = "broken"
    broken = cli(*args)
    sample.mode = "healthy"
    healthy = cli(*args)

    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "FAIL  orders" in broken.stdout
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "PASS  orders" in healthy.stdout
    reruns = sorted(p for p in (out / "orders" / orders_build["id"]).iterdir() if p.is_dir())
    assert len(reruns) == 2 and all(p.name.startswith("rerun-") for p in reruns)
    assert [json.loads((p / "report.json").read_text(encoding="utf-8"))["verdict"] for p in reruns] == ["FAIL", "PASS"]
    assert f"{reruns[0] / 'report.json'}" in broken.stdout
    assert json.loads((out / "orders" / orders_build["id"] / "report.json").read_text(encoding="utf-8"))["build"]["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rerun", "never-stored", "--service", "orders"],
         "BUILD_ID: expected the stored report of build never-stored for service orders at {out}/orders/never-stored/report.json, "
         "found nothing there"),
        (["rerun", "b-1", "--service", "Orders"], "--service: expected a Cloud Run service name"),
        (["rerun", "../b", "--service", "orders"], "BUILD_ID: expected a Build id of 1 to 128"),
        (["rerun", "b-1"], "the following arguments are required: --service"),
        (["rerun", "b-1", "--service", "orders", "--config", "/nonexistent.yaml"],
         "--config: expected a readable YAML config file, found nothing at /nonexistent.yaml"),
        (["rerun", "b-1", "--service", "orders", "--slack"], "--slack: expected a webhook URL in POSTDEPLOY_SLACK_WEBHOOK"),
    ],
    ids=["no-stored-report", "bad-service", "bad-build-id", "no-service", "missing-config", "slack-without-webhook"],
)
def test_cli_rerun_usage_errors_exit_4(tmp_path: Path, args: list[str], message: str) -> None:
    done = cli(*args, "--out", str(tmp_path))
    assert done.returncode == 4, done.stdout + done.stderr
    assert message.format(out=tmp_path) in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_http_entry_point_answers_200_400_404_and_runs_a_retried_rerun_once(
        fake_logging: FakeLogging, fake_monitoring: FakeMonitoring, slack: SlackReceiver, tmp_path: Path,
        orders_build: dict[str, Any]) -> None:
    fake_logging.add_request("orders", "orders-00042-new", project="acme-prod")
    out = tmp_path / "r"
    stored = validated(LocalStore(str(out)), orders_build)
    config = tmp_path / "postdeploy.yaml"
    config.write_text(HEALTH, encoding="utf-8")
    env = {"POSTDEPLOY_REPORTS": str(out), "POSTDEPLOY_SLACK_WEBHOOK": slack.url, "POSTDEPLOY_CONFIG": str(config),
           "PYTHONUNBUFFERED": "1"}
    request = {"build_id": orders_build["id"], "service": "orders", "rerun_id": "rerun-http-1"}
    with processes.functions_framework(processes.free_port(), env, ROOT, target="rerun", signature_type="http") as function, \
            httpx.Client(base_url=function.url, timeout=120) as http:
        ran = http.post("/", json=request)
        retried = http.post("/", json=request)
        missing = http.post("/", json={"build_id": "never-stored", "service": "orders"})
        not_json = http.post("/", content=b"build_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
        no_service = http.post("/", json={"build_id": orders_build["id"]})
        unknown = http.post("/", json={**request, "revision": "orders-00001-x"})
        listed = http.post("/", json=["orders"])
        got = http.get("/")
        log = function.read_log()

    assert ran.status_code == 200, ran.text + log[-3000:]
    beside = out / "orders" / orders_build["id"] / "rerun-http-1"
    assert ran.json() == {"verdict": "PASS", "score": stored["score"], "report": str(beside / "report.html"),
                          "rerun_id": "rerun-http-1", "build_id": orders_build["id"], "service": "orders",
                          "revision": "orders-00042-new"}
    assert retried.status_code == 200 and retried.json() == ran.json()
    assert len(slack.messages) == 1  # the retry answered from the stored rerun: no second run, no second message
    assert json.loads((beside / "report.json").read_text(encoding="utf-8"))["rerun"]["id"] == "rerun-http-1"

    assert missing.status_code == 404
    assert missing.json() == {
        "error": f"build_id: expected the stored report of build never-stored for service orders at "
                 f"{out}/orders/never-stored/report.json, found nothing there",
        "field": "build_id", "expected": f"the stored report of build never-stored for service orders at "
                                         f"{out}/orders/never-stored/report.json", "found": "nothing there"}
    expected = 'a JSON object {"build_id": "…", "service": "…"} (optional "rerun_id")'
    assert (not_json.status_code, not_json.json()["expected"]) == (400, expected)
    assert not_json.json()["found"].startswith("a body that is not JSON (")
    assert (no_service.status_code, no_service.json()["field"], no_service.json()["found"]) == (400, "service", "nothing")
    assert (unknown.status_code, unknown.json()["found"]) == (400, "unknown field(s) 'revision'")
    assert (listed.status_code, listed.json()["found"]) == (400, "a JSON array")
    assert (got.status_code, got.json()["found"]) == (405, "GET")
    assert "Traceback" not in log, log[-3000:]


def test_a_rerun_in_cloud_storage_links_back_and_lands_beside_the_original(bucket: str,
                                                                           orders_build: dict[str, Any]) -> None:
    from report.store import GcsStore

    store = GcsStore(bucket, "reports")
    handled = handle(push_body(orders_build), config=CONFIG, adapters=adapters(store))
    assert handled.validations[0].report["verdict"] == "PASS"
    validation = rerun(orders_build["id"], "orders", CONFIG, adapters(store), "rerun-gcs")
    assert validation is not None
    base = f"https://storage.cloud.google.com/{bucket}/reports/orders/{orders_build['id']}"
    assert validation.links["report.html"] == f"{base}/rerun-gcs/report.html"
    assert validation.report["rerun"]["of"]["report"] == f"{base}/report.html"
    assert json.loads(store.read(f"orders/{orders_build['id']}/report.json") or "")["build"]["status"] == "SUCCESS"
    assert rerun(orders_build["id"], "orders", CONFIG, adapters(store), "rerun-gcs") is None
    with pytest.raises(Refused) as refused:
        rerun("never-stored", "orders", CONFIG, adapters(store))
    assert refused.value.expected.endswith(f"at gs://{bucket}/reports/orders/never-stored/report.json")
