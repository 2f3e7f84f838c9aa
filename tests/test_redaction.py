"""Planted secrets never leave postdeploy.

A leaky sample service on loopback quotes every kind of secret in every channel a service reaches a report by:
its health body, a golden path's response and a header it echoes, a WebSocket message, its log entries, the text
of an error (a status line no client can parse, a redirect), and a value of postdeploy's own environment. A real
``python main.py validate --slack`` judges it; every object written, the Slack payload as it came on the wire,
stdout and stderr are then searched for each secret, and each channel is checked to have carried its text (its
label arrived, with a marker where the secret was). The function's own JSON log lines get the same treatment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from demo.sample_service import SampleService
from tests.probe.helpers import AGENT_EVENTS
from tests.servers.slack import SlackReceiver

ROOT = Path(__file__).resolve().parent.parent
MARK = "REDACTED"  # in every marker; Markdown escapes the brackets around it
ENV_NAME, ENV_VALUE = "ORDERS_DB_PASSWORD", "Tr0ub4dor-and-3-horses"  # postdeploy's environment: a secret by its name
HEADER_ENV, HEADER_VALUE = "UPSTREAM_HEADER", "configured-H3ader-value"  # a name that says nothing: secret as configured
REDIRECT_PASSWORD = "Redirect-pw-0123"
REDIRECT_TO = f"https://deploy:{REDIRECT_PASSWORD}@elsewhere.example/callback"
FIELD_VALUE = "opaque-field-value-0123"  # under a name that says secret, in a JSON body
PEM_BODY = "MIIEowIBAAKCAQEAplantedRSAkeyBody0123456789abcdefABCDEF"
SA_KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjplantedServiceAccount"


@dataclass(frozen=True)
class Plant:
    """One secret as a service quotes it: ``label`` stays readable, so its arrival shows the channel carried the text."""

    label: str
    text: str
    secrets: tuple[str, ...]


def plants(webhook: str) -> list[Plant]:
    def plant(label: str, text: str, *secrets: str) -> Plant:
        return Plant(f"plant-{label}", f"plant-{label}: {text}", secrets)

    return [
        plant("aws-key-id", "AKIAQ3EXAMPLEPLANT7Z", "AKIAQ3EXAMPLEPLANT7Z"),
        plant("aws-secret", "aws_secret_access_key=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", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"),
        plant("gcp-api-key", "AIzaSyPlanted0123456789abcdefghijklmno", "AIzaSyPlanted0123456789abcdefghijklmno"),
        plant("gcp-access-token", "ya29.a0PlantedAccessToken0123456789", "ya29.a0PlantedAccessToken0123456789"),
        plant("service-account", json.dumps({"type": "service_account", "private_key_id": "5e6f7a8b9c0d1e2f3a4b",
                                             "private_key": f"-----BEGIN PRIVATE KEY-----\n{SA_KEY_BODY}\n-----END PRIVATE KEY-----\n"}),
              SA_KEY_BODY, "5e6f7a8b9c0d1e2f3a4b"),
        plant("pem", f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----", PEM_BODY),
        plant("slack-token", "xoxb-1234567890-0987654321-PlantedSlackBot", "xoxb-1234567890-0987654321-PlantedSlackBot"),
        plant("slack-webhook", "https://hooks.slack.com/services/T0PLANTED/B0PLANTED/PlantedWebhookSecret24",
              "T0PLANTED/B0PLANTED/PlantedWebhookSecret24"),
        plant("github", "ghp_Planted0123456789abcdefghijklmnopqrst", "ghp_Planted0123456789abcdefghijklmnopqrst"),
        plant("github-pat", "github_pat_11PLANTED0123456789_abcdefghijklmnopqrstuvwxyz0123",
              "github_pat_11PLANTED0123456789_abcdefghijklmnopqrstuvwxyz0123"),
        plant("stripe", "sk_live_PlantedStripe0123456789ab", "sk_live_PlantedStripe0123456789ab"),
        plant("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.PlantedSignature0123", "eyJzdWIiOiJwbGFudGVkIn0",
              "PlantedSignature0123"),
        plant("bearer", "Authorization: Bearer PlantedOpaque.Token-0123", "PlantedOpaque.Token-0123"),
        plant("basic", "Authorization: Basic cGxhbnRlZDpiYXNpYy1wdzEyMw==", "cGxhbnRlZDpiYXNpYy1wdzEyMw=="),
        plant("url-credentials", "postgres://orders:Planted-DB-pw-0123@db.internal:5432/orders", "Planted-DB-pw-0123"),
        plant("password", "login failed with password=Planted-Hunter2-pw", "Planted-Hunter2-pw"),
        plant("json-secret", json.dumps({"client_secret": "planted client secret 0123"}), "planted client secret 0123"),
        plant("environment", f"connected with {ENV_VALUE}", ENV_VALUE),
        plant("webhook", f"posting to {webhook}", webhook, webhook.split("//", 1)[1]),
    ]


def validate_config(count: int) -> dict[str, Any]:
    leaks = [f'leaks.{i} == "x"' for i in range(count)]  # each fails, so each value found is quoted in the report
    return {"version": 1, "defaults": {"checks": {
        "health": {"path": "/health", "expect_json": leaks, "tries": 1, "interval_s": 0},
        "smoke": {"paths": [
            {"name": "body", "steps": [{"http": {"path": "/health", "expect_json": leaks}}]},
            {"name": "echo", "steps": [{"http": {"path": "/headers", "headers": {"X-Upstream-Auth": f"${{env:{HEADER_ENV}}}"},
                                                  "expect_json": ['headers.x-upstream-auth == "x"']}}]},
            {"name": "agent", "steps": [{"websocket": {"path": "/ws/agent", "send": [{"json": {"prompt": "hi"}}],
                                                       "expect_events": AGENT_EVENTS, "expect": leaks, "timeout_s": 5}}]},
            {"name": "garbled", "steps": [{"http": {"path": "/garbled"}}]},
            {"name": "redirect", "steps": [{"http": {"path": f"/redirect?to={quote(REDIRECT_TO, safe='')}"}}]},
            {"name": "field", "steps": [{"http": {"path": f"/json?body={quote(json.dumps({'session_token': FIELD_VALUE}))}",
                                                   "expect_json": ['session_token == "x"']}}]},
        ]},
        "logs": {"settle_s": 0, "excerpt_chars": 4000, "max_signatures_listed": 200},
        "window": {"window_s": 1, "interval_s": 0.5, "request_timeout_s": 5, "smoke": "all", "abort_after": 0},
        "metrics": {"wait_for_data_s": 0},
    }}}


def spellings(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1]}


def leaked(secrets: list[str], outputs: dict[str, str]) -> list[tuple[str, str]]:
    """(where, secret) for every secret found in an output, in any spelling."""
    return [(where, secret) for secret in secrets for where, text in outputs.items() if any(s in text for s in spellings(secret))]


def evidence(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return next(c for c in report["checks"] if c["name"] == check)["evidence"]


def measured(items: list[dict[str, Any]], what_ends: str) -> str:
    found = [str(e["measured"]) for e in items if e["what"].endswith(what_ends)]
    assert len(found) == 1, (what_ends, [e["what"] for e in items])
    return found[0]


def test_no_planted_secret_reaches_a_report_slack_or_the_output(tmp_path: Path, slack: SlackReceiver) -> None:
    planted = plants(slack.url)
    log_file = tmp_path / "service.log"
    config = tmp_path / "postdeploy.yaml"
    config.write_text(json.dumps(validate_config(len(planted))), encoding="utf-8")  # JSON is YAML
    out = tmp_path / "reports"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "POSTDEPLOY_SLACK_WEBHOOK": slack.url, ENV_NAME: ENV_VALUE,
           HEADER_ENV: HEADER_VALUE}
    with SampleService(mode="leaky", log_path=log_file, leaks=[p.text for p in planted]) as service:
        done = subprocess.run([sys.executable, "main.py", "validate", "--url", service.url, "--service", "leaky", "--config",
                               str(config), "--out", str(out), "--log-file", str(log_file), "--slack"],
                              cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 2, done.stdout + done.stderr  # FAIL: the service answers nothing it is expected to
    assert slack.wait_for(1) and len(slack.bodies) == 1

    written = {str(p.relative_to(out)): p.read_text(encoding="utf-8") for p in sorted(out.rglob("*")) if p.is_file()}
    assert {Path(name).name for name in written} >= {"report.json", "report.md", "report.html", "latest.json", "index.json"}
    outputs = {**written, "slack": slack.bodies[0].decode(), "stdout": done.stdout, "stderr": done.stderr}
    secrets = [s for p in planted for s in p.secrets] + [HEADER_VALUE, REDIRECT_PASSWORD, FIELD_VALUE]
    assert leaked(secrets, outputs) == []
    # The service did say them all: its own log holds every one, the header it was sent and the redirect it was asked for.
    assert {s for _, s in leaked(secrets, {"service log": log_file.read_text(encoding="utf-8")})} == set(secrets)

    report = json.loads(next(text for name, text in written.items() if name.endswith("report.json")))
    smoke = evidence(report, "smoke")
    log_excerpts = [str(e["measured"]) for e in evidence(report, "logs")]
    garbled = measured(smoke, "status of GET /garbled")
    for i, p in enumerate(planted):
        channels = {"health body": measured(evidence(report, "health"), f"JSON leaks.{i}"),
                    "golden path body": measured(smoke, f"JSON leaks.{i} of GET /health"),
                    "WebSocket message": measured(smoke, f"message leaks.{i}"),
                    "log entry": next((m for m in log_excerpts if f"leaked {p.label}:" in m), "")}
        if "\n" not in p.text:  # a status line is one line
            channels["error text"] = garbled
        for channel, text in channels.items():
            assert p.label in text and MARK in text, (p.label, channel, text)
    assert measured(smoke, "JSON headers.x-upstream-auth of GET /headers") == '"[REDACTED]"'
    assert measured(smoke, "JSON session_token of GET /json?body=%7B%22session_token%22%3A%20%22[REDACTED]%22%7D") == '"[REDACTED]"'
    assert any("X-Upstream-Auth: [REDACTED]" in m for m in log_excerpts), log_excerpts
    assert any("redirect to another host refused: https://deploy:[REDACTED]@elsewhere.example/callback" in r
               for r in next(c for c in report["checks"] if c["name"] == "smoke")["reasons"])
    assert MARK in outputs["slack"] and "leaky" in done.stdout


FUNCTION_LOGS = """
import base64, json
from core.logs import log
from entry.function import handle

