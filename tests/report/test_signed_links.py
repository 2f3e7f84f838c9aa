"""Signed report links: V4 signed URLs from a key file (signed here) or from the function's own service account
(signed by IAM Credentials signBlob), and the authenticated link, with the reason, whenever signing is refused.

Every signature is checked the way Cloud Storage would: the V4 canonical request and string-to-sign are rebuilt here
from the URL alone (not with the library's code) and the signature verified with the public key."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.redact import redact_text
from report.store import MAX_LINK_TTL_S, GcsStore, LocalStore
from sources.gcp import IAM_CREDENTIALS_ENDPOINT_ENV, SIGN_TIMEOUT_S, TOKEN_CREATOR
from tests.servers.loopback import LoopbackHandler, LoopbackServer, error_body

KEY_EMAIL = "postdeploy-key@test.iam.gserviceaccount.com"
FUNCTION_EMAIL = "postdeploy-fn@test.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.fake-metadata-token-for-tests"
SIGNBLOB_DENIED = "Permission 'iam.serviceAccounts.signBlob' denied on resource (or it may not exist)."
AUTHENTICATED = "https://storage.cloud.google.com/{bucket}/{object}"
NAME = "orders/b1/report.html"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- V4, rebuilt from the URL alone ------------------------------------------------------------------------------

def _encode(text: str) -> str:
    return quote(text, safe="-_.~")  # V4: percent-encode everything but the unreserved characters


def v4_parts(url: str) -> tuple[dict[str, str], str, bytes]:
    """(query parameters without the signature, the string-to-sign, the signature) of a V4 signed GET URL."""
    split = urlsplit(url)
    params = dict(parse_qsl(split.query, keep_blank_values=True, strict_parsing=True))
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join(["GET", split.path, canonical_query, f"host:{split.netloc}\n", "host",
                                   "UNSIGNED-PAYLOAD"])
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    return params, string_to_sign, signature


def verifies(key: rsa.RSAPrivateKey, string_to_sign: str, signature: bytes) -> bool:
    try:
        key.public_key().verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def assert_signed(url: str, *, key: rsa.RSAPrivateKey, email: str, ttl_s: int, path: str) -> str:
    """Check a signed link the way Cloud Storage would; return its string-to-sign."""
    split = urlsplit(url)
    assert split.path == path, url
    params, string_to_sign, signature = v4_parts(url)
    date = params["X-Goog-Date"]
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-Expires"] == str(ttl_s)
    assert params["X-Goog-Credential"] == f"{email}/{date[:8]}/auto/storage/goog4_request"
    assert params["X-Goog-SignedHeaders"] == "host"
    signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60
    assert verifies(key, string_to_sign, signature)
    return string_to_sign


def test_the_verifier_can_say_no() -> None:
    """The checks below prove something only if a signature of anything else fails them."""
    key = new_key()
    good = key.sign(b"GOOG4-RSA-SHA256\nthe string", padding.PKCS1v15(), hashes.SHA256())
    assert verifies(key, "GOOG4-RSA-SHA256\nthe string", good)
    assert not verifies(key, "GOOG4-RSA-SHA256\nthe strinG", good)
    assert not verifies(new_key(), "GOOG4-RSA-SHA256\nthe string", good)


# --- a key file: signed here --------------------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> rsa.RSAPrivateKey:
    """A throwaway service-account key file in GOOGLE_APPLICATION_CREDENTIALS; yields its private key."""
    key = new_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": pem,
        "client_email": KEY_EMAIL, "client_id": "1", "token_uri": "http://127.0.0.1:9/token",
    }), encoding="utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return key


@pytest.mark.parametrize("ttl_s", [1, 3600, 86400, MAX_LINK_TTL_S], ids=["1s", "1h", "24h", "7d"])
def test_a_key_file_signs_links_that_verify(bucket: str, key_file: rsa.RSAPrivateKey, ttl_s: int) -> None:
    store = GcsStore(bucket, "reports").with_link_ttl(ttl_s)
    link = store.write(NAME, "<p>café</p>")
    assert_signed(link, key=key_file, email=KEY_EMAIL, ttl_s=ttl_s, path=f"/{bucket}/reports/{NAME}")
    assert store.link_problem == ""
    assert store.read(NAME) == "<p>café</p>"


def test_every_way_to_a_link_signs_it(bucket: str, key_file: rsa.RSAPrivateKey) -> None:
    """write, update and link all hand out signed links; a name with spaces and accents is signed as sent."""
    store = GcsStore(bucket, "team reports", link_ttl_s=600)
    name = "café orders/b 1/report.md"
    path = f"/{bucket}/{quote('team reports/' + name)}"
    assert_signed(store.write(name, "x"), key=key_file, email=KEY_EMAIL, ttl_s=600, path=path)
    assert_signed(store.link(name), key=key_file, email=KEY_EMAIL, ttl_s=600, path=path)
    updated = store.update("café orders/index.json", lambda current: "{}")
    assert_signed(updated, key=key_file, email=KEY_EMAIL, ttl_s=600, path=f"/{bucket}/{quote('team reports/café orders/index.json')}")


def test_a_signed_link_opens_the_report(bucket: str, key_file: rsa.RSAPrivateKey) -> None:
    """The link points at the object (here on the emulator, which does not check signatures)."""
    link = GcsStore(bucket).with_link_ttl(60).write(NAME, "<p>the report</p>")
    with urllib.request.urlopen(link, timeout=5) as response:
        assert response.read() == b"<p>the report</p>"


def test_links_are_authenticated_urls_without_a_ttl(bucket: str, key_file: rsa.RSAPrivateKey) -> None:
    store = GcsStore(bucket, "reports")
    signed = store.with_link_ttl(3600)
    plain = AUTHENTICATED.format(bucket=bucket, object=f"reports/{NAME}")
    assert signed.link(NAME) != plain  # the view signs ...
    assert store.link(NAME) == plain  # ... the store it came from does not
    assert store.write(NAME, "x") == plain
    assert signed.with_link_ttl(0).link(NAME) == plain
    assert store.link_problem == "" and signed.with_link_ttl(0).link_problem == ""


@pytest.mark.parametrize("ttl_s", [-1, MAX_LINK_TTL_S + 1], ids=["negative", "over-7-days"])
def test_a_lifetime_a_signed_url_cannot_have_is_refused(bucket: str, tmp_path: Path, ttl_s: int) -> None:
    expected = rf"^expected a link lifetime from 0 \(not signed\) to 604800 s \(7 days\), found {ttl_s}$"
    with pytest.raises(ValueError, match=expected):
        GcsStore(bucket, link_ttl_s=ttl_s)
    with pytest.raises(ValueError, match=expected):
        GcsStore(bucket).with_link_ttl(ttl_s)
    with pytest.raises(ValueError, match=expected):
        LocalStore(str(tmp_path)).with_link_ttl(ttl_s)


# --- the function's own account: signed by IAM Credentials signBlob ------------------------------------------------

class _GoogleHandler(LoopbackHandler["FakeGoogle"]):
    def do_GET(self) -> None:
        status, body, headers = self.owner._metadata(self.path, {k.lower(): v for k, v in self.headers.items()})
        self.send_bytes(status, body, {"Metadata-Flavor": "Google", **headers})

    def do_POST(self) -> None:
        status, answer = self.owner._sign_blob(self.path, {k.lower(): v for k, v in self.headers.items()}, self.read_json())
        self.send_json(status, answer)


class FakeGoogle(LoopbackServer):
    """The Compute Engine metadata server (account email and access token) and IAM Credentials signBlob, as a
    Cloud Function's service account meets them; signBlob signs with a key of its own, or answers `refuse_with`."""

    SCOPES: ClassVar[list[str]] = ["https://www.googleapis.com/auth/cloud-platform"]

    def __init__(self) -> None:
        super().__init__(_GoogleHandler, "fake Google")
        self.key = new_key()
        self.refuse_with = 0
        self.metadata_paths: list[str] = []
        self.sign_requests: list[tuple[str, dict[str, str], Any]] = []  # (path, lower-cased headers, JSON body)
        self.signatures: list[bytes] = []
        self._lock = threading.Lock()

    def _metadata(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.metadata_paths.append(path)
        if headers.get("metadata-flavor") != "Google":
            return 403, b"Missing Metadata-Flavor:Google header.", {}
        route = path.split("?", 1)[0]
        accounts = "/computeMetadata/v1/instance/service-accounts/"
        answers: dict[str, Any] = {
            "/": "computeMetadata/",
            "/computeMetadata/v1/project/project-id": "test",
            f"{accounts}default/": {"aliases": ["default"], "email": FUNCTION_EMAIL, "scopes": self.SCOPES},
            f"{accounts}{FUNCTION_EMAIL}/": {"aliases": ["default"], "email": FUNCTION_EMAIL, "scopes": self.SCOPES},
            f"{accounts}default/token": {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"},
            f"{accounts}{FUNCTION_EMAIL}/token": {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"},
        }
        if route not in answers:
            return 404, b"Not Found", {"Content-Type": "text/html"}
        answer = answers[route]
        if isinstance(answer, str):
            return 200, answer.encode(), {"Content-Type": "application/text"}
        return 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}

    def _sign_blob(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.sign_requests.append((path, headers, body))
            if self.refuse_with:
                message = SIGNBLOB_DENIED if self.refuse_with == 403 else "The service is currently unavailable."
                return self.refuse_with, error_body(self.refuse_with, message)
            signature = self.key.sign(base64.b64decode(body["payload"]), padding.PKCS1v15(), hashes.SHA256())
            self.signatures.append(signature)
            return 200, {"keyId": "0123456789abcdef", "signedBlob": base64.b64encode(signature).decode()}


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No key file and no gcloud ADC: google.auth.default() can only look for a metadata server."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    yield


@pytest.fixture
def function_account(no_key: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """Run as a Cloud Function does: Compute Engine credentials from a (fake, loopback) metadata server, signBlob
    on a fake IAM Credentials API."""
    from google.auth.compute_engine import _metadata

    with FakeGoogle() as fake:
        host = fake.base_url.removeprefix("http://")
        # google-auth reads these two at import (from NO_GCE_CHECK and GCE_METADATA_HOST, which keep every other test
        # away from any metadata server); GCE_METADATA_IP, the address it pings, is read at each call.
        monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", False)
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)
        monkeypatch.setenv("GCE_METADATA_IP", host)
        monkeypatch.setenv(IAM_CREDENTIALS_ENDPOINT_ENV, fake.base_url)
        # After a token refresh google-auth looks up the account's "regional access boundary" at
        # https://iamcredentials.googleapis.com/…/allowedLocations in the background: send every https request to a
        # port nobody listens on, so nothing leaves the machine; the fakes are plain http on loopback.
        for proxy in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(proxy, f"http://127.0.0.1:{closed_port()}")
        for bypass in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(bypass, "127.0.0.1,localhost")
        yield fake


def test_a_service_account_without_a_key_signs_through_sign_blob(bucket: str, function_account: FakeGoogle) -> None:
    fake = function_account
    link = GcsStore(bucket, "reports").with_link_ttl(86400).write(NAME, "<p>x</p>")
    string_to_sign = assert_signed(link, key=fake.key, email=FUNCTION_EMAIL, ttl_s=86400, path=f"/{bucket}/reports/{NAME}")
    [(path, headers, body)] = fake.sign_requests
    assert path == f"/v1/projects/-/serviceAccounts/{FUNCTION_EMAIL}:signBlob"
    assert headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert set(body) == {"payload"}
    assert base64.b64decode(body["payload"], validate=True).decode() == string_to_sign
    assert v4_parts(link)[2] == fake.signatures[0]  # the signature IAM made is the one in the link
    assert any(p.startswith("/computeMetadata/v1/instance/service-accounts/") for p in fake.metadata_paths)


def test_the_account_is_found_once_per_store(bucket: str, function_account: FakeGoogle) -> None:
    store = GcsStore(bucket)
    for ttl_s in (60, 120):
        store.with_link_ttl(ttl_s).write(NAME, "x")
    looked_up = len(function_account.metadata_paths)
    store.with_link_ttl(180).write(NAME, "x")
    assert len(function_account.metadata_paths) == looked_up  # the token is still valid: no new look-up
    assert len(function_account.sign_requests) == 3


def test_only_links_handed_out_are_signed(bucket: str, function_account: FakeGoogle) -> None:
    """Claims and takeovers return no link: they cost no signBlob call."""
    store = GcsStore(bucket).with_link_ttl(3600)
    assert store.claim("orders/b1/claim-r1.txt", "run-1") is True
    assert store.take_over("orders/b1/claim-r1.txt", "run-1", "run-2") is True
    store.release("orders/b1/claim-r1.txt")
    assert function_account.sign_requests == []


def test_a_refused_sign_blob_keeps_the_report_and_says_which_role_to_grant(
        bucket: str, function_account: FakeGoogle, caplog: pytest.LogCaptureFixture) -> None:
    fake = function_account
    fake.refuse_with = 403
    store = GcsStore(bucket, "reports").with_link_ttl(86400)
    plain = AUTHENTICATED.format(bucket=bucket, object=f"reports/{NAME}")
    assert store.write(NAME, "<p>kept</p>") == plain
    assert store.read(NAME) == "<p>kept</p>"
    assert store.link_problem == (
        f"report links are not signed (they open only for people with read access to gs://{bucket}): AccessDenied: "
        f"permission denied signing a report link as {FUNCTION_EMAIL}: {SIGNBLOB_DENIED}; fix: grant {TOKEN_CREATOR} "
        f"on the service account {FUNCTION_EMAIL} to itself (gcloud iam service-accounts add-iam-policy-binding "
        f"{FUNCTION_EMAIL} --member=serviceAccount:{FUNCTION_EMAIL} --role={TOKEN_CREATOR}) and enable "
        "iamcredentials.googleapis.com")
    assert store.write("orders/b1/report.md", "x") == AUTHENTICATED.format(bucket=bucket, object="reports/orders/b1/report.md")
    assert len(fake.sign_requests) == 1  # refused once: the other links of this validation do not ask again
    warnings = [r.getMessage() for r in caplog.records if r.name == "postdeploy" and r.levelname == "WARNING"]
    assert warnings == [store.link_problem]
    fake.refuse_with = 0
    fresh = store.with_link_ttl(86400)  # the next validation's view of the same store
    assert fresh.link(NAME) != plain and fresh.link_problem == ""  # the role granted: it signs again


def test_an_unavailable_sign_blob_falls_back_too(bucket: str, function_account: FakeGoogle) -> None:
    function_account.refuse_with = 503
    store = GcsStore(bucket).with_link_ttl(3600)
    assert store.write(NAME, "x") == AUTHENTICATED.format(bucket=bucket, object=NAME)
    assert store.link_problem.endswith(f": Transient: signing a report link as {FUNCTION_EMAIL}: expected 200 from IAM "
                                       "Credentials signBlob, got 503: The service is currently unavailable.")


def test_an_unreachable_sign_blob_falls_back_without_waiting(bucket: str, function_account: FakeGoogle,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IAM_CREDENTIALS_ENDPOINT_ENV, f"http://127.0.0.1:{closed_port()}")
    store = GcsStore(bucket).with_link_ttl(3600)
    started = time.monotonic()
    assert store.write(NAME, "x") == AUTHENTICATED.format(bucket=bucket, object=NAME)
    assert time.monotonic() - started < SIGN_TIMEOUT_S
    assert f"signing a report link as {FUNCTION_EMAIL}: IAM Credentials signBlob unreachable: ConnectionError" in store.link_problem


def test_a_sign_blob_that_does_not_answer_is_given_up_in_time(bucket: str, function_account: FakeGoogle,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sources.gcp.SIGN_TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv(IAM_CREDENTIALS_ENDPOINT_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}")
        store = GcsStore(bucket).with_link_ttl(3600)
        started = time.monotonic()
        assert store.write(NAME, "x") == AUTHENTICATED.format(bucket=bucket, object=NAME)
        assert time.monotonic() - started < 5
    assert "IAM Credentials signBlob unreachable: ReadTimeout" in store.link_problem


# --- credentials that cannot sign --------------------------------------------------------------------------------

def test_user_credentials_cannot_sign_and_say_so(bucket: str, no_key: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}),
                   encoding="utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    store = GcsStore(bucket).with_link_ttl(3600)
    assert store.write(NAME, "x") == AUTHENTICATED.format(bucket=bucket, object=NAME)
    assert store.link_problem.endswith(
        ": NoCredentials: expected service account credentials to sign report links, found "
        "google.oauth2.credentials.Credentials; fix: run postdeploy as a service account: the function's own, or a key "
        "file in GOOGLE_APPLICATION_CREDENTIALS (user credentials cannot sign URLs)")


def test_no_credentials_at_all_falls_back(bucket: str, no_key: None) -> None:
    """The metadata server of every other test (127.0.0.1:9) answers nothing: no credentials, an authenticated link."""
    store = GcsStore(bucket).with_link_ttl(3600)
    assert store.write(NAME, "x") == AUTHENTICATED.format(bucket=bucket, object=NAME)
    assert "NoCredentials: no Google credentials to read a service account to sign report links" in store.link_problem


# --- where a signed link may go ------------------------------------------------------------------------------------

def test_a_signed_link_survives_redaction_on_its_way_to_slack(bucket: str, key_file: rsa.RSAPrivateKey) -> None:
    link = GcsStore(bucket).with_link_ttl(3600).link(NAME)
    assert redact_text(f"<{link}|report>") == f"<{link}|report>"
