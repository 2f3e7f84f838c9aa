"""Hostile names and shapes through the whole path: each message is acked as bad, or gives an INCONCLUSIVE report
under a safe object name; nothing is written outside the reports prefix and no exception escapes ``handle()``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from demo.sample_service import SampleService
from entry.cli import main as cli_main
from entry.function import handle
from report.store import GcsStore, LocalStore
from sources.gcp import storage_client
from tests.core.helpers import CONFIG, adapters
from tests.servers.data import push_body
from tests.servers.fake_run import FakeCloudRun
from tests.servers.gcs_proxy import PreconditionProxy
from tests.servers.slack import SlackReceiver
from trigger.resolve import filing_name

DEEP = "[" * 3000 + "]" * 3000
RULE = "1 to 63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen"


def deploying(*services: str, build_id: str = "b-hostile", **fields: Any) -> dict[str, Any]:
    """A finished build whose steps run `gcloud run deploy SERVICE` for each of ``services``."""
    steps = [{"name": "gcr.io/cloud-builders/gcloud", "id": f"deploy-{i}",
              "args": ["run", "deploy", s, "--image=gcr.io/acme-prod/app:1", "--region=us-central1"]}
             for i, s in enumerate(services)]
    return {"id": build_id, "status": "SUCCESS", "projectId": "acme-prod", "steps": steps, **fields}


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The reports folder, inside a folder that must stay empty besides it."""
    return tmp_path / "reports"


def assert_nothing_outside(root: Path) -> None:
    assert sorted(p.name for p in root.parent.iterdir()) in ([], ["reports"], ["bad.yaml", "reports"])


# --- undecodable messages are acked as bad ------------------------------------------------------------------------


def _b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"message": {"data": _b64(DEEP), "messageId": "m-1"}, "subscription": "s"}, id="push-body-data"),
        pytest.param({"specversion": "1.0", "id": "ce-1", "type": "t", "data_base64": _b64(DEEP)}, id="cloudevent-data_base64"),
        pytest.param(DEEP, id="raw-text"),
        pytest.param(DEEP.encode(), id="raw-bytes"),
    ],
)
def test_json_nested_3000_deep_is_acked_as_bad(fake_run: FakeCloudRun, slack: SlackReceiver, root: Path, payload: Any) -> None:
    handled = handle(payload, "ce-1", config=CONFIG, adapters=adapters(LocalStore(str(root)), slack))

    assert handled.kind == "bad"
    assert handled.reason == ("expected JSON nested at most 64 levels deep, found JSON nested deeper than Python's "
                              "recursion limit")
    assert fake_run.requests == [] and slack.messages == []
    assert_nothing_outside(root)
    assert not root.exists()


@pytest.mark.parametrize("build_id", ["..", "../../etc", "a/b", "b\n1", ""])
def test_a_build_id_that_cannot_name_a_folder_is_acked_as_bad(fake_run: FakeCloudRun, root: Path, build_id: str) -> None:
    handled = handle(push_body(deploying("orders", build_id=build_id)), config=CONFIG, adapters=adapters(LocalStore(str(root))))

    assert handled.kind == "bad" and handled.reason.startswith("expected a Build")
    assert fake_run.requests == [] and not root.exists()


# --- names that cannot be a Cloud Run service: INCONCLUSIVE, never looked up, filed safely ---------------------------

HOSTILE_SERVICES = ["..", ".", "a/b", "../../outside", "/abs", "Orders", "a_b", "svc\n# pwned", "x" * 300,
                    "[x](javascript:alert(1))", "a\\b", "é"]


@pytest.mark.parametrize("service", HOSTILE_SERVICES)
def test_a_service_that_cannot_exist_is_inconclusive_under_a_safe_name(fake_run: FakeCloudRun, slack: SlackReceiver,
                                                                       root: Path, service: str) -> None:
    build = deploying(service)

    handled = handle(push_body(build), config=CONFIG, adapters=adapters(LocalStore(str(root)), slack))

    assert handled.kind == "validated" and len(handled.validations) == 1
    report = handled.validations[0].report
    filed = filing_name(service)
    assert (report["verdict"], report["target"]["service"], report["checks"]) == ("INCONCLUSIVE", filed, [])
    assert report["summary"].startswith(f"service name {service[:64]!r}")
    assert report["summary"].endswith(f"cannot be a Cloud Run service: expected {RULE}")
    assert fake_run.requests == []  # never looked up
    assert files(root) == sorted([f"{filed}/{build['id']}/{name}" for name in
                                  ("claim-unresolved.txt", "done-unresolved.txt", "report.html", "report.json", "report.md")]
                                 + [f"{filed}/index.html", f"{filed}/index.json", f"{filed}/latest.json"])
    assert_nothing_outside(root)
    assert len(slack.messages) == 1 and "INCONCLUSIVE" in slack.messages[0]["text"]


