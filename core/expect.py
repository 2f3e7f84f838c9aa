"""Expectations on JSON documents, written as one line each in the config.

Grammar (``PATH`` is dotted: object keys, list indices such as ``items.0`` or ``items.-1``, and
``length`` for the size of a list, string or object that has no ``length`` key of its own)::

    PATH == VALUE        also !=, <, <=, >, >=
    PATH exists
    PATH not exists
    PATH matches REGEX   REGEX is a JSON string or the rest of the line

``VALUE`` is a JSON literal: a "quoted string", a number, ``true``, ``false``, ``null``, an array or an
object. A bare word (``status == healthy``) is a config error that says to quote it; so are ``NaN``
and ``Infinity``, which Python's json reads but JSON does not have.

Values are compared as JSON, never as Python. The JSON types are null, boolean, number, string, array
and object: ``true`` is a boolean, never the number 1, while ``1`` and ``1.0`` are one number.

- ``exists``: the path leads to a value, ``null`` included.
- ``not exists``: the path leads nowhere.
- ``==``: the value found has the literal's type and value. Arrays and objects are compared deeply
  with the same rule at every level (``[1] == [true]`` does not hold). ``null`` equals only ``null``.
- ``!=``: a value is found and ``==`` does not hold for it, so a value of another type differs:
  ``status != "down"`` holds on ``5``, and ``x != null`` holds on anything present but ``null``.
- ``<``, ``<=``, ``>``, ``>=``: number against number, or string against string (by code point).
  Any other pairing does not hold: mixed types, ``null`` on either side, booleans, arrays, objects.
- ``matches``: the value is a string and the regex is found *anywhere* in it (``re.search``);
  anchor with ``^`` and ``$`` to match the whole string. A number, ``null`` or array never matches.

A path that leads nowhere holds for ``not exists`` only; every other line fails on it, ``!=``
included, since a missing field is evidence of nothing. :meth:`Expectation.evaluate` says why a line
does not hold: ``no such field``, ``found string "5", cannot compare with number 3``,
``found null, not a number``.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

_EXPR = re.compile(
    r"^\s*(?P<path>[\w.\-]+)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.+?)"
    r"|\s+(?P<word>exists|not\s+exists|matches)(?:\s+(?P<pattern>.+?))?)\s*$"
)
_BARE_WORD = re.compile(r"^[A-Za-z_][\w.\-]*$")
GRAMMAR = "'<path> <op> <value>', '<path> exists', '<path> not exists' or '<path> matches <regex>'"
MAX_SHOWN_CHARS = 200

_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ORDERED_KINDS: Final = ("number", "string")
# bool before int: in Python True is an int, in JSON it is not a number.
_KINDS: Final = ((type(None), "null"), (bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
                 (list, "array"), (dict, "object"))
_A_KIND: Final = {"null": "null", "array": "an array", "object": "an object"}


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
class Verdict:
    """Whether a line holds, the value found (MISSING when absent) and, when it does not hold, why."""

    holds: bool
    found: Any
    why: str = ""


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
        if m.group("word") == "matches":
            return cls(text, path, "matches", pattern=_regex(m.group("pattern"), text))
        if m.group("word"):
            word = "not exists" if m.group("word").startswith("not") else "exists"
            if m.group("pattern"):
                raise ValueError(f"expected nothing after {word!r}, found {m.group('pattern')!r} in {text!r}")
            return cls(text, path, word)
        return cls(text, path, m.group("op"), _literal(m.group("value"), m.group("op"), text))

    def evaluate(self, doc: Any) -> Verdict:
        """Whether the document satisfies the line, the value found, and why not when it does not."""
        found = lookup(doc, self.path)
        why = self._why_not(found)
        return Verdict(not why, found, why)

    def holds(self, doc: Any) -> tuple[bool, Any]:
        """Whether the document satisfies the line, and the value found (MISSING when absent)."""
        verdict = self.evaluate(doc)
        return verdict.holds, verdict.found

    def _why_not(self, found: Any) -> str:
        """Why the line does not hold for the value found; empty when it holds."""
        if found is MISSING:
            return "" if self.op == "not exists" else "no such field"
        if self.op == "exists":
            return ""
        if self.op == "not exists":
            return f"found {describe(found)}"
        if self.op == "matches":
            assert self.pattern is not None
            if not isinstance(found, str):
                return f"found {_typed(found)}, not a string"
            return "" if self.pattern.search(found) else f"found {describe(found)}"
        if self.op == "!=":
            return f"found {describe(found)}" if _same(found, self.value) else ""
        kind, wanted = _kind(found), _kind(self.value)
        if self.op == "==":
            if _same(found, self.value):
                return ""
            return f"found {_typed(found)}, not {_A_KIND.get(wanted, f'a {wanted}')}" if kind != wanted else f"found {describe(found)}"
        if kind != wanted:
            return f"found {_typed(found)}, cannot compare with {_typed(self.value)}"
        if kind not in _ORDERED_KINDS:
            return f"found {_typed(found)}, only numbers and strings have an order"
        return "" if _ORDER[self.op](found, self.value) else f"found {describe(found)}"


def _kind(value: Any) -> str:
    return next((name for cls, name in _KINDS if isinstance(value, cls)), type(value).__name__)


def _typed(value: Any) -> str:
    return "null" if value is None else f"{_kind(value)} {describe(value)}"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: the same type at every level; by value, never by identity."""
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(map(_same, a, b))
    if kind == "object":
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return a == b


def _literal(raw: str, op: str, text: str) -> Any:
    try:
        # NaN and Infinity are Python's extensions, not JSON, and NaN equals nothing.
        return json.loads(raw, parse_constant=_not_json)
    except ValueError:
        if _BARE_WORD.match(raw):
            raise ValueError(f"expected a JSON literal after {op!r}, found bare word {raw} in {text!r}; "
                             f"quote strings: {json.dumps(raw)}") from None
        raise ValueError(f"expected a JSON literal after {op!r}, found {raw!r} in {text!r}") from None


def _not_json(constant: str) -> NoReturn:
    raise ValueError


def _regex(raw: str | None, text: str) -> re.Pattern[str]:
    if not raw:
        raise ValueError(f"expected a regex after 'matches', found nothing in {text!r}")
    source = raw
    if raw.startswith('"'):
        try:
            source = json.loads(raw)
        except ValueError:
            raise ValueError(f"expected a JSON string after 'matches', found {raw!r} in {text!r}") from None
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
