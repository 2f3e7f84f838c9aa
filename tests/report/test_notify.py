"""report.publish.notify: routing one report to the webhooks that want it, against a local receiver with one path
per channel; webhook URLs come from a hand-written secret source, as Secret Manager's would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.config import NotifyRoute
from core.redact import forget, redact_text
from report.publish import notify
from tests.report.test_slack_message import REPORT_URL, fail_report
from tests.servers.slack import SlackReceiver


def route(name: str, services: list[str] | None = None, verdicts: list[str] | None = None) -> NotifyRoute:
    """A route whose webhook is in the secret ``name`` (see `secrets`)."""
    given: dict[str, Any] = {"webhook_secret": f"projects/acme/secrets/{name}/versions/latest"}
    given |= {"services": services} if services is not None else {}
    given |= {"verdicts": verdicts} if verdicts is not None else {}
    return NotifyRoute.model_validate(given)


class Secrets:
    """A secret source: ``secret:projects/acme/secrets/NAME/versions/latest`` → the receiver's webhook for NAME."""

    def __init__(self, slack: SlackReceiver, broken: dict[str, Exception] | None = None,
                 urls: dict[str, str] | None = None) -> None:
        self.slack, self.broken, self.urls = slack, broken or {}, urls or {}
        self.asked: list[str] = []

    def __call__(self, ref: str) -> str:
        self.asked.append(ref)
        name = ref.split("/")[3]
        if name in self.broken:
            raise self.broken[name]
        return self.urls.get(name, self.slack.url_for(name))


class Adapters:
    """What notify asks of the adapters: the environment's webhook and the secret source."""

    def __init__(self, webhook: str = "", secrets: Callable[[str], str] | None = None) -> None:
        self.webhook, self.secrets = webhook, secrets

    def get(self, name: str) -> str:
        assert name == "webhook"
        return self.webhook


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    yield
    forget()  # webhooks registered by one test are no secrets of the next


def run(report: dict[str, Any], adapters: Adapters, routes: list[NotifyRoute], deadline_s: float = 10) -> str:
    return asyncio.run(notify(report, REPORT_URL, adapters, time.monotonic() + deadline_s, routes))


def test_with_no_route_configured_the_environment_webhook_gets_it(slack: SlackReceiver) -> None:
    assert run(fail_report(), Adapters(slack.url), []) == "sent"
    assert len(slack.messages) == 1 and slack.paths == ["/services/T000/B000/XXXX"]


@pytest.mark.parametrize(("service", "verdict", "channels"), [
    pytest.param("orders", "FAIL", ["oncall", "orders-team", "everything"], id="fail-of-orders"),
    pytest.param("orders", "PASS", ["orders-team", "everything"], id="pass-goes-not-to-oncall"),
    pytest.param("payments", "FAIL", ["oncall", "everything"], id="other-service-by-glob"),
    pytest.param("orders-eu", "WARN", ["orders-team", "everything"], id="glob-matches-a-prefix"),
])
def test_every_route_that_wants_the_report_gets_one_message(slack: SlackReceiver, service: str, verdict: str,
                                                             channels: list[str]) -> None:
    routes = [route("oncall", verdicts=["FAIL", "INCONCLUSIVE"]), route("orders-team", services=["orders*"]),
              route("everything"), route("audit", services=["billing"])]
    report = fail_report()
    report["target"]["service"], report["verdict"] = service, verdict
    answer = run(report, Adapters(slack.url, Secrets(slack)), routes)
    assert answer == f"sent to {len(channels)} of {len(channels)} webhooks: " + ", ".join(f"{c} sent" for c in channels)
    assert sorted(p.rsplit("/", 1)[1] for p in slack.paths) == sorted(channels)  # once each, none to the env webhook
    for channel in channels:
        assert [m["text"].split(" ", 2)[:2] for m in slack.messages_to(channel)] == [[verdict, service]]


def test_routes_configured_but_none_wanting_it_post_nothing_and_say_so(slack: SlackReceiver) -> None:
    secrets = Secrets(slack)
    answer = run(fail_report(), Adapters(slack.url, secrets), [route("oncall", verdicts=["PASS"]), route("b", ["billing"])])
    assert answer == "not posted: none of the 2 routes wants a FAIL of orders"
    assert slack.messages == [] and secrets.asked == []  # no secret read for nothing


