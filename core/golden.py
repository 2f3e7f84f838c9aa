"""Golden paths: HTTP sequences and WebSocket exchanges run against a revision, step by step.

A path is a list of steps run in order; a step may use what an earlier one returned
(``${steps.create.json.id}``). Header values that are credentials come from references (``${env:NAME}``,
``${secret:projects/P/secrets/S/versions/V}``), are resolved through ``ctx.secrets`` and never appear in
a result. The smoke check runs every path once; the observation window repeats some of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI, SecurityError
from websockets.frames import CLOSE_CODE_EXPLANATIONS
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from core.expect import MISSING, Expectation, describe, lookup, parse_all
from core.model import CheckContext, CheckResult, Evidence, Target
from core.schema import FUNCTION_TIMEOUT_S, Expectations, Strict, UrlPath
from core.web import Refused, audience, exchange, fetch_token, token_may_help

DEFAULT_STEP_TIMEOUT_S = 10.0
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_EVENT_FIELD = "type"
DEFAULT_FAIL_EVENTS = ("error",)
CLOSE_TIMEOUT_S = 2.0
BUDGET_MARGIN_S = 0.5
OK_CLOSE_CODES = (1000, 1001)
MIN_SCRUBBED_CHARS = 4
REDACTED = "<redacted>"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
STEP_KINDS = ("http", "websocket")
REFERENCE_FORMS = "${env:NAME}, ${secret:projects/P/secrets/S/versions/V} or ${steps.STEP.status|json[.PATH]|CAPTURE}"

_REF = re.compile(r"\$\{([^{}]*)\}")
_NAME = re.compile(r"^[\w\-]+$")
_JSON_PATH = re.compile(r"^[\w.\-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_]\w*$")
_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
_STEP_REF = re.compile(r"^steps\.(?P<step>[\w\-]+)\.(?P<attr>[\w\-]+)(?:\.(?P<path>[\w.\-]+))?$")
# Header names whose value is a credential, and values that are credentials whatever the header is called.
_SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|password|passwd|api[-_]?key|session|credential", re.I)
_CREDENTIAL_VALUE = re.compile(r"^\s*(?:bearer|basic|digest|token)\s+\S|eyJ[\w-]{8,}\.[\w-]{8,}\.", re.I)


# ---------------------------------------------------------------- references


@dataclass(frozen=True)
class Ref:
    """One ``${…}`` reference: a secret (env, secret) or a value from an earlier step."""

    text: str
    kind: Literal["env", "secret", "step"]
    name: str  # variable, secret version, or step name
    attr: str = ""  # step: status, json, or a capture name
    path: str = ""  # step: dotted path inside the JSON

    @property
    def is_secret(self) -> bool:
        return self.kind != "step"

    @classmethod
    def parse(cls, inner: str) -> Ref:
        """The reference inside ``${…}``; ValueError names the accepted forms."""
        text = "${" + inner + "}"
        kind, _, rest = inner.partition(":")
        if kind == "env" and _ENV_NAME.match(rest):
            return cls(text, "env", rest)
        if kind == "secret" and _SECRET_VERSION.match(rest):
            return cls(text, "secret", rest)
        m = _STEP_REF.match(inner)
        if m and not (m.group("path") and m.group("attr") != "json"):
            return cls(text, "step", m.group("step"), m.group("attr"), m.group("path") or "")
        raise ValueError(f"expected {REFERENCE_FORMS}, found {text}")


def refs_in(text: str) -> list[Ref]:
    """Every reference in a string."""
    return [Ref.parse(m.group(1)) for m in _REF.finditer(text)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# ---------------------------------------------------------------- config


class Message(Strict):
    """One message a WebSocket step sends: ``{json: …}`` (serialized) or ``{text: …}``."""

    json_: Any = Field(None, alias="json")
    text: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Message:
        if (self.json_ is None) == (self.text is None):
            raise ValueError("expected exactly one of json or text")
        return self


class _Step(Strict):
    """What HTTP and WebSocket steps share."""

    name: str = ""
    path: UrlPath
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(DEFAULT_STEP_TIMEOUT_S, gt=0, le=FUNCTION_TIMEOUT_S)
    capture: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not _NAME.match(value):
            raise ValueError(f"expected letters, digits, '_' or '-', found {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _no_literal_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for header, text in value.items():
            try:
                refs = refs_in(text)
            except ValueError as exc:
                problems.append(f"header {header}: {exc}")
                continue
            literal = _REF.sub("", text)
            if (_SENSITIVE_HEADER.search(header) and not refs) or _CREDENTIAL_VALUE.search(literal):
                # Never echo the value: it is the secret.
                problems.append(f"header {header}: expected the credential from a reference such as 'Bearer ${{env:NAME}}' or "
                                f"'${{secret:projects/P/secrets/S/versions/V}}', found a literal value (secrets are never inline)")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("capture")
    @classmethod
    def _captures(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _NAME.match(name) or name in ("status", "json"):
                raise ValueError(f"expected a capture name of letters, digits, '_' or '-' other than status and json, found {name!r}")
            if not _JSON_PATH.match(path):
                raise ValueError(f"expected a dotted JSON path to capture as {name}, found {path!r}")
        return value

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        """(where, text, secrets allowed) for every string that may hold references."""
        yield "path", self.path, False
        for key, value in self.query.items():
            if isinstance(value, str):
                yield f"query.{key}", value, False
        for header, text in self.headers.items():
            yield f"headers.{header}", text, True


class HttpStep(_Step):
    """One HTTP request and what its response must look like."""

    kind: Literal["http"] = "http"
    method: str = "GET"
    json_: Any = Field(None, alias="json")
    text: str | None = None
    expect_status: list[int] | None = None  # None: any 2xx
    expect_json: Expectations = Field(default_factory=list)
    latency_budget_ms: float | None = Field(None, gt=0)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"expected one of {', '.join(METHODS)}, found {value!r}")
        return value.upper()

    @model_validator(mode="after")
    def _one_body(self) -> HttpStep:
        if self.json_ is not None and self.text is not None:
            raise ValueError("expected at most one body, json or text, found both")
        return self

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield from super().templates()
        for text in _strings(self.json_):
            yield "json", text, False
        if self.text is not None:
            yield "text", self.text, False

    def label(self) -> str:
        return f"{self.method} {self.path}"


class WebSocketStep(_Step):
    """Connect, send messages, read events until the expected ones arrived in order, then close."""

    kind: Literal["websocket"] = "websocket"
    subprotocol: str | None = None
    send: list[Message] = Field(default_factory=list)
    expect_events: list[str] = Field(default_factory=list)
    event_field: str = DEFAULT_EVENT_FIELD
    fail_on_events: list[str] = Field(default_factory=lambda: list(DEFAULT_FAIL_EVENTS))
    expect: Expectations = Field(default_factory=list)

    @model_validator(mode="after")
    def _expects_something(self) -> WebSocketStep:
        if not self.expect_events and not self.expect:
            raise ValueError("expected expect_events or expect: a WebSocket step that waits for nothing proves nothing")
        return self

    @field_validator("event_field")
    @classmethod
    def _field(cls, value: str) -> str:
        if not _JSON_PATH.match(value):
            raise ValueError(f"expected a dotted JSON path, found {value!r}")
        return value

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield from super().templates()
        for i, message in enumerate(self.send):
            for text in _strings(message.json_ if message.text is None else message.text):
                yield f"send[{i}]", text, False

    def label(self) -> str:
        return f"WebSocket {self.path}"


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind") if value.get("kind") in STEP_KINDS else None
    return getattr(value, "kind", None)


Step = Annotated[
    Annotated[HttpStep, Tag("http")] | Annotated[WebSocketStep, Tag("websocket")],
    Discriminator(_step_kind, custom_error_type="step_kind",
                  custom_error_message=f"expected a mapping with one key, {' or '.join(STEP_KINDS)}, holding the step"),
]


class PathConfig(Strict):
    """A named golden path: steps run in order, the first failure ends it."""

    name: str
    critical: bool = False
    timeout_s: float | None = Field(None, gt=0, le=FUNCTION_TIMEOUT_S)
    steps: list[Step] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected letters, digits, '_' or '-', found {value!r}")
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _by_key(cls, value: Any) -> Any:
        """``- http: {…}`` / ``- websocket: {…}`` becomes the tagged step; anything else is left to fail on its own."""
        if not isinstance(value, list):
            return value
        return [{**item[key], "kind": key}
                if isinstance(item, dict) and len(item) == 1 and (key := next(iter(item))) in STEP_KINDS and isinstance(item[key], dict)
                else item for item in value]

    @model_validator(mode="after")
    def _names_and_references(self) -> PathConfig:
        problems: list[str] = []
        captures: dict[str, set[str]] = {}
        for i, step in enumerate(self.steps):
            if not step.name:
                step.name = f"{step.kind}{i + 1}"
            where_step = f"steps[{i}] ({step.name})"
            if step.name in captures:
                problems.append(f"{where_step}: duplicate step name")
            for where, text, secrets_ok in step.templates():
                try:
                    refs = refs_in(text)
                except ValueError as exc:
                    problems.append(f"{where_step} {where}: {exc}")
                    continue
                for ref in refs:
                    if ref.is_secret and not secrets_ok:
                        problems.append(f"{where_step} {where}: {ref.text} is a secret reference; secrets are only allowed in headers")
                    elif ref.kind == "step" and ref.name not in captures:
                        problems.append(f"{where_step} {where}: {ref.text} refers to {ref.name!r}, which is not an earlier step "
                                        f"(earlier steps: {', '.join(captures) or 'none'})")
                    elif ref.kind == "step" and ref.attr not in ("status", "json", *captures[ref.name]):
                        known = ", ".join(["status", "json.PATH", *sorted(captures[ref.name])])
                        problems.append(f"{where_step} {where}: {ref.text}: expected one of {known} after steps.{ref.name}, "
                                        f"found {ref.attr!r}")
            captures.setdefault(step.name, set(step.capture))
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------- results of one run


@dataclass
class StepOutput:
    """What later steps may refer to."""

    status: int | None = None
    doc: Any = MISSING
    captures: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutcome:
    """One step's verdict: the first reason is the headline."""

    name: str
    label: str
    reasons: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    output: StepOutput = field(default_factory=StepOutput)
    setup_failed: bool = False  # postdeploy could not send it (secret, token): no verdict on the service

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass
class PathOutcome:
    """One path's steps, up to the first that failed."""

    config: PathConfig
    steps: list[StepOutcome]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and len(self.steps) == len(self.config.steps)

    @property
    def problem(self) -> str:
        return next((s.reasons[0] for s in self.steps if s.reasons), "")

    def evidence(self) -> list[Evidence]:
        failed = next((s for s in self.steps if not s.ok), None)
        measured = "every step passed" if failed is None else f"failed at step {failed.name}: {failed.reasons[0]}"
        count = len(self.config.steps)
        wanted = (f"{count} steps pass" if count > 1 else "the step passes") + (" (critical path)" if self.config.critical else "")
        items = [Evidence(f"path {self.config.name}", measured, wanted, ok=self.ok)]
        for s in self.steps:
            items += s.evidence
        for step in self.config.steps[len(self.steps):]:
            items.append(Evidence(f"{self.config.name}/{step.name}: {step.label()}", "not run", "runs once the steps before it pass"))
        return items


