"""One run of golden paths: the session the paths share (ID token, secrets, scrubbing) and what each step returned."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from core.expect import MISSING, lookup
from core.model import CheckContext, CheckResult, Evidence, NotMeasured, Target
from core.redact import MARKER, redact, register
from probe.golden.paths import REFERENCE, SENSITIVE_HEADER, BaseStep, PathConfig, Ref, refs_in
from probe.web import audience, fetch_token, token_may_help

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


class StepFailed(Exception):
    """A step that could not be sent: an unresolvable reference or secret."""


class SetupFailed(StepFailed):
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
    """State shared by the paths of one run: ID token, resolved secrets, values to scrub from the result.

    Every secret it resolves is also registered with the shared redactor, so reports, Slack and log lines hide it
    wherever the service echoes it (its logs included); the session scrubs its own results with the same redactor,
    its ID token included.
    """

    def __init__(self, target: Target, config: SessionSettings, ctx: CheckContext) -> None:
        self.config = config
        self.ctx = ctx
        self.base = target.url.rstrip("/")
        self.audience = audience(target)
        self.tokens_help = token_may_help(target.url, target)  # `auth: auto` asks for an ID token only where one can work
        self.scrubbed: list[str] = []  # the secrets this run holds
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
                    self.scrubbed.append(self._token[0])  # a JWT: hidden everywhere by its shape; one per run, not registered
            return self._token

    async def secret(self, ref: Ref) -> str:
        """The value behind ``${env:…}`` or ``${secret:…}``; StepFailed says why there is none."""
        key = f"{ref.kind}:{ref.name}"
        async with self._secret_lock:
            return self._secrets[key] if key in self._secrets else await self._resolve(ref, key)

    async def _resolve(self, ref: Ref, key: str) -> str:
        if self.ctx.secrets is not None:
            try:
                value = await asyncio.to_thread(self.ctx.secrets, key)
            except Exception as exc:  # a missing variable or secret fails the step, with the reason
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise SetupFailed(f"could not resolve {ref.text}: {message}") from exc
        elif ref.kind == "env":
            if ref.name not in os.environ:
                raise SetupFailed(f"could not resolve {ref.text}: expected environment variable {ref.name} to be set, found nothing")
            value = os.environ[ref.name]
        else:
            raise SetupFailed(f"could not resolve {ref.text}: no secret source")
        value = value.strip()  # secrets stored with `echo` end in a newline
        if not value.isascii() or not value.isprintable():
            raise SetupFailed(f"{ref.text} resolves to a value that cannot be sent in a header "
                               "(control or non-ASCII characters)")
        self._remember(value)
        self._secrets[key] = value
        return value

    def _remember(self, value: str) -> None:
        register(value)
        self.scrubbed.append(value)

    def scrub(self, value: Any) -> Any:
        """The value with every secret replaced (belt and braces: a server may echo one)."""
        return redact(value, also=self.scrubbed)

    def scrubbed_result(self, result: CheckResult) -> CheckResult:
        """The result with every text scrubbed."""
        result.summary, result.reasons, result.next_steps, evidence, not_measured = self.scrub((
            result.summary, result.reasons, result.next_steps,
            [(e.what, e.measured, e.threshold, e.previous) for e in result.evidence],
            [(n.what, n.why, n.fix) for n in result.not_measured]))
        result.evidence = [Evidence(what, measured, threshold, previous, e.ok)
                           for (what, measured, threshold, previous), e in zip(evidence, result.evidence, strict=True)]
        result.not_measured = [NotMeasured(what, why, fix) for what, why, fix in not_measured]
        result.data = self.scrub(result.data)
        return result

    async def render(self, text: str, outputs: dict[str, StepOutput], in_path: bool = False) -> str:
        """A template with every reference replaced by its value (percent-encoded inside a URL path)."""
        parts: list[str] = []
        last = 0
        for m in REFERENCE.finditer(text):
            ref = Ref.parse(m.group(1))
            value = await self.secret(ref) if ref.is_secret else step_value(ref, outputs)
            value = value if isinstance(value, str) else json.dumps(value)
            parts += [text[last:m.start()], quote(value, safe="") if in_path else value]
            last = m.end()
        return "".join(parts) + text[last:]

    async def render_value(self, value: Any, outputs: dict[str, StepOutput]) -> Any:
        """A JSON body with references replaced; a string that is one step reference keeps the value's type."""
        if isinstance(value, str):
            m = REFERENCE.fullmatch(value)
            if m and not Ref.parse(m.group(1)).is_secret:
                return step_value(Ref.parse(m.group(1)), outputs)
            return await self.render(value, outputs)
        if isinstance(value, list):
            return [await self.render_value(v, outputs) for v in value]
        if isinstance(value, dict):
            return {k: await self.render_value(v, outputs) for k, v in value.items()}
        return value

    async def headers(self, step: BaseStep, outputs: dict[str, StepOutput]) -> tuple[dict[str, str], list[str]]:
        """Rendered headers and how to show them: names, and values only when they are neither secret nor referenced."""
        headers, shown = {}, []
        for name, template in step.headers.items():
            try:
                headers[name] = await self.render(template, outputs)
            except StepFailed as exc:
                raise type(exc)(f"header {name}: {exc}") from exc  # keeps a setup failure one
            refs = refs_in(template)
            if refs or SENSITIVE_HEADER.search(name):
                shown.append(f"{name}: {MARKER}" + (f" (from {', '.join(r.text[2:-1] for r in refs)})" if refs else ""))
            else:
                shown.append(f"{name}: {template}")
        return headers, shown


