"""core.redact: each rule on what it must hide and on what it must leave alone, exact values (registered, given,
from the environment) in every spelling, dict keys, a fixed point, hostile input, and an import that costs nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from core.redact import (
    JWT_MARKER,
    KEY_MARKER,
    MARKER,
    MAX_REGISTERED,
    forget,
    names_secret,
    redact,
    redact_text,
    register,
    secret_name,
    secret_value,
)

ROOT = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiYXVkIjoiaHR0cHM6Ly9ydW4uYXBwIn0.c2lnbmF0dXJlLXBhcnQ"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nq1w2e3r4t5y6u7i8o9p0+/AbCdEfGhIjKlMnOpQrStUvWxYz=="
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def nothing_registered() -> Iterator[None]:
    forget()
    yield
    forget()


def hides(text: str, expected: str, *, id: str) -> Any:
    return pytest.param(text, expected, id=id)


HIDDEN = [
    # PEM private keys, as written, JSON-escaped (a service-account key file) and without their end line (a cut excerpt)
    hides(f"key:\n-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\nnext line stays",
          f"key:\n{KEY_MARKER}\nnext line stays", id="pem-pkcs8"),
    hides(f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----", KEY_MARKER, id="pem-rsa"),
    hides(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----", KEY_MARKER, id="pem-openssh"),
    hides(f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{PEM_BODY}\n-----END ENCRYPTED PRIVATE KEY-----", KEY_MARKER,
          id="pem-encrypted"),
    hides(f"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n{PEM_BODY}\n"
          "-----END EC PRIVATE KEY-----", KEY_MARKER, id="pem-with-headers"),
    hides(f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n{PEM_BODY}\n-----END PGP PRIVATE KEY BLOCK-----", KEY_MARKER, id="pgp"),
    hides('{"type": "service_account", "private_key_id": "3f2a1b0c9d8e7f6a5b4c", "private_key": '
          + json.dumps(f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n")
          + ', "client_email": "ci@acme.iam.gserviceaccount.com"}',
          f'{{"type": "service_account", "private_key_id": "{MARKER}", "private_key": "{KEY_MARKER}\\n", '
          '"client_email": "ci@acme.iam.gserviceaccount.com"}', id="gcp-service-account-json"),
    hides(f"…last lines: -----BEGIN PRIVATE KEY-----\n{PEM_BODY[:40]}", f"…last lines: {KEY_MARKER}", id="pem-without-end"),
    # Slack webhook URLs: the host and the kind stay, the path goes
    hides("posting to https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx failed",
          f"posting to https://hooks.slack.com/services/{MARKER} failed", id="slack-webhook"),
    hides("https://hooks.slack.com/workflows/T0123ABCD/A0456EFGH/123456789012345678/abcdefghijklmnop",
          f"https://hooks.slack.com/workflows/{MARKER}", id="slack-workflow-webhook"),
    hides("https://hooks.slack.com/triggers/T0123ABCD/1234567890123/abcdef0123456789abcdef0123456789",
          f"https://hooks.slack.com/triggers/{MARKER}", id="slack-trigger-webhook"),
    hides('{"url": "https:\\/\\/hooks.slack.com\\/services\\/T0123ABCD\\/B0456EFGH\\/abcdefghijklmnopqrstuvwx"}',
          f'{{"url": "https:\\/\\/hooks.slack.com\\/services\\/{MARKER}"}}', id="slack-webhook-json-escaped-slashes"),
    hides("to=https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0123ABCD%2FB0456EFGH%2Fabcdefghijklmnopqrstuvwx",
          f"to=https%3A%2F%2Fhooks.slack.com%2Fservices%2F{MARKER}", id="slack-webhook-percent-encoded"),
    # credentials in URLs
    hides("dsn postgres://orders:S3cr3t-pw@db.internal:5432/orders", f"dsn postgres://orders:{MARKER}@db.internal:5432/orders",
          id="url-userinfo"),
    hides("https://deploy:p@ss:w0rd@git.example.com/repo.git", f"https://deploy:{MARKER}@git.example.com/repo.git",
          id="url-password-with-at-and-colon"),
    hides("amqps://:onlyapassword@mq.example", f"amqps://:{MARKER}@mq.example", id="url-password-without-user"),
    hides("GET /login?next=https%3A%2F%2Fdeploy%3Ap%2540ss%40git.example%2Frepo",
          f"GET /login?next=https%3A%2F%2Fdeploy%3A{MARKER}%40git.example%2Frepo", id="url-credentials-percent-encoded"),
    # Authorization schemes
    hides("Authorization: Bearer abc.DEF-123_xyz~", f"Authorization: Bearer {MARKER}", id="bearer-header"),
    hides("curl -H 'authorization: bearer 1a2b3c4d5e6f'", f"curl -H 'authorization: bearer {MARKER}'", id="bearer-lower-case"),
    hides("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {MARKER}", id="basic-header"),
    hides("Authorization: Bearer plainword", f"Authorization: Bearer {MARKER}", id="bearer-word-after-authorization"),
    hides(f"Authorization: Bearer {JWT}", f"Authorization: Bearer {MARKER}", id="bearer-jwt"),
    # JWTs wherever they are
    hides(f"id_token={JWT}&state=1", f"id_token={JWT_MARKER}&state=1", id="jwt-in-query"),
    hides(f"session {JWT} expired", f"session {JWT_MARKER} expired", id="jwt-bare"),
    hides("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0In0.", JWT_MARKER, id="jwt-unsigned"),
    # tokens known by their prefix
    hides("key AKIAIOSFODNN7EXAMPLE used", f"key {MARKER} used", id="aws-access-key-id"),
    hides("temporary ASIAY34FZKBOKMUTVV7A", f"temporary {MARKER}", id="aws-temporary-key-id"),
    hides(f"aws_secret_access_key = {AWS_SECRET}", f"aws_secret_access_key = {MARKER}", id="aws-secret-ini"),
    hides(f'{{"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", "SecretAccessKey": "{AWS_SECRET}", "SessionToken": "IQoJb3JpZ2luX2Vj"}}',
          f'{{"AccessKeyId": "{MARKER}", "SecretAccessKey": "{MARKER}", "SessionToken": "{MARKER}"}}', id="aws-sts-json"),
    hides(f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", f"AWS_SECRET_ACCESS_KEY={MARKER}", id="aws-secret-env-line"),
    hides("maps AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI ok", f"maps {MARKER} ok", id="gcp-api-key"),
    hides("ya29.a0AfH6SMBx3_Yq-Lz0c9aXhLq8Zk2pW_7sRt", MARKER, id="gcp-oauth-access-token"),
    hides("bot xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", f"bot {MARKER}", id="slack-bot-token"),
    hides("user xoxp-1234567890-1234567890-1234567890123-abcdef0123456789", f"user {MARKER}", id="slack-user-token"),
    hides("app xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef", f"app {MARKER}", id="slack-app-token"),
    hides("cfg xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MA", f"cfg {MARKER}", id="slack-config-token"),
    hides("push ghp_16C7e42F292c6912E7710c838347Ae178B4a with", f"push {MARKER} with", id="github-classic-token"),
    hides("GH_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a build-ghp_16C7e42F292c6912E7710c838347Ae178B4a",
          f"GH_TOKEN={MARKER} build-{MARKER}", id="github-token-after-a-separator"),
    hides("gho_16C7e42F292c6912E7710c838347Ae178B4a ghu_16C7e42F292c6912E7710c838347Ae178B4a",
          f"{MARKER} {MARKER}", id="github-oauth-and-user-tokens"),
    hides("ghs_16C7e42F292c6912E7710c838347Ae178B4a ghr_16C7e42F292c6912E7710c838347Ae178B4a",
          f"{MARKER} {MARKER}", id="github-server-and-refresh-tokens"),
    hides("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", MARKER,
          id="github-fine-grained-token"),
    hides("charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc-done", f"charge with {MARKER}-done", id="stripe-live-key"),
    hides("sk_test_4eC39HqLyjWDarjtT1zdp7dc rk_live_51H8abcdEFGHijkl rk_test_51H8abcdEFGHijkl",
          f"{MARKER} {MARKER} {MARKER}", id="stripe-test-and-restricted-keys"),
    hides("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", MARKER, id="stripe-webhook-secret"),
    # the value after a key that names a secret
    hides("login failed: password=hunter2 for bob", f"login failed: password={MARKER} for bob", id="password-assignment"),
    hides("DB_PASSWORD: correct-horse", f"DB_PASSWORD: {MARKER}", id="password-yaml"),
    hides('{"user": "bob", "password": "correct horse battery staple"}', f'{{"user": "bob", "password": "{MARKER}"}}',
          id="password-json-with-spaces"),
    hides("{'passwd': 'tr0ub4dor'}", f"{{'passwd': '{MARKER}'}}", id="passwd-python-repr"),
    hides('{"message": "{\\"client_secret\\": \\"s3cr3t value\\"}"}', f'{{"message": "{{\\"client_secret\\": \\"{MARKER}\\"}}"}}',
          id="client-secret-json-inside-json"),
    hides("?api_key=abc123&page=2", f"?api_key={MARKER}&page=2", id="api-key-query"),
    hides("GET /json?body=%7B%22password%22%3A%20%22hunter2%20x%22%2C%20%22n%22%3A%201%7D",
          f"GET /json?body=%7B%22password%22%3A%20%22{MARKER}%22%2C%20%22n%22%3A%201%7D", id="json-percent-encoded"),
    hides("?next=%2Flogin%3Ftoken%3Dabc%40123%26x%3D1", f"?next=%2Flogin%3Ftoken%3D{MARKER}%26x%3D1", id="query-percent-encoded"),
    hides("X-Api-Key: 9f8e7d6c5b4a", f"X-Api-Key: {MARKER}", id="api-key-header"),
    hides("apikey=abc123def", f"apikey={MARKER}", id="apikey"),
    hides("refresh_token=1//0gAbCdEf", f"refresh_token={MARKER}", id="refresh-token"),
    hides("access_key: AbCd1234", f"access_key: {MARKER}", id="access-key"),
    hides("private_key=abcdef123456", f"private_key={MARKER}", id="private-key-assignment"),
    hides("AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq", f"AccountKey={MARKER}", id="account-key"),
    hides('"credentials": "user:pw"', f'"credentials": "{MARKER}"', id="credentials"),
    hides("Cookie: sid=31d4d96e407aad42; theme=dark", f"Cookie: {MARKER}; theme=dark", id="cookie-header"),
    hides("PHPSESSID session_id=a1b2c3d4", f"PHPSESSID session_id={MARKER}", id="session-id"),
    hides("passphrase = 'open sesame'", f"passphrase = '{MARKER}'", id="passphrase"),
    # what an expectation on a field named like a secret found
    hides('login: expected access_token matches "^ey" in POST /login, found "opaque-9f8e7d"',
          f'login: expected access_token matches "^ey" in POST /login, found "{MARKER}"', id="expectation-found-a-secret"),
    hides('expected data.api_key < 3 in GET /k, found string "k-123456", cannot compare with number 3',
          f'expected data.api_key < 3 in GET /k, found string "{MARKER}", cannot compare with number 3', id="expectation-typed"),
]

KEPT = [
    pytest.param("expected status 200 from /health, got 503 after 3 tries", id="ordinary-words"),
    pytest.param("payment failed for order 8f14e45f-ceea-467f-a1f3-6a1a3b4c5d6e", id="uuid"),
    pytest.param("commit 9d2b1c0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c on main", id="git-sha"),
    pytest.param("us-central1-docker.pkg.dev/acme/apps/orders@sha256:1f2e3d4c5b6a79880f1e2d3c4b5a69788f0e1d2c3b4a59687f0e1d2c3b4a5968",
                 id="image-digest"),
    pytest.param("orders-00042-new replaced orders-00041-old", id="revision-names"),
    pytest.param("GET https://orders-abc123-uc.a.run.app/orders/42?page=2 answered 200", id="url-without-credentials"),
    pytest.param("http://127.0.0.1:8080/path@host and ssh://git@github.com/acme/repo.git", id="urls-with-an-at-but-no-password"),
    pytest.param("Basic authentication and bearer tokens are configured per service", id="scheme-words-in-prose"),
    pytest.param('WWW-Authenticate: Basic realm="orders", Bearer error="invalid_token"', id="authenticate-challenges"),
    pytest.param("ID token: none, token: str | None, password: Optional", id="plain-values-after-a-key"),
    pytest.param("could not resolve ${secret:projects/p/secrets/agent-token/versions/3}", id="secret-reference"),
    pytest.param("Authorization: [REDACTED] (from secret:projects/p/secrets/s/versions/1)", id="secret-manager-name"),
    pytest.param("header X-Api-Key: could not resolve ${env:API_KEY}: expected it to be set", id="sentence-after-a-header-name"),
    pytest.param('_ORDERS_API_CODE["handle_request"]({"method": method, "session": {}})', id="code-with-a-session"),
    pytest.param("max_tokens=500, tokens: 12, secrets: 2", id="counts-after-a-key"),
    pytest.param("new signature: KeyError at orders/api.py:7 load_customer", id="signature-title"),
    pytest.param(f"-----BEGIN CERTIFICATE-----\n{PEM_BODY}\n-----END CERTIFICATE-----", id="certificate"),
    pytest.param("AIDAJQABLZS4A3QDU576Q is a user id, AROA1234567890EXAMPLE a role id", id="aws-ids-that-are-not-keys"),
    pytest.param("xoxb-short sk_live_short ghp_short AIzaShort ya29.short", id="prefixes-too-short"),
    pytest.param("eyJhbGciOiJIUzI1NiJ9 alone", id="jwt-header-alone"),
    pytest.param("xghp_16C7e42F292c6912E7710c838347Ae178B4a AKIAIOSFODNN7EXAMPLEX", id="prefixes-inside-a-word"),
    pytest.param("hooks.slack.com/services/ is the webhook host", id="slack-host-without-a-path"),
    pytest.param("at 2026-11-25T10:04:01.5Z from 10.0.0.7:443 (bob@example.com)", id="time-address-email"),
    pytest.param("café ✓ naïve Straße İstanbul", id="non-ascii"),
    pytest.param('expected status == "ok" in /health, found "degraded"', id="expectation-on-an-ordinary-field"),
    pytest.param("expected password == \"x\" in /login, found no such field", id="expectation-found-nothing"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), HIDDEN)
def test_each_rule_hides_its_secret(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # a fixed point: redacting twice changes nothing


@pytest.mark.parametrize("text", KEPT)
def test_what_is_not_a_secret_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_rules_compose_on_one_line() -> None:
    text = (f"login failed: password=hunter2 api_key=\"AKIAIOSFODNN7EXAMPLE\" Authorization: Bearer {JWT} "
            "url=https://bob:s3cret@db.internal/x token=xoxb-1234567890-abcdefghij")
    assert redact_text(text) == (f'login failed: password={MARKER} api_key="{MARKER}" Authorization: Bearer {MARKER} '
                                 f"url=https://bob:{MARKER}@db.internal/x token={MARKER}")


# ---------------------------------------------------------------- exact values


def test_a_registered_secret_is_hidden_in_every_spelling() -> None:
    secret = "p4ss 'wörd' \"x\"/+&"
    register(secret)
    spellings = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
                 quote(secret, safe="")]
    assert len(set(spellings)) == 5
    for spelling in spellings:
        assert redact_text(f"echo: {spelling}.") == f"echo: {MARKER}."
    assert redact({"body": json.dumps({"echo": secret})}) == {"body": json.dumps({"echo": MARKER})}


def test_registered_values_need_a_minimum_length_and_are_trimmed() -> None:
    register("1", "abc", " a-secret-value\n", "")
    assert redact_text("1 abc 1abc a-secret-value") == f"1 abc 1abc {MARKER}"


def test_a_bearer_value_registers_its_credential_too() -> None:
    register("Bearer opaque-credential-42")
    assert redact_text("server saw opaque-credential-42") == f"server saw {MARKER}"


def test_the_longest_secret_is_replaced_whole() -> None:
    register("abcd-1234", "abcd-1234-efgh-5678")
    assert redact_text("x abcd-1234-efgh-5678 y abcd-1234 z") == f"x {MARKER} y {MARKER} z"


def test_where_a_secret_lives_is_not_registered() -> None:
    register("projects/acme/secrets/agent-token/versions/3", "${env:TOKEN}", "REDACTED")
    text = "read projects/acme/secrets/agent-token/versions/3 via ${env:TOKEN}"
    assert redact_text(text) == text
    assert redact_text(MARKER) == MARKER


def test_forget_and_the_cap_on_registered_values() -> None:
    register("first-registered-secret")
    register(*(f"later-secret-{i:04d}" for i in range(MAX_REGISTERED)))
    assert redact_text("first-registered-secret later-secret-0000") == f"first-registered-secret {MARKER}"  # oldest went
    forget()
    assert redact_text("later-secret-0000") == "later-secret-0000"


def test_values_given_for_one_call_only() -> None:
    assert redact_text("token-of-this-run here", also=["token-of-this-run"]) == f"{MARKER} here"
    assert redact_text("token-of-this-run here") == "token-of-this-run here"


@pytest.mark.parametrize(("name", "secret"), [
    ("MY_APP_TOKEN", True), ("GITHUB_TOKEN", True), ("DJANGO_SECRET", True), ("DB_PASSWORD", True), ("SMTP_PASSWD", True),
    ("STRIPE_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("SENTRY_DSN", True), ("GOOGLE_CREDENTIALS", True),
    ("POSTDEPLOY_SLACK_WEBHOOK", True), ("POSTDEPLOY_SLACK_WEBHOOK_SECRET", True), ("my_apikey", True), ("REDIS_PASS", True),
    ("PWD", False), ("OLDPWD", False), ("HOME", False), ("K_SERVICE", False), ("MONKEY", False), ("TOKEN_FILE", False),
    ("POSTDEPLOY_REPORTS", False), ("KEYBOARD", False),
])
def test_which_environment_names_are_secret(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_environment_values_with_secret_names_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    password = 'Tr0ub4dor"&3\\horse'
    monkeypatch.setenv("ORDERS_DB_PASSWORD", password)
    monkeypatch.setenv("POSTDEPLOY_SLACK_WEBHOOK", "http://127.0.0.1:9/services/T000/B000/XXXX")
    monkeypatch.setenv("POSTDEPLOY_SLACK_WEBHOOK_SECRET", "projects/acme/secrets/slack/versions/2")
    monkeypatch.setenv("SHORT_TOKEN", "1234567")  # shorter than MIN_ENV_CHARS
    monkeypatch.setenv("SIGNING_KEY", "/K7MDENG/bPxRfiCYEXAMPLEKEY")  # base64 may start like a path: hidden all the same
    monkeypatch.setenv("ORDERS_REGION", "Tr0ub4dor-region")  # a name that says nothing: kept
    text = (f"db {password} json {json.dumps({'pw': password})} hook http://127.0.0.1:9/services/T000/B000/XXXX "
            "version projects/acme/secrets/slack/versions/2 code 1234567 key /K7MDENG/bPxRfiCYEXAMPLEKEY region Tr0ub4dor-region")
    assert redact_text(text) == (f'db {MARKER} json {{"pw": "{MARKER}"}} hook {MARKER} '
                                 f"version projects/acme/secrets/slack/versions/2 code 1234567 key {MARKER} region Tr0ub4dor-region")


# ---------------------------------------------------------------- structures, names and values


def test_structures_keep_their_shape_and_hide_values_under_secret_keys() -> None:
    value = {"status": 200, "ok": True, "headers": {"X-Api-Key": "abc123", "Accept": "*/*"},
             "items": [("password", "hunter2")], "nested": [{"client_secret": "s", "token": None, "id_token": "none"}],
             "text": "password=hunter2", 7: "seven", "secret_ref": "projects/p/secrets/s/versions/1"}
    assert redact(value) == {"status": 200, "ok": True, "headers": {"X-Api-Key": MARKER, "Accept": "*/*"},
                             "items": [("password", "hunter2")], "nested": [{"client_secret": "s", "token": None, "id_token": "none"}],
                             "text": f"password={MARKER}", 7: "seven", "secret_ref": "projects/p/secrets/s/versions/1"}


@pytest.mark.parametrize(("key", "secret"), [
    ("password", True), ("X-Api-Key", True), ("client_secret", True), ("headers.authorization", True), ("Set-Cookie", True),
    ("accessToken", True), ("privateKey", True), ("status", False), ("session", False), ("keyboard", False), ("author", False),
])
def test_which_names_say_secret(key: str, secret: bool) -> None:
    assert names_secret(key) is secret


@pytest.mark.parametrize(("value", "shown"), [
    ("hunter2", MARKER), ("Bearer abc123", f"Bearer {MARKER}"), ("Bearer [REDACTED]", "Bearer [REDACTED]"),
    ("none", "none"), ("no such field", "no such field"), ("12345", "12345"), ("123456", MARKER), ("ab", "ab"),
    ("${env:TOKEN}", "${env:TOKEN}"),
    ("projects/p/secrets/s/versions/1", "projects/p/secrets/s/versions/1"), ("<redacted>", "<redacted>"),
])
def test_a_value_under_a_secret_name(value: str, shown: str) -> None:
    assert secret_value(value) == shown


# ---------------------------------------------------------------- cost


HOSTILE = [
    pytest.param("a" * 200_000, id="one-long-word"),
    pytest.param("password" * 25_000, id="keywords-without-separators"),
    pytest.param("password=" * 22_000, id="keys-without-values"),
    pytest.param('password: "' + "x" * 200_000, id="an-unterminated-quoted-value"),
    pytest.param("token" + " " * 200_000 + "=", id="spaces-between-key-and-separator"),
    pytest.param(("secret" + "a" * 45 + " ") * 4_000, id="long-key-names"),
    pytest.param("Bearer " * 28_000, id="schemes-without-credentials"),
    pytest.param("eyJabcd." * 25_000, id="jwt-starts"),
    pytest.param("-----BEGIN PRIVATE KEY-----!" * 7_000, id="pem-starts-without-bodies"),
    pytest.param("-----BEGIN PRIVATE KEY-----" + "A" * 200_000, id="pem-without-end"),
    pytest.param("http://a:" * 22_000, id="url-starts"),
    pytest.param("http://a:" + "b" * 200_000, id="url-password-without-host"),
    pytest.param("hooks.slack.com/services/" * 8_000, id="webhook-starts"),
    pytest.param("AKIA" * 50_000, id="token-prefixes"),
    pytest.param("expected a.token == 1 " * 9_000 + ", found x", id="expectations-without-a-finding"),
    pytest.param(("token=%22" + "%41" * 1_100) * 60, id="percent-encoded-quotes-without-end"),
    pytest.param("token%3D" * 25_000, id="percent-encoded-separators"),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_input_is_redacted_in_linear_time(text: str) -> None:
    # Bounded quantifiers that never compete for the same characters: no input backtracks for long. A regression to
    # quadratic time turns this 200 KB case into minutes, which the suite would show; no clock is asserted on.
    once = redact_text(text)
    assert redact_text(once) == once


def test_a_large_report_is_redacted_whole() -> None:
    evidence = [{"what": f"JSON leaks.{i}", "measured": f"item {i}: password=hunter{i} ok", "ok": False} for i in range(5_000)]
    redacted = redact({"checks": [{"evidence": evidence}]})
    assert len(json.dumps(redacted)) > 300_000
    assert all(e["measured"] == f"item {i}: password={MARKER} ok" for i, e in enumerate(redacted["checks"][0]["evidence"]))


def test_importing_the_redactor_loads_only_the_standard_library_and_compiles_nothing() -> None:
    probe = ("import json, sys; before = set(sys.modules); import core.redact as r; "
             "print(json.dumps([sorted(set(sys.modules) - before), r._rules.cache_info().currsize]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    loaded, compiled = json.loads(done.stdout)
    assert [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names] == ["core", "core.redact"]
    assert compiled == 0


def test_a_signed_urls_credential_is_an_account_and_a_date_and_stays() -> None:
    link = ("https://storage.googleapis.com/b/r/orders/b-1/report.html?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=postdeploy%40p.iam.gserviceaccount.com%2F20261201%2Fauto%2Fstorage%2Fgoog4_request"
            "&X-Goog-Date=20261201T120000Z&X-Goog-Expires=86400&X-Goog-SignedHeaders=host&X-Goog-Signature=ab12")
    assert redact_text(link) == link
    assert redact_text("credential=hunter2-abcdef") == "credential=[REDACTED]"  # any other credential still goes
    assert redact_text("x-google-credential=hunter2-abcdef") == "x-google-credential=[REDACTED]"


@pytest.mark.parametrize("text", ["X-Goog-Api-Key: abcdefghijklmnop1234", "x-goog-token=hunter2hunter2",
                                  "curl -H 'x-goog-secret: s3cr3tvalue'", "X-Goog-Credential=hunter2hunter2"])
def test_only_a_signed_urls_credential_shape_is_exempt(text: str) -> None:
    assert "[REDACTED]" in redact_text(text)