class _StepFailed(Exception):
    """A step that could not be sent: an unresolvable reference or secret."""


class _SetupFailed(_StepFailed):
    """postdeploy's own setup failed (a secret or token it could not get): not the service's fault."""


# ---------------------------------------------------------------- the run


class SessionSettings(Protocol):
    """What a session needs of the smoke check's settings."""

    @property
    def auth(self) -> str: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def timeout_s(self) -> float: ...


class Session:
    """State shared by the paths of one run: ID token, resolved secrets, values to scrub from the result."""

    def __init__(self, target: Target, config: SessionSettings, ctx: CheckContext) -> None:
        self.config = config
        self.ctx = ctx
        self.base = target.url.rstrip("/")
        self.audience = audience(target)
        self.tokens_help = token_may_help(target.url, target)  # `auth: auto` asks for an ID token only where one can work
        self.scrubbed: set[str] = set()
        self._secrets: dict[str, str] = {}
        self._token: tuple[str | None, str] | None = None
        self._token_lock = asyncio.Lock()
        self._secret_lock = asyncio.Lock()

    async def token(self) -> tuple[str | None, str]:
        """An ID token for the target (fetched once), or None and why not."""
        async with self._token_lock:
            if self._token is None:
                self._token = await fetch_token(self.ctx, self.audience)
                if self._token[0]:
                    self._remember(self._token[0])
            return self._token

    async def secret(self, ref: Ref) -> str:
        """The value behind ``${env:…}`` or ``${secret:…}``; _StepFailed says why there is none."""
        key = f"{ref.kind}:{ref.name}"
        async with self._secret_lock:
            return self._secrets[key] if key in self._secrets else await self._resolve(ref, key)

    async def _resolve(self, ref: Ref, key: str) -> str:
        if self.ctx.secrets is not None:
            try:
                value = await asyncio.to_thread(self.ctx.secrets, key)
            except Exception as exc:  # a missing variable or secret fails the step, with the reason
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise _SetupFailed(f"could not resolve {ref.text}: {message}") from exc
        elif ref.kind == "env":
            if ref.name not in os.environ:
                raise _SetupFailed(f"could not resolve {ref.text}: expected environment variable {ref.name} to be set, found nothing")
            value = os.environ[ref.name]
        else:
            raise _SetupFailed(f"could not resolve {ref.text}: no secret source")
        value = value.strip()  # secrets stored with `echo` end in a newline
        if not value.isascii() or not value.isprintable():
            raise _SetupFailed(f"{ref.text} resolves to a value that cannot be sent in a header "
                               "(control or non-ASCII characters)")
        self._remember(value)
        self._secrets[key] = value
        return value

    def _remember(self, value: str) -> None:
        if len(value) >= MIN_SCRUBBED_CHARS:
            # Also the escaped spellings a repr or a JSON dump of an echoed value would show.
            self.scrubbed.update({value, json.dumps(value)[1:-1], repr(value)[1:-1]})
            if value.startswith(("Bearer ", "Basic ")):
                self.scrubbed.add(value.split(" ", 1)[1])

    def scrub(self, value: Any) -> Any:
        """The value with every secret replaced by REDACTED (belt and braces: a server may echo one)."""
        if isinstance(value, str):
            for secret in sorted(self.scrubbed, key=len, reverse=True):
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        return value

    def scrubbed_result(self, result: CheckResult) -> CheckResult:
        if not self.scrubbed:
            return result
        result.summary = self.scrub(result.summary)
        result.reasons = self.scrub(result.reasons)
        result.next_steps = self.scrub(result.next_steps)
        result.evidence = [Evidence(self.scrub(e.what), self.scrub(e.measured), self.scrub(e.threshold), self.scrub(e.previous), e.ok)
                           for e in result.evidence]
        return result

    async def render(self, text: str, outputs: dict[str, StepOutput], in_path: bool = False) -> str:
        """A template with every reference replaced by its value (percent-encoded inside a URL path)."""
        parts: list[str] = []
        last = 0
        for m in _REF.finditer(text):
            ref = Ref.parse(m.group(1))
            value = await self.secret(ref) if ref.is_secret else _step_value(ref, outputs)
            value = value if isinstance(value, str) else json.dumps(value)
            parts += [text[last:m.start()], quote(value, safe="") if in_path else value]
            last = m.end()
        return "".join(parts) + text[last:]

    async def render_value(self, value: Any, outputs: dict[str, StepOutput]) -> Any:
        """A JSON body with references replaced; a string that is one step reference keeps the value's type."""
        if isinstance(value, str):
            m = _REF.fullmatch(value)
            if m and not Ref.parse(m.group(1)).is_secret:
                return _step_value(Ref.parse(m.group(1)), outputs)
            return await self.render(value, outputs)
        if isinstance(value, list):
            return [await self.render_value(v, outputs) for v in value]
        if isinstance(value, dict):
            return {k: await self.render_value(v, outputs) for k, v in value.items()}
        return value

    async def headers(self, step: _Step, outputs: dict[str, StepOutput]) -> tuple[dict[str, str], list[str]]:
        """Rendered headers and how to show them: names, and values only when they are neither secret nor referenced."""
        headers, shown = {}, []
        for name, template in step.headers.items():
            try:
                headers[name] = await self.render(template, outputs)
            except _StepFailed as exc:
                raise type(exc)(f"header {name}: {exc}") from exc  # keeps a setup failure one
            refs = refs_in(template)
            if refs or _SENSITIVE_HEADER.search(name):
                shown.append(f"{name}: {REDACTED}" + (f" (from {', '.join(r.text[2:-1] for r in refs)})" if refs else ""))
            else:
                shown.append(f"{name}: {template}")
        return headers, shown