def step_value(ref: Ref, outputs: dict[str, StepOutput]) -> Any:
    out = outputs[ref.name]
    if ref.attr == "status":
        return out.status
    if ref.attr == "json":
        value = lookup(out.doc, ref.path) if ref.path and out.doc is not MISSING else out.doc
        if value is MISSING:
            raise StepFailed(f"{ref.text} has no value: step {ref.name} "
                              + (f"returned no field {ref.path}" if out.doc is not MISSING else "returned no JSON body"))
        return value
    return out.captures[ref.attr]


async def authorized(session: Session, headers: dict[str, str], shown: list[str]) -> tuple[dict[str, str], list[str], str]:
    """The headers with the session's ID token added, or unchanged and why there is none."""
    token, problem = await session.token()
    if not token:
        return headers, shown, problem
    # Cloud Run reads the ID token from X-Serverless-Authorization when the app needs Authorization for itself.
    name = "X-Serverless-Authorization" if any(h.lower() == "authorization" for h in headers) else "Authorization"
    return {**headers, name: f"Bearer {token}"}, [*shown, f"{name}: {MARKER} (ID token)"], ""


def json_doc(data: bytes | str) -> Any:
    try:
        return json.loads(data) if data else MISSING
    except ValueError:
        return MISSING


def capture(step: BaseStep, prefix: str, doc: Any, where: str, outcome: StepOutcome) -> None:
    for name, path in step.capture.items():
        value = lookup(doc, path)
        outcome.evidence.append(Evidence(f"{prefix}: capture {name}", "captured" if value is not MISSING else "no such field",
                                         f"field {path}", ok=value is not MISSING))
        if value is MISSING:
            outcome.reasons.append(f"expected field {path} in {where} to capture as {name}, found no such field")
        else:
            outcome.output.captures[name] = value


async def step_url(session: Session, step: BaseStep, outputs: dict[str, StepOutput], websocket: bool = False) -> tuple[str, str]:
    """(URL, rendered path): the target's URL, the step's path, its own query string and ``query``."""
    path = await session.render(step.path, outputs, in_path=True)
    query = [(k, await session.render(v, outputs) if isinstance(v, str) else json.dumps(v)) for k, v in step.query.items()]
    base, parts = urlsplit(session.base), urlsplit(path)
    scheme = ("wss" if base.scheme == "https" else "ws") if websocket else base.scheme
    query_string = urlencode(parse_qsl(parts.query, keep_blank_values=True) + query) if query else parts.query
    return urlunsplit((scheme, base.netloc, base.path + parts.path, query_string, "")), path
