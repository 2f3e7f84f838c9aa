"""Lenient decoding of Cloud Build notifications in every shape they reach us."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from core.errors import BadMessage
from core.model import Build, Step, parse_time

# Cloud Build's Build.Status enum: notifications may carry the name or the number.
STATUS_BY_NUMBER = {
    0: "STATUS_UNKNOWN",
    10: "PENDING",
    1: "QUEUED",
    2: "WORKING",
    3: "SUCCESS",
    4: "FAILURE",
    5: "INTERNAL_ERROR",
    6: "TIMEOUT",
    7: "CANCELLED",
    9: "EXPIRED",
}
TERMINAL = frozenset({"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"})
# A Build nests about five levels deep and its envelopes three more; far deeper input is hostile, and past Python's
# recursion limit json.loads (and anything that walks the result) raises RecursionError instead of answering.
MAX_JSON_DEPTH = 64
# Cloud Build ids are UUIDs; the id names the report's folder, so it must be one path segment, never "." or "..".
BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
BUILD_ID_EXPECTED = "a Build id of 1 to 128 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(key: str) -> str:
    """``projectId`` → ``project_id``."""
    return _CAMEL.sub("_", key).lower()


def field(obj: Any, camel: str, default: Any = None) -> Any:
    """Read a field that may be spelt camelCase or snake_case (camel wins when both are set)."""
    if not isinstance(obj, dict):
        return default
    for key in (camel, snake(camel)):
        value = obj.get(key)
        if value not in (None, ""):
            return value
    return default


def status_name(value: Any) -> str:
    """Normalise a Build.Status given as a name or an integer."""
    if isinstance(value, bool):
        return "STATUS_UNKNOWN"
    if isinstance(value, int):
        return STATUS_BY_NUMBER.get(value, "STATUS_UNKNOWN")
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return STATUS_BY_NUMBER.get(int(text), "STATUS_UNKNOWN")
        return text or "STATUS_UNKNOWN"
    return "STATUS_UNKNOWN"


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, (str, int, float)))


def _steps(value: Any) -> tuple[Step, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        Step(
            name=str(field(s, "name", "")),
            entrypoint=str(field(s, "entrypoint", "")),
            args=_strings(field(s, "args", [])),
            id=str(field(s, "id", "")),
        )
        for s in value
        if isinstance(s, dict)
    )


def build_from_dict(data: dict[str, Any], message_id: str = "", status: Any = None) -> Build:
    """Make a Build from its JSON (camelCase or snake_case); unknown fields are ignored."""
    build_id = field(data, "id")
    if not isinstance(build_id, str) or not build_id:
        raise BadMessage(f"expected a Build with a string 'id', found keys {sorted(data)[:12]}", message_id)
    if not BUILD_ID.fullmatch(build_id):
        raise BadMessage(f"expected {BUILD_ID_EXPECTED}, found {build_id[:64]!r}", message_id)
    results = field(data, "results", {}) or {}
    digests: dict[str, str] = {}
    images = field(results, "images", [])
    for image in images if isinstance(images, list) else []:
        name, digest = field(image, "name"), field(image, "digest")
        if isinstance(name, str) and isinstance(digest, str):
            digests[name] = digest
    subs = field(data, "substitutions", {})
    artifacts = field(data, "artifacts", {}) or {}
    return Build(
        id=build_id,
        status=status_name(field(data, "status", status)),
        project_id=str(field(data, "projectId", "")),
        create_time=parse_time(field(data, "createTime")),
        start_time=parse_time(field(data, "startTime")),
        finish_time=parse_time(field(data, "finishTime")),
        steps=_steps(field(data, "steps", [])),
        images=_strings(field(data, "images", [])),
        image_digests=digests,
        trigger_id=str(field(data, "buildTriggerId", "")),
        substitutions={str(k): str(v) for k, v in subs.items()} if isinstance(subs, dict) else {},
        tags=_strings(field(data, "tags", [])),
        log_url=str(field(data, "logUrl", "")),
        artifacts=artifacts if isinstance(artifacts, dict) else {},
        message_id=message_id,
    )


def _message_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Find the Pub/Sub message inside a CloudEvent data, a push body or a bare message."""
    if isinstance(payload.get("message"), dict):
        return payload["message"]
    if "data" in payload and any(k in payload for k in ("attributes", "messageId", "message_id")):
        return payload
    return None


