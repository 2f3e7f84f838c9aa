"""Golden paths as configured: steps, the ``${…}`` references between them, and what each step must see.

A path is a list of steps run in order; a step may use what an earlier one returned
(``${steps.create.json.id}``). Header values that are credentials come from references (``${env:NAME}``,
``${secret:projects/P/secrets/S/versions/V}``) and are never written inline. Everything here is validated
when the config loads; ``probe.golden.run`` runs a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from core.schema import FUNCTION_TIMEOUT_S, Expectations, Strict, UrlPath

DEFAULT_STEP_TIMEOUT_S = 10.0
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_EVENT_FIELD = "type"
DEFAULT_FAIL_EVENTS = ("error",)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
STEP_KINDS = ("http", "websocket")
REFERENCE_FORMS = "${env:NAME}, ${secret:projects/P/secrets/S/versions/V} or ${steps.STEP.status|json[.PATH]|CAPTURE}"

REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_NAME = re.compile(r"^[\w\-]+$")
_JSON_PATH = re.compile(r"^[\w.\-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_]\w*$")
_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
_STEP_REF = re.compile(r"^steps\.(?P<step>[\w\-]+)\.(?P<attr>[\w\-]+)(?:\.(?P<path>[\w.\-]+))?$")
# Header names whose value is a credential, and values that are credentials whatever the header is called.
SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|password|passwd|api[-_]?key|session|credential", re.I)
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
    return [Ref.parse(m.group(1)) for m in REFERENCE.finditer(text)]


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


class BaseStep(Strict):
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
            literal = REFERENCE.sub("", text)
            if (SENSITIVE_HEADER.search(header) and not refs) or _CREDENTIAL_VALUE.search(literal):
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


class HttpStep(BaseStep):
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


class WebSocketStep(BaseStep):
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


def read_only(path: PathConfig) -> bool:
    """Whether running the path changes nothing: HTTP GET/HEAD/OPTIONS steps, WebSocket steps that send nothing."""
    return all(step.method in SAFE_METHODS if isinstance(step, HttpStep) else not step.send for step in path.steps)