def test_two_hostile_names_never_share_a_folder(fake_run: FakeCloudRun, root: Path) -> None:
    handled = handle(push_body(deploying("a/b", "a_b", "A-B")), config=CONFIG, adapters=adapters(LocalStore(str(root))))

    folders = sorted(v.report["target"]["service"] for v in handled.validations)
    assert len(set(folders)) == 3 and sorted(p.name for p in root.iterdir()) == folders
    assert fake_run.requests == []


def test_a_hostile_substituted_service_name_is_inconclusive_too(fake_run: FakeCloudRun, root: Path) -> None:
    build = {"id": "b-subs", "status": "SUCCESS", "projectId": "acme-prod",
             "substitutions": {"_SERVICE_NAME": "../../x", "_DEPLOY_REGION": "us-central1"}}

    report = handle(push_body(build), config=CONFIG, adapters=adapters(LocalStore(str(root)))).validations[0].report

    assert report["verdict"] == "INCONCLUSIVE" and report["target"]["service"] == filing_name("../../x")
    assert fake_run.requests == []
    assert_nothing_outside(root)


def test_a_hostile_region_is_inconclusive_without_a_call(fake_run: FakeCloudRun, root: Path) -> None:
    build = deploying("orders")
    build["steps"][0]["args"][-1] = "--region=../../services/other"

    report = handle(push_body(build), config=CONFIG, adapters=adapters(LocalStore(str(root)))).validations[0].report

    assert report["verdict"] == "INCONCLUSIVE"
    assert report["summary"].startswith("region '../../services/other' of service 'orders' cannot be a Cloud Run region")
    assert fake_run.requests == []
    assert (root / "orders" / "b-hostile" / "report.json").exists()