def decode(payload: Any, event_id: str = "") -> Build:
    """Decode a Cloud Build notification: CloudEvent data, push body, message, or a Build itself.

    Raises BadMessage (permanent) for anything that is not a Build, JSON nested deeper than MAX_JSON_DEPTH included.
    """
    text = isinstance(payload, (bytes, str))
    payload = _loads(payload, event_id, "a JSON event") if text else _checked(payload, event_id)
    if not isinstance(payload, dict):
        raise BadMessage(f"expected a JSON object, found {type(payload).__name__}", event_id)
    if "specversion" in payload and ("data" in payload or "data_base64" in payload):
        event_id = event_id or str(payload.get("id", ""))
        data = payload.get("data")
        if isinstance(data, (bytes, str)):
            data = _loads(data, event_id, "JSON CloudEvent data")
        elif data is None:
            data = _b64json(payload["data_base64"], event_id)
        if isinstance(data, dict) and "specversion" in data:
            raise BadMessage("expected one CloudEvent around the Pub/Sub message, found CloudEvents nested in each other",
                             event_id)
        return decode(data, event_id)
    message = _message_of(payload)
    if message is None:
        if "id" in payload and "status" in payload:
            return build_from_dict(payload, event_id)
        raise BadMessage(
            f"expected a Pub/Sub message with 'data', found keys {sorted(payload)[:12]}", event_id
        )
    message_id = str(field(message, "messageId", "") or event_id)
    attributes = field(message, "attributes", {}) or {}
    build = _b64json(field(message, "data", ""), message_id)
    if not isinstance(build, dict):
        raise BadMessage(f"expected the message data to be a JSON object, found {type(build).__name__}", message_id)
    return build_from_dict(build, message_id, status=attributes.get("status") if isinstance(attributes, dict) else None)


def _shape(value: Any, limit: int) -> tuple[bool, bool]:
    """Whether lists and objects nest more than ``limit`` deep in ``value``, and whether a string in it (a key or a
    value) holds a lone surrogate; walked without recursion, stopping at the first level too deep."""
    surrogates = False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            surrogates = surrogates or _LONE_SURROGATE.search(node) is not None
            continue
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True, surrogates
        stack.extend((child, depth + 1) for child in children)
    return False, surrogates


def _scrubbed(value: Any) -> Any:
    """``value`` with lone surrogates (valid JSON escapes, not Unicode: no UTF-8 report could hold them) replaced."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    return value


def _checked(value: Any, message_id: str) -> Any:
    """Parsed JSON that is safe to walk: at most MAX_JSON_DEPTH deep (else BadMessage), lone surrogates replaced."""
    too_deep, surrogates = _shape(value, MAX_JSON_DEPTH)
    if too_deep:
        raise BadMessage(f"expected JSON nested at most {MAX_JSON_DEPTH} levels deep, found it nested "
                         f"{MAX_JSON_DEPTH + 1} levels deep or more", message_id)
    return _scrubbed(value) if surrogates else value


def _loads(text: str | bytes, message_id: str, expected: str, found: str = "") -> Any:
    """``text`` parsed as JSON and checked, or BadMessage: ``expected``, and ``found`` (else the parser's complaint)."""
    try:
        return _checked(json.loads(text), message_id)
    except RecursionError as exc:
        raise BadMessage(f"expected JSON nested at most {MAX_JSON_DEPTH} levels deep, found JSON nested deeper than "
                         "Python's recursion limit", message_id) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"expected {expected}, found {found or f'undecodable text ({exc})'}", message_id) from exc


def _b64json(data: Any, message_id: str) -> Any:
    if not isinstance(data, str) or not data:
        raise BadMessage("expected base64 message data, found none", message_id)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadMessage(f"expected base64 message data, found invalid base64 ({exc})", message_id) from exc
    return _loads(raw, message_id, "JSON in the message data", found=repr(raw[:40]))