def _step_value(ref: Ref, outputs: dict[str, StepOutput]) -> Any:
    out = outputs[ref.name]
    if ref.attr == "status":
        return out.status
    if ref.attr == "json":
        value = lookup(out.doc, ref.path) if ref.path and out.doc is not MISSING else out.doc
        if value is MISSING:
            raise _StepFailed(f"{ref.text} has no value: step {ref.name} "
                              + (f"returned no field {ref.path}" if out.doc is not MISSING else "returned no JSON body"))
        return value
    return out.captures[ref.attr]


async def _authorized(session: Session, headers: dict[str, str], shown: list[str]) -> tuple[dict[str, str], list[str], str]:
    """The headers with the session's ID token added, or unchanged and why there is none."""
    token, problem = await session.token()
    if not token:
        return headers, shown, problem
    # Cloud Run reads the ID token from X-Serverless-Authorization when the app needs Authorization for itself.
    name = "X-Serverless-Authorization" if any(h.lower() == "authorization" for h in headers) else "Authorization"
    return {**headers, name: f"Bearer {token}"}, [*shown, f"{name}: {REDACTED} (ID token)"], ""


def _doc(data: bytes | str) -> Any:
    try:
        return json.loads(data) if data else MISSING
    except ValueError:
        return MISSING


def _capture(step: _Step, prefix: str, doc: Any, where: str, outcome: StepOutcome) -> None:
    for name, path in step.capture.items():
        value = lookup(doc, path)
        outcome.evidence.append(Evidence(f"{prefix}: capture {name}", "captured" if value is not MISSING else "no such field",
                                         f"field {path}", ok=value is not MISSING))
        if value is MISSING:
            outcome.reasons.append(f"expected field {path} in {where} to capture as {name}, found no such field")
        else:
            outcome.output.captures[name] = value


