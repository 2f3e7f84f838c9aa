"""Expectations on JSON documents, written as one line each in the config.

Grammar (``PATH`` is dotted: object keys, list indices such as ``items.0`` or ``items.-1``, and
``length`` for the size of a list, string or object that has no ``length`` key of its own)::

    PATH == VALUE     also !=, <, <=, >, >=; VALUE is a JSON literal or a bare word
    PATH exists
    PATH matches REGEX   REGEX is a JSON string or the rest of the line; searched, so anchor with ^ $
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

_EXPR = re.compile(
    r"^\s*(?P<path>[\w.\-]+)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.+?)|\s+(?P<word>exists|matches)(?:\s+(?P<pattern>.+?))?)\s*$"
)
_BARE_WORD = re.compile(r"^[A-Za-z_][\w.\-]*$")
GRAMMAR = "'<path> <op> <value>', '<path> exists' or '<path> matches <regex>'"
MAX_SHOWN_CHARS = 200


class _Missing:
    """The value of a path that leads nowhere."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    current = doc
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and re.fullmatch(r"-?\d+", part) and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        elif part == "length" and isinstance(current, list | str | dict):
            current = len(current)
        else:
            return MISSING
    return current


def describe(value: Any) -> str:
    """A found value for a message: compact JSON, capped, or 'no such field'."""
    if value is MISSING:
        return "no such field"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


@dataclass(frozen=True)
class Expectation:
    """One parsed line: a dotted path, an operator and, for comparisons, a JSON literal."""

    text: str
    path: str
    op: str
    value: Any = None
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Expectation:
        """Parse one line; ValueError says what was expected and what was found."""
        m = _EXPR.match(text)
        if not m:
            raise ValueError(f"expected {GRAMMAR}, found {text!r}")
        path = m.group("path")
        if m.group("word") == "exists":
            if m.group("pattern"):
                raise ValueError(f"expected nothing after 'exists', found {m.group('pattern')!r} in {text!r}")
            return cls(text, path, "exists")
        if m.group("word") == "matches":
            return cls(text, path, "matches", pattern=_regex(m.group("pattern"), text))
        raw = m.group("value")
        try:
            value = json.loads(raw)
        except ValueError:
            if not _BARE_WORD.match(raw):
                raise ValueError(f"expected a JSON literal or a bare word after {m.group('op')!r}, found {raw!r} in {text!r}") from None
            value = raw
        return cls(text, path, m.group("op"), value)

    def holds(self, doc: Any) -> tuple[bool, Any]:
        """Whether the document satisfies the line, and the value found (MISSING when absent)."""
        found = lookup(doc, self.path)
        if self.op == "exists":
            return found is not MISSING, found
        if found is MISSING:
            return False, found
        if self.op == "matches":
            assert self.pattern is not None
            return isinstance(found, str) and self.pattern.search(found) is not None, found
        try:
            ok = {
                "==": lambda: found == self.value, "!=": lambda: found != self.value,
                "<": lambda: found < self.value, "<=": lambda: found <= self.value,
                ">": lambda: found > self.value, ">=": lambda: found >= self.value,
            }[self.op]()
        except TypeError:
            ok = False
        return bool(ok), found


def _regex(raw: str | None, text: str) -> re.Pattern[str]:
    if not raw:
        raise ValueError(f"expected a regex after 'matches', found nothing in {text!r}")
    source = raw
    if raw.startswith('"'):
        try:
            source = json.loads(raw)
        except ValueError:
            raise ValueError(f"expected a JSON string after 'matches', found {raw!r} in {text!r}") from None
        if not isinstance(source, str):
            raise ValueError(f"expected a JSON string after 'matches', found {raw!r} in {text!r}")
    try:
        return re.compile(source)
    except re.error as exc:
        raise ValueError(f"expected a valid regex after 'matches', found {source!r} ({exc}) in {text!r}") from None


def parse_all(texts: Iterable[str]) -> list[Expectation]:
    """Parse every line; one ValueError lists every bad line by index."""
    parsed: list[Expectation] = []
    problems: list[str] = []
    for i, text in enumerate(texts):
        try:
            parsed.append(Expectation.parse(text))
        except ValueError as exc:
            problems.append(f"[{i}] {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return parsed