def test_an_invalid_config_and_a_hostile_name_are_both_reported(fake_run: FakeCloudRun, root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from entry import function

    bad = root.parent / "bad.yaml"
    bad.write_text("version: 1\ndefaults: {checks: {helth: {}}}\n", encoding="utf-8")
    monkeypatch.setenv("POSTDEPLOY_CONFIG", str(bad))
    monkeypatch.setattr(function, "_config", None)

    report = handle(push_body(deploying("..")), adapters=adapters(LocalStore(str(root)))).validations[0].report

    assert report["verdict"] == "INCONCLUSIVE" and report["target"]["service"] == filing_name("..")
    assert report["summary"].startswith(f"postdeploy config {bad} is invalid, nothing was checked: ")
    assert report["summary"].endswith(f"; service name '..' cannot be a Cloud Run service: expected {RULE}")


def test_reports_in_a_bucket_stay_under_the_prefix(fake_run: FakeCloudRun, gcs: tuple[PreconditionProxy, str]) -> None:
    _, bucket = gcs
    store = GcsStore(bucket, "reports", retry_deadline_s=1.0)

    handled = handle(push_body(deploying("..", "../../etc", "a/b")), config=CONFIG, adapters=adapters(store))

    assert [v.report["verdict"] for v in handled.validations] == ["INCONCLUSIVE"] * 3
    names = [b.name for b in storage_client().list_blobs(bucket)]
    assert len(names) == 3 * 8  # report.{md,html,json}, claim, done, latest.json, index.json, index.html
    for name in names:
        parts = name.split("/")
        assert parts[0] == "reports" and "" not in parts and "." not in parts and ".." not in parts, name
        assert parts[1] in {filing_name(s) for s in ("..", "../../etc", "a/b")}, name


# --- a missing service names only itself --------------------------------------------------------------------------


def test_a_missing_service_names_no_other_service(fake_run: FakeCloudRun, slack: SlackReceiver, root: Path) -> None:
    for name in ("payments-internal", "secret-admin"):
        fake_run.add_service("acme-prod", "us-central1", name, uri=f"https://{name}.example", latest_created=f"{name}-1",
                             latest_ready=f"{name}-1", traffic=[])

    handled = handle(push_body(deploying("orders")), config=CONFIG, adapters=adapters(LocalStore(str(root)), slack))

    report = handled.validations[0].report
    assert report["summary"] == "service 'orders' not found in us-central1 of acme-prod"
    written = " ".join((root / p).read_text(encoding="utf-8") for p in files(root)) + json.dumps(slack.messages)
    assert "payments-internal" not in written and "secret-admin" not in written
    assert [path.split("?")[0] for _, path in fake_run.requests] == ["/v2/projects/acme-prod/locations/us-central1/services/orders"]


# --- report.md keeps message fields as text -----------------------------------------------------------------------

LINK = "[x](javascript:alert(1))"


def test_message_fields_stay_text_in_every_report(orders_build: dict[str, Any], sample: SampleService, root: Path) -> None:
    build = {**orders_build, "logUrl": "javascript:alert(1)",
             "substitutions": {**orders_build["substitutions"], "BRANCH_NAME": f"main`{LINK}<b>x</b>\n# h",
                               "TRIGGER_NAME": f"t|{LINK}", "COMMIT_SHA": f"`{LINK}`"}}

    handled = handle(push_body(build), config=CONFIG, adapters=adapters(LocalStore(str(root))))

    assert handled.validations[0].report["verdict"] == "PASS"
    folder = root / "orders" / build["id"]
    viewer = MarkdownIt("commonmark").enable("table")
    viewer.validateLink = lambda url: True  # type: ignore[method-assign]
    tokens = viewer.parse((folder / "report.md").read_text(encoding="utf-8"))
    every = [t for token in tokens for t in [token, *(token.children or [])]]
    assert [t.attrGet("href") for t in every if t.type == "link_open"] == []  # no link at all: the log URL is not https
    assert [t.type for t in every if t.type in ("html_inline", "html_block", "image")] == []
    assert [t.tag for t in every if t.type == "heading_open"].count("h1") == 1
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "javascript:" not in "".join(part.split('"')[1] for part in html.split("href=")[1:])
    assert "<b>x</b>" not in html


def test_a_lone_surrogate_in_a_message_field_still_gives_a_report(orders_build: dict[str, Any], root: Path) -> None:
    text = json.dumps(orders_build).replace('"BRANCH_NAME": "main"', '"BRANCH_NAME": "main\\ud800"')
    body = {"message": {"data": _b64(text), "messageId": "m-1", "attributes": {"status": "SUCCESS"}}}

    handled = handle(body, config=CONFIG, adapters=adapters(LocalStore(str(root))))

    assert handled.kind == "validated"
    report = json.loads((root / "orders" / orders_build["id"] / "report.json").read_text(encoding="utf-8"))
    assert report["build"]["branch"] == "main\ufffd"


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--project", "acme-prod", "--region", "us-central1", "--service", "../x"],
        ["validate", "--url", "http://127.0.0.1:9/", "--service", "a/b"],
        ["validate", "--url", "http://127.0.0.1:9/", "--service", ".."],
    ],
    ids=["service", "url-service-slash", "url-service-dot-dot"],
)
def test_a_service_flag_that_cannot_be_a_service_is_a_usage_error(fake_run: FakeCloudRun, root: Path,
                                                                  capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code = cli_main([*args, "--out", str(root)])

    service = args[args.index("--service") + 1]
    assert code == 4
    assert capsys.readouterr().err == f"--service: expected a Cloud Run service name ({RULE}), found {service!r}\n"
    assert fake_run.requests == [] and not root.exists()


@pytest.mark.parametrize(("url", "folder"), [("http://127.0.0.1:9/", "127.0.0.1"), ("http://[::1]:9/", "url")],
                         ids=["ipv4-host-names-the-folder", "ipv6-host-is-filed-as-url"])
def test_a_url_without_service_is_filed_under_its_host_only_when_that_is_a_plain_name(root: Path, url: str,
                                                                                    folder: str) -> None:
    config = root.parent / "postdeploy.yaml"
    config.write_text("version: 1\ndefaults:\n  checks:\n    health: {tries: 1, interval_s: 0, request_timeout_s: 2}\n"
                      "    window: {window_s: 0}\n", encoding="utf-8")

    code = cli_main(["validate", "--url", url, "--config", str(config), "--out", str(root)])

    assert code == 2  # port 9 refuses the connection: the health check fails
    assert [p.name for p in root.iterdir()] == [folder]


def test_replay_of_deeply_nested_json_is_a_usage_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = root.parent / "deep.json"
    message.write_text(DEEP, encoding="utf-8")

    code = cli_main(["replay", str(message), "--out", str(root)])

    assert code == 4
    assert capsys.readouterr().err == (f"{message}: expected a JSON Pub/Sub message or CloudEvent, found JSON nested "
                                       "deeper than Python's recursion limit\n")
    assert not root.exists()


def test_replay_of_a_build_nested_past_the_limit_is_acked_as_bad(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = root.parent / "deep.json"
    nested: Any = {}
    for _ in range(100):
        nested = {"x": nested}
    message.write_text(json.dumps(push_body({**deploying("orders"), "artifacts": nested})), encoding="utf-8")

    code = cli_main(["replay", str(message), "--out", str(root)])

    assert code == 4
    assert capsys.readouterr().out == ("bad: expected JSON nested at most 64 levels deep, found it nested 65 levels deep "
                                       "or more\n")
    assert not root.exists()