async def _url(session: Session, step: _Step, outputs: dict[str, StepOutput], websocket: bool = False) -> tuple[str, str]:
    """(URL, rendered path): the target's URL, the step's path, its own query string and ``query``."""
    path = await session.render(step.path, outputs, in_path=True)
    query = [(k, await session.render(v, outputs) if isinstance(v, str) else json.dumps(v)) for k, v in step.query.items()]
    base, parts = urlsplit(session.base), urlsplit(path)
    scheme = ("wss" if base.scheme == "https" else "ws") if websocket else base.scheme
    query_string = urlencode(parse_qsl(parts.query, keep_blank_values=True) + query) if query else parts.query
    return urlunsplit((scheme, base.netloc, base.path + parts.path, query_string, "")), path


async def _http(session: Session, step: HttpStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    url, path = await _url(session, step, outputs)
    headers, shown = await session.headers(step, outputs)
    body: dict[str, Any] = {}
    if step.json_ is not None:
        body["json"] = await session.render_value(step.json_, outputs)
    elif step.text is not None:
        body["content"] = (await session.render(step.text, outputs)).encode()
        if not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
    label = f"{step.method} {path}"
    outcome = StepOutcome(step.name, label)
    token_problem = ""
    if session.config.auth == "id_token":
        headers, shown, token_problem = await _authorized(session, headers, shown)

    async def attempt(headers: dict[str, str]) -> tuple[int | None, bytes, str, float]:
        request = session.ctx.http.build_request(step.method, url, headers=headers, timeout=step.timeout_s, **body)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.timeout_s):
                status, data = await exchange(session.ctx.http, request, session.config.max_body_bytes)
        except Refused as exc:
            return None, b"", str(exc), time.perf_counter() - started
        except (TimeoutError, httpx.TimeoutException):
            return None, b"", f"timed out after {step.timeout_s:g} s", time.perf_counter() - started
        except httpx.HTTPError as exc:
            return None, b"", f"connection failed: {type(exc).__name__}: {exc}".rstrip(": "), time.perf_counter() - started
        return status, data, "", time.perf_counter() - started

    status, data, error, seconds = await attempt(headers)
    if status in (401, 403) and session.config.auth == "auto" and session.tokens_help:
        headers, shown, token_problem = await _authorized(session, headers, shown)
        if not token_problem:
            status, data, error, seconds = await attempt(headers)

    wanted = " or ".join(map(str, step.expect_status)) if step.expect_status else "2xx"
    status_ok = status is not None and (status in step.expect_status if step.expect_status else 200 <= status < 300)
    outcome.evidence.append(Evidence(f"{prefix}: status of {label}", status if status is not None else error, wanted, ok=status_ok))
    if shown:
        outcome.evidence.append(Evidence(f"{prefix}: request headers", ", ".join(shown)))
    if error:
        outcome.reasons.append(f"{label}: {error}")
        return outcome
    if not status_ok:
        # Answered 401/403 while postdeploy could not get the ID token it needed: not measured, not the revision's fault.
        outcome.setup_failed = bool(token_problem) and status in (401, 403)
        outcome.reasons.append(f"expected status {wanted} from {label}, got {status}"
                               + (f" ({token_problem})" if outcome.setup_failed else ""))
    doc = _doc(data)
    outcome.output = StepOutput(status, doc)
    if (step.expect_json or step.capture) and doc is MISSING:
        outcome.reasons.append(f"expected a JSON body from {label}, got {'nothing' if not data else 'something else'}")
    for exp in parse_all(step.expect_json):
        holds, found = exp.holds(doc)
        outcome.evidence.append(Evidence(f"{prefix}: JSON {exp.path} of {label}", describe(found), exp.text, ok=holds))
        if not holds and doc is not MISSING:
            outcome.reasons.append(f"expected {exp.text} in {label}, found {describe(found)}")
    if doc is not MISSING:
        _capture(step, prefix, doc, label, outcome)
    ms = seconds * 1000
    budget = step.latency_budget_ms
    outcome.evidence.append(Evidence(f"{prefix}: latency of {label}", f"{ms:.0f} ms", f"≤ {budget:.0f} ms" if budget else None,
                                     ok=ms <= budget if budget else None))
    if budget and ms > budget:
        outcome.reasons.append(f"expected {label} within {budget:.0f} ms, took {ms:.0f} ms")
    return outcome