def test_one_failing_webhook_stops_no_other_and_each_is_summarised(slack: SlackReceiver,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    slack.responses_for["archived"] = [(410, {"Content-Type": "text/plain"}, "channel_is_archived")]
    secrets = Secrets(slack, broken={"missing": PermissionError("secretmanager.versions.access denied on missing")})
    routes = [route("archived"), route("missing"), route("oncall")]
    answer = run(fail_report(), Adapters("", secrets), routes)
    assert answer == ("sent to 1 of 3 webhooks: missing failed (PermissionError), "
                      "archived failed (Slack refused the message: 410 channel_is_archived), oncall sent")
    assert len(slack.messages_to("oncall")) == 1 and len(slack.messages_to("archived")) == 1
    logged = sorted(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert logged == [
        "Slack message to archived not delivered: Slack refused the message: 410 channel_is_archived",
        "Slack webhook missing unavailable: PermissionError: secretmanager.versions.access denied on missing",
    ]


def test_a_secret_source_slower_than_the_deadline_holds_back_only_its_own_route(slack: SlackReceiver) -> None:
    def secrets(ref: str) -> str:
        if "/slow/" in ref:
            time.sleep(1.3)
        return slack.url_for(ref.split("/")[3])

    started = time.monotonic()
    answer = run(fail_report(), Adapters("", secrets), [route("slow"), route("oncall")], deadline_s=0)
    assert answer == "sent to 1 of 2 webhooks: slow failed (TimeoutError), oncall sent"
    assert [p.rsplit("/", 1)[1] for p in slack.paths] == ["oncall"] and time.monotonic() - started < 5


@pytest.mark.parametrize(("adapters", "why"), [
    pytest.param(Adapters(), "LookupError", id="no-secret-source"),
    pytest.param(Adapters(secrets=lambda ref: ""), "ValueError", id="empty-secret"),
])
def test_a_route_whose_webhook_cannot_be_read_is_no_exception(adapters: Adapters, why: str) -> None:
    assert run(fail_report(), adapters, [route("oncall")]) == f"sent to 0 of 1 webhooks: oncall failed ({why})"


def test_two_routes_naming_one_webhook_post_one_message(slack: SlackReceiver) -> None:
    secrets = Secrets(slack, urls={"team-a": slack.url_for("shared"), "team-b": slack.url_for("shared")})
    answer = run(fail_report(), Adapters("", secrets), [route("team-a"), route("team-b", services=["orders"])])
    assert answer == "sent to 1 of 1 webhooks: team-a+team-b sent"
    assert len(slack.messages_to("shared")) == 1


def test_each_webhook_is_read_once_per_instance_and_again_once_slack_says_it_is_gone(slack: SlackReceiver) -> None:
    secrets = Secrets(slack)
    adapters, routes = Adapters("", secrets), [route("oncall"), route("team")]
    run(fail_report(), adapters, routes)
    run(fail_report(), adapters, routes)
    assert sorted(secrets.asked) == [f"secret:projects/acme/secrets/{n}/versions/latest" for n in ("oncall", "team")]
    slack.responses_for["team"] = [(404, {"Content-Type": "text/plain"}, "no_service")]
    run(fail_report(), adapters, routes)  # revoked, or rotated in Secret Manager: the next report reads it again
    run(fail_report(), adapters, routes)
    assert secrets.asked.count("secret:projects/acme/secrets/team/versions/latest") == 2
    assert secrets.asked.count("secret:projects/acme/secrets/oncall/versions/latest") == 1
    assert len(slack.messages_to("team")) == 4


def test_no_webhook_is_ever_quoted(slack: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    hook = slack.url_for("T0ROUTE-B0ROUTE-secrettoken42")
    slack.responses_for["T0ROUTE-B0ROUTE-secrettoken42"] = [(400, {"Content-Type": "text/plain"}, f"invalid_payload at {hook}")]
    secrets = Secrets(slack, urls={"oncall": hook},
                      broken={"bad": RuntimeError(f"cannot read {slack.url_for('T0BAD-B0BAD-othersecret43')}")})
    bad_hook = slack.url_for("T0BAD-B0BAD-othersecret43")
    answer = run(fail_report(), Adapters("", secrets), [route("oncall"), route("bad")])
    assert answer == "sent to 0 of 2 webhooks: bad failed (RuntimeError), oncall failed (Slack refused the message: " \
                     "400 invalid_payload at [REDACTED])"
    assert redact_text(f"posting to {hook}") == "posting to [REDACTED]"  # registered: hidden wherever it is quoted later
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "secrettoken42" not in logged and "secrettoken42" not in json.dumps(slack.messages)
    assert "Slack message to oncall not delivered" in logged and bad_hook not in answer