build = {{"id": {build_id!r}, "status": "SUCCESS"}}
data = base64.b64encode(json.dumps(build).encode()).decode()
print(handle({{"message": {{"data": data, "messageId": "m-1"}}}}, "e-1").kind, flush=True)
log("ERROR", {message!r}, build_id="b-1", service="orders", request={fields})
"""


def test_the_functions_own_log_lines_hide_what_they_quote() -> None:
    github = "ghp_PlantedInALogLine0123456789abcdefghij"
    password = "Planted-log-pw-0123"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsb2dsaW5lIn0.PlantedLogSignature"
    webhook = "https://hooks.slack.com/services/T0LOG/B0LOG/PlantedLogWebhook0123"
    fields = {"headers": {"Authorization": "Bearer opaque-log-token-42", "X-Trace": "abc"},
              "body": json.dumps({"password": password}), "note": f"retrying with {ENV_VALUE}"}
    script = FUNCTION_LOGS.format(build_id=f"leak {github}", message=f"Slack refused {webhook}: token {jwt}", fields=fields)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, ENV_NAME: ENV_VALUE})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in map(json.loads, (ln for ln in done.stdout.splitlines() if ln.startswith("{"))) if "message" in line]
    secrets = [github, password, jwt, "T0LOG/B0LOG/PlantedLogWebhook0123", "opaque-log-token-42", ENV_VALUE]
    assert leaked(secrets, {"stdout": done.stdout, "stderr": done.stderr}) == []
    acked = next(line for line in lines if line["message"].startswith("acked undecodable message"))
    assert acked["message"].endswith("found 'leak [REDACTED]'"), acked  # a build id that is not one, quoted
    logged = next(line for line in lines if line["message"].startswith("Slack refused"))
    assert logged["message"] == "Slack refused https://hooks.slack.com/services/[REDACTED]: token [REDACTED JWT]"
    assert logged["request"] == {"headers": {"Authorization": "Bearer [REDACTED]", "X-Trace": "abc"},
                                 "body": '{"password": "[REDACTED]"}', "note": "retrying with [REDACTED]"}