# ---------------------------------------------------------------- WebSocket


class _SameOriginConnect(connect):
    """``connect`` that follows redirects on the same origin only."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        old = self.ws_uri
        result = super().process_redirect(exc)
        if isinstance(result, str):
            new = parse_uri(result)
            if (new.secure, new.host, new.port) != (old.secure, old.host, old.port):
                return Refused(f"redirect to another host refused: {result}")
        return result


def _close_text(code: int, reason: str) -> str:
    return f"{code} ({reason or CLOSE_CODE_EXPLANATIONS.get(code, 'unknown')})"


@dataclass
class _Events:
    """Follows the messages of one WebSocket step against its expectations."""

    step: WebSocketStep
    expectations: list[Expectation]
    seen: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    final: Any = MISSING
    last: Any = MISSING
    problem: str = ""
    done: bool = False

    @property
    def missing(self) -> list[str]:
        return self.step.expect_events[len(self.seen):]

    def after(self) -> str:
        if not self.step.expect_events:
            return f"after {len(self.types)} messages"
        return f"after {', '.join(self.seen)}" if self.seen else f"before {self.step.expect_events[0]}"

    def feed(self, raw: str | bytes) -> None:
        doc = _doc(raw)
        kind = lookup(doc, self.step.event_field) if doc is not MISSING else MISSING
        self.types.append(kind if isinstance(kind, str) else "(not JSON)" if doc is MISSING else f"(no {self.step.event_field})")
        self.last = doc
        expected = self.step.expect_events
        if isinstance(kind, str) and kind in self.step.fail_on_events and kind not in expected:
            self.problem = f"got {kind} event {self.after()}: {describe(doc)}"
        elif expected:
            want = expected[len(self.seen)]
            if kind == want:
                self.seen.append(want)
                if not self.missing:
                    self._judge_final(doc, f"the {want} message")
            elif isinstance(kind, str) and kind in expected[len(self.seen) + 1:]:
                self.problem = f"expected {want} after {self.seen[-1]}, got {kind}" if self.seen else f"expected {want} first, got {kind}"
        elif all(exp.holds(doc)[0] for exp in self.expectations):
            self.final, self.done = doc, True

    def _judge_final(self, doc: Any, which: str) -> None:
        self.final, self.done = doc, True
        for exp in self.expectations:
            holds, found = exp.holds(doc)
            if not holds:
                self.problem = f"expected {exp.text} in {which}, found {describe(found)}"
                return

    def timed_out(self, timeout_s: float) -> str:
        if self.step.expect_events:
            if self.seen:
                return f"saw {', '.join(self.seen)} within {timeout_s:g} s; never {', '.join(self.missing)}"
            return f"saw no expected event within {timeout_s:g} s ({len(self.types)} messages); never {', '.join(self.missing)}"
        texts = ", ".join(e.text for e in self.expectations)
        return f"no message matched {texts} within {timeout_s:g} s ({len(self.types)} messages; last: {describe(self.last)})"

    def closed(self, exc: ConnectionClosed) -> str:
        rest = f"; never {', '.join(self.missing)}" if self.step.expect_events else ""
        if exc.rcvd is not None:
            return f"server closed the connection with {_close_text(exc.rcvd.code, exc.rcvd.reason)} {self.after()}{rest}"
        if exc.sent is not None:
            return f"connection failed with {_close_text(exc.sent.code, exc.sent.reason)} {self.after()}{rest}"
        return f"connection dropped without a close frame (1006) {self.after()}{rest}"


async def _open(session: Session, step: WebSocketStep, url: str, headers: dict[str, str], timeout_s: float) -> ClientConnection:
    return await _SameOriginConnect(
        url, additional_headers=headers, subprotocols=[Subprotocol(step.subprotocol)] if step.subprotocol else None,
        open_timeout=timeout_s, close_timeout=CLOSE_TIMEOUT_S, max_size=session.config.max_body_bytes,
        ping_interval=None, user_agent_header="postdeploy-smoke",
    )


def _upgrade_problem(exc: BaseException, url: str, label: str, timeout_s: float) -> tuple[str, str]:
    """(measured, reason) for a connection that did not open."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return f"HTTP {status}", f"expected 101 Switching Protocols from {label}, got HTTP {status}"
    if isinstance(exc, TimeoutError):
        return "no handshake", f"no WebSocket handshake from {label} within {timeout_s:g} s"
    if isinstance(exc, Refused | SecurityError):
        return "refused", f"{label}: {exc}"
    if isinstance(exc, InvalidHandshake | InvalidURI):
        return "handshake failed", f"WebSocket handshake with {label} failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", f"could not connect to {url}: connection refused"
    return "connection failed", f"could not connect to {url}: {type(exc).__name__}: {exc}"


