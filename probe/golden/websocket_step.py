"""A WebSocket step: upgrade, send, read the events in order against expectations, close cleanly."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI, SecurityError
from websockets.frames import CLOSE_CODE_EXPLANATIONS
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from core.expect import MISSING, Expectation, describe, lookup, parse_all
from core.model import Evidence
from probe.golden.paths import WebSocketStep
from probe.golden.session import Session, StepOutcome, StepOutput, authorized, capture, json_doc, step_url
from probe.web import Refused

CLOSE_TIMEOUT_S = 2.0
OK_CLOSE_CODES = (1000, 1001)


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
        doc = json_doc(raw)
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


async def websocket_step(session: Session, step: WebSocketStep, prefix: str, outputs: dict[str, StepOutput]) -> StepOutcome:
    url, path = await step_url(session, step, outputs, websocket=True)
    headers, shown = await session.headers(step, outputs)
    messages = [await session.render(m.text, outputs) if m.text is not None else json.dumps(await session.render_value(m.json_, outputs))
                for m in step.send]
    label = f"WebSocket {path}"
    outcome = StepOutcome(step.name, label)
    deadline = time.monotonic() + step.timeout_s
    token_problem = ""
    if session.config.auth == "id_token":
        headers, shown, token_problem = await authorized(session, headers, shown)
    try:
        try:
            ws = await _open(session, step, url, headers, step.timeout_s)
        except InvalidStatus as exc:
            if exc.response.status_code not in (401, 403) or session.config.auth != "auto" or not session.tokens_help:
                raise
            headers, shown, token_problem = await authorized(session, headers, shown)
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
        capture(step, prefix, events.final, f"the last message of {label}", outcome)
    return outcome