async def _converse(ws: ClientConnection, step: WebSocketStep, messages: list[str], deadline: float) -> tuple[_Events, bool]:
    """Send, read until the expectations are settled or time runs out, then close; True when the server closed first."""
    events = _Events(step, parse_all(step.expect))
    closed_early = False
    try:
        for message in messages:
            await ws.send(message)
        while (step.expect_events or step.expect) and not events.done and not events.problem:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                events.feed(await ws.recv())
    except TimeoutError:
        events.problem = events.timed_out(step.timeout_s)
    except ConnectionClosed as exc:
        events.problem, closed_early = events.closed(exc), True
    finally:
        # Also when the server started the closing handshake: close() waits for it to finish.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await ws.close()
        except TimeoutError:
            ws.transport.abort()
    return events, closed_early


async def _websocket(session: Session, step: WebSocketStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    url, path = await _url(session, step, outputs, websocket=True)
    headers, shown = await session.headers(step, outputs)
    messages = [await session.render(m.text, outputs) if m.text is not None else json.dumps(await session.render_value(m.json_, outputs))
                for m in step.send]
    label = f"WebSocket {path}"
    outcome = StepOutcome(step.name, label)
    deadline = time.monotonic() + step.timeout_s
    token_problem = ""
    if session.config.auth == "id_token":
        headers, shown, token_problem = await _authorized(session, headers, shown)
    try:
        try:
            ws = await _open(session, step, url, headers, step.timeout_s)
        except InvalidStatus as exc:
            if exc.response.status_code not in (401, 403) or session.config.auth != "auto" or not session.tokens_help:
                raise
            headers, shown, token_problem = await _authorized(session, headers, shown)
            if token_problem:
                raise
            ws = await _open(session, step, url, headers, max(deadline - time.monotonic(), 0.001))
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, Refused) as exc:
        measured, reason = _upgrade_problem(exc, url, label, step.timeout_s)
        if token_problem and isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
            reason += f" ({token_problem})"
            outcome.setup_failed = True  # postdeploy could not get the ID token it needed: not measured
        outcome.evidence.append(Evidence(f"{prefix}: upgrade of {label}", measured, "101 Switching Protocols", ok=False))
        if shown:
            outcome.evidence.append(Evidence(f"{prefix}: request headers", ", ".join(shown)))
        outcome.reasons.append(reason)
        return outcome

    outcome.evidence.append(Evidence(f"{prefix}: upgrade of {label}", "101 Switching Protocols", "101 Switching Protocols", ok=True))
    if shown:
        outcome.evidence.append(Evidence(f"{prefix}: request headers", ", ".join(shown)))
    if step.subprotocol:
        chosen_ok = ws.subprotocol == step.subprotocol
        outcome.evidence.append(Evidence(f"{prefix}: subprotocol", ws.subprotocol or "none", step.subprotocol, ok=chosen_ok))
        if not chosen_ok:
            outcome.reasons.append(f"expected subprotocol {step.subprotocol} from {label}, server chose {ws.subprotocol or 'none'}")
    events, closed_early = await _converse(ws, step, messages, deadline)
    if step.expect_events or step.expect:
        wanted = (" → ".join(step.expect_events) + " in order" if step.expect_events else "a message matching the expectations")
        outcome.evidence.append(Evidence(f"{prefix}: messages ({step.event_field}) from {label}", ", ".join(events.types) or "none",
                                         f"{wanted} within {step.timeout_s:g} s", ok=events.done and not events.problem))
    for exp in events.expectations:
        holds, found = exp.holds(events.final)
        outcome.evidence.append(Evidence(f"{prefix}: message {exp.path}", describe(found), exp.text, ok=holds))
    if events.problem:
        outcome.reasons.insert(0, f"{label}: {events.problem}")
    code, reason = ws.close_code or 1006, ws.close_reason or ""
    by = "the server" if closed_early or ws.protocol.close_rcvd_then_sent else "postdeploy"
    clean = code in OK_CLOSE_CODES and not closed_early
    outcome.evidence.append(Evidence(f"{prefix}: close of {label}", f"{_close_text(code, reason)}, closed by {by}",
                                     "clean close (1000 or 1001) after the exchange", ok=clean))
    if not clean and not closed_early:
        outcome.reasons.append(f"expected a clean close of {label}, got {_close_text(code, reason)}")
    outcome.output = StepOutput(101, events.final)
    if events.final is not MISSING and not outcome.reasons:
        _capture(step, prefix, events.final, f"the last message of {label}", outcome)
    return outcome


# ---------------------------------------------------------------- paths and verdict


async def _step(session: Session, step: HttpStep | WebSocketStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    try:
        if isinstance(step, HttpStep):
            return await _http(session, step, prefix, outputs)
        return await _websocket(session, step, prefix, outputs)
    except _StepFailed as exc:
        return StepOutcome(step.name, step.label(), [f"{step.label()}: {exc}"],
                           [Evidence(f"{prefix}: {step.label()}", "not sent", "every reference resolves", ok=False)],
                           setup_failed=isinstance(exc, _SetupFailed))


def read_only(path: PathConfig) -> bool:
    """Whether running the path changes nothing: HTTP GET/HEAD/OPTIONS steps, WebSocket steps that send nothing."""
    return all(step.method in SAFE_METHODS if isinstance(step, HttpStep) else not step.send for step in path.steps)


async def run_path(session: Session, path: PathConfig, budget_end: float) -> PathOutcome:
    """The path's steps in order until one fails, each bounded by the path's own timeout and ``budget_end``."""
    own_end = time.monotonic() + path.timeout_s if path.timeout_s else budget_end
    end = min(own_end, budget_end)
    why = f"path {path.name} did not finish within {path.timeout_s:g} s" if own_end <= budget_end and path.timeout_s \
        else f"the check's time budget ran out (timeout_s {session.config.timeout_s:g} s or the run's deadline)"
    outputs: dict[str, StepOutput] = {}
    done: list[StepOutcome] = []
    for step in path.steps:
        prefix = f"{path.name}/{step.name}"
        try:
            async with asyncio.timeout(max(end - time.monotonic(), 0)):
                outcome = await _step(session, step, prefix, outputs)
        except TimeoutError:
            outcome = StepOutcome(step.name, step.label(), [f"{step.label()}: {why}"],
                                  [Evidence(f"{prefix}: {step.label()}", "unfinished", "finishes in time", ok=False)])
        done.append(outcome)
        if not outcome.ok:
            break
        outputs[step.name] = outcome.output
    return PathOutcome(path, done)


