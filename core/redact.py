"""The one redactor: no secret leaves postdeploy in a report, a Slack message or a log line of its own.

Every string of what leaves goes through :func:`redact`, in this order:

1. exact values, longest first, also as JSON-escaped, repr and percent-encoded text: the secrets postdeploy
   was given (``${env:…}``/``${secret:…}`` values of the golden paths, the Slack webhook: see :func:`register`;
   ``also`` for one call), and the values of its environment variables whose names say secret (``…TOKEN``,
   ``…SECRET``, ``…PASSWORD``, ``…_KEY``, ``…CREDENTIALS``, ``…DSN``, ``POSTDEPLOY_SLACK_WEBHOOK…``);
2. PEM private keys → ``[REDACTED PRIVATE KEY]``;
3. Slack webhook URLs (``hooks.slack.com/services|workflows|triggers/…``) → ``…/services/[REDACTED]``;
4. URL credentials ``scheme://user:password@`` → ``scheme://user:[REDACTED]@``, also percent-encoded;
5. ``Bearer …`` / ``Basic …`` credentials → ``Bearer [REDACTED]``;
6. JWTs → ``[REDACTED JWT]``;
7. tokens recognisable by their prefix → ``[REDACTED]``: AWS access key ids (``AKIA``, ``ASIA``, ``ABIA``,
   ``ACCA``), Google API keys (``AIza``) and OAuth access tokens (``ya29.``), Slack (``xoxb-``, ``xoxp-``,
   ``xoxa-``, ``xoxr-``, ``xoxs-``, ``xoxe-``, ``xapp-``), GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``,
   ``ghr_``, ``github_pat_``), Stripe (``sk_live_``, ``sk_test_``, ``rk_live_``, ``rk_test_``, ``whsec_``);
8. the value after a key that names a secret (``password=…``, ``"client_secret": "…"``, ``X-Api-Key: …``,
   ``aws_secret_access_key = …``, ``Cookie: …``) → ``key=[REDACTED]``; in a dict, the string under such a key;
   and the value an expectation on such a field found (``expected token == "x" in GET /login, found [REDACTED]``).

Values that only say where a secret lives (a Secret Manager version name, a ``${…}`` reference), a V4 signed URL's
``X-Goog-Credential=ACCOUNT/DATE/LOCATION/storage/goog4_request`` (an account and a date: the link must work in
Slack), words such as ``none`` or ``str`` after a key, and values shorter than the minimums are kept. The result
of :func:`redact` is a fixed point (redacting it again changes nothing). Every quantifier is bounded and no
two of them compete for the same characters, so the time is linear in the text's length.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from functools import cache, cached_property, lru_cache
from typing import Any, TypeVar, cast

MARKER = "[REDACTED]"
JWT_MARKER = "[REDACTED JWT]"
KEY_MARKER = "[REDACTED PRIVATE KEY]"
# Registered secrets (configured values, ID tokens) this short are not replaced: "1" or "abc" is everywhere.
MIN_SECRET_CHARS = 4
# Environment values are secret by their variable's name only, a weaker sign: they need more length.
MIN_ENV_CHARS = 8
MAX_REGISTERED = 256  # oldest forgotten first: an instance lives for many validations
MAX_VALUE_CHARS = 1024  # of a key=value value, a URL password, a quoted value
MAX_PASSES = 3

T = TypeVar("T")

_registered: dict[str, None] = {}  # insertion-ordered set
_registered_lock = threading.Lock()

_KEYWORD = (r"(?:pass(?:wd|word|phrase)|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|account[_-]?key"
            r"|auth[_-]?key|signing[_-]?key|credentials?|authorization|session[_-]?id|cookie)")
_KEYWORD_STEMS = ("pass", "pwd", "secret", "token", "key", "credential", "authorization", "session", "cookie")
# Plain words after a secret's key in prose, code and config: never secrets themselves.
_PLAIN_VALUES = frozenset({"none", "null", "nil", "true", "false", "undefined", "empty", "unset", "missing", "n/a",
                           "str", "bytes", "int", "string", "optional", "required", "redacted", "hidden", "masked",
                           "no such field"})  # what core.expect says of a field that is not there
_MARKERS = (MARKER, JWT_MARKER, KEY_MARKER, "<redacted>")


def register(*values: str) -> None:
    """Values to replace wherever they appear from now on, in this process (secrets postdeploy resolved or holds)."""
    found = [v for v in _candidates(values) if _worth_replacing(v, MIN_SECRET_CHARS)]
    with _registered_lock:
        for value in found:
            _registered.pop(value, None)
            _registered[value] = None
        while len(_registered) > MAX_REGISTERED:
            del _registered[next(iter(_registered))]


def forget() -> None:
    """Drop every registered value (tests)."""
    with _registered_lock:
        _registered.clear()


def redact(value: T, also: Iterable[str] = ()) -> T:
    """``value`` (text, or lists, tuples and dicts of them) with every secret replaced; ``also``: more exact values."""
    redactor = _Redactor(_exact_spellings(_exact_values(also)))
    return cast(T, redactor.walk(value))


def redact_text(text: str, also: Iterable[str] = ()) -> str:
    """One string with every secret replaced."""
    return redact(text, also)


def names_secret(key: str) -> bool:
    """Whether a field or header name says its value is a secret (``password``, ``x-api-key``, ``client_secret``)."""
    return _key_pattern().search(key) is not None


def secret_value(value: str) -> str:
    """What a value under a secret's name becomes: MARKER, unless it is plain, a reference or already redacted."""
    scheme = _scheme().match(value)
    head, rest = (value[:scheme.end()], value[scheme.end():]) if scheme else ("", value)
    return head + MARKER if _hides_a_secret(rest) else value


# ---------------------------------------------------------------- exact values


def _candidates(values: Iterable[str]) -> list[str]:
    """Each value trimmed, and the credential of a "Bearer …" or "Basic …" value on its own too."""
    found: list[str] = []
    for value in values:
        value = value.strip()
        scheme = _scheme().match(value)
        found += [value, value[scheme.end():]] if scheme else [value]
    return found


def _worth_replacing(value: str, minimum: int) -> bool:
    if len(value) < minimum or any(value in marker for marker in _MARKERS):
        return False
    # Where a secret lives is not the secret: a Secret Manager version, a reference. (A path is kept secret: base64
    # secrets start with "/" too.)
    return not (value.startswith("${") or _reference().match(value))


@cache
def _scheme() -> re.Pattern[str]:
    return re.compile(r"(?i)(?:bearer|basic|token|digest)\s{1,3}")


@cache
def _reference() -> re.Pattern[str]:
    return re.compile(r"projects/[^/\s]{1,100}/secrets/")


# Names whose value is a secret: …TOKEN, …SECRET, …PASSWORD, …_KEY, …_CREDENTIALS, …_DSN, …_WEBHOOK, POSTDEPLOY_SLACK_WEBHOOK….
_SECRET_NAME_ENDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "APIKEY", "_KEY", "_PASS", "_CREDENTIAL",
                     "_CREDENTIALS", "_DSN", "_WEBHOOK", "_WEBHOOK_URL")
_SECRET_NAME_STARTS = ("POSTDEPLOY_SLACK_WEBHOOK",)


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret."""
    upper = name.upper()
    return upper.endswith(_SECRET_NAME_ENDS) or upper.startswith(_SECRET_NAME_STARTS)


def _exact_values(also: Iterable[str]) -> tuple[str, ...]:
    values = {v.strip() for name, v in os.environ.items() if secret_name(name) and _worth_replacing(v.strip(), MIN_ENV_CHARS)}
    values.update(v for v in _candidates(also) if _worth_replacing(v, MIN_SECRET_CHARS))
    with _registered_lock:
        values.update(_registered)
    return tuple(sorted(values))


@lru_cache(maxsize=2048)
def _spellings(value: str) -> frozenset[str]:
    """The value as written, and as a JSON string, a repr and a URL would show it."""
    import json
    from urllib.parse import quote, quote_plus

    return frozenset({value, value.strip(), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                      repr(value)[1:-1], quote(value, safe=""), quote_plus(value)})


@lru_cache(maxsize=16)
def _exact_spellings(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every spelling of every value, longest first: a secret that contains another is replaced whole.

    Replaced one by one with ``in`` and ``str.replace``: ten times faster than one alternation of them all.
    """
    return tuple(sorted({s for v in values for s in _spellings(v) if len(s) >= MIN_SECRET_CHARS}, key=lambda s: (-len(s), s)))


# ---------------------------------------------------------------- patterns


@cache
def _key_pattern() -> re.Pattern[str]:
    return re.compile(r"(?i)" + _KEYWORD)


def _hides_a_secret(value: str) -> bool:
    """False for what may stand after a secret's key without being one: plain words, references, markers."""
    stripped = value.strip()
    return not (len(stripped) < 3 or stripped.lower() in _PLAIN_VALUES or stripped.startswith(("[REDACTED", "<redacted>", "${"))
                or (stripped.isdigit() and len(stripped) < 6) or _reference().match(stripped))


# X-Goog-Credential=ACCOUNT/DATE/LOCATION/storage/goog4_request (slashes percent-encoded or not) in a V4 signed URL.
_SIGNED_URL_CREDENTIAL = (r"(?i)x-goog-credential=[^\s&/]{1,320}?(?:/|%2F)\d{8}(?:/|%2F)[a-z0-9-]{1,64}"
                          r"(?:/|%2F)storage(?:/|%2F)goog4_request")


def _key_value(m: re.Match[str]) -> str:
    if m.string[max(0, m.start() - 7):m.start()].lower() == "x-goog-" and \
            re.fullmatch(_SIGNED_URL_CREDENTIAL, m.string[m.start() - 7:m.end()]):
        return m.group(0)  # a V4 signed URL's X-Goog-Credential: the signing account and a date, not a secret
    name = next(n for n in ("escaped", "double", "single", "encoded", "bare") if m.group(n) is not None)
    whole, start, end = m.group(0), m.start(name) - m.start(), m.end(name) - m.start()
    if name == "bare" and "=" not in whole[:start] and _prose(whole[start:end]) and re.match(r" [A-Za-z]", m.string[m.end():]):
        return whole  # "header X-Api-Key: could not resolve …": a sentence goes on after the colon, no value
    return whole[:start] + secret_value(whole[start:end]) + whole[end:]


def _prose(word: str) -> bool:
    """A word as prose writes it (lower case or capitalised), unlike a credential (digits, symbols or mixed case)."""
    return word.isalpha() and (word.islower() or word[1:].islower())


def _found(m: re.Match[str]) -> str:
    """What an expectation on a field named like a secret found: "expected token == …, found [REDACTED]"."""
    if not names_secret(m.group("path").rsplit(".", 1)[-1]):
        return m.group(0)
    value = m.group("value")
    shown = f'"{secret_value(value[1:-1])}"' if value[:1] == '"' else secret_value(value)
    return m.group(0)[: m.start("value") - m.start()] + shown


def _credential(m: re.Match[str]) -> str:
    if _prose(m.group("credential")):  # "Basic authentication", "bearer tokens"
        return m.group(0)
    return f"{m.group('scheme')}{m.group('space')}{MARKER}"


_TOKEN_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AIza", "ya29.", "xox", "xapp-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                   "github_pat_", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_")


class _Rule:
    """A pattern and its replacement, tried only on text that holds one of its needles; compiled on first use."""

    def __init__(self, needles: tuple[str, ...], folded: bool, source: str, replacement: Any) -> None:
        self.needles, self.folded, self.source, self.replacement = needles, folded, source, replacement

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.source)

    def apply(self, text: str, lowered: str) -> str:
        if any(n in (lowered if self.folded else text) for n in self.needles):
            text = self.pattern.sub(self.replacement, text)
        return text


@cache
def _rules() -> tuple[_Rule, ...]:
    """The rules in order. Nothing is compiled here: a log line without a needle compiles nothing."""
    pem_header = r"-----{} (?:[A-Z0-9]{{1,20}} ){{0,4}}PRIVATE KEY(?: BLOCK)?-----"
    pem_body = r"[A-Za-z0-9+/=\s\\%:,.-]"  # base64, line breaks as written or escaped, Proc-Type/DEK-Info headers
    most = MAX_VALUE_CHARS
    return (
        _Rule(("PRIVATE KEY",), False,
              pem_header.format("BEGIN") + rf"(?:{pem_body}{{0,16384}}?{pem_header.format('END')}|{pem_body}{{0,16384}})",
              KEY_MARKER),
        _Rule(("hooks.slack",), True,
              r"(?i)(hooks\.slack(?:-gov)?\.com(?:/|\\/|%2F))(services|workflows|triggers)(/|\\/|%2F)[A-Za-z0-9_%\\/-]{8,512}",
              rf"\1\2\3{MARKER}"),
        _Rule(("://",), False,
              rf"(?i)\b([a-z][a-z0-9+.-]{{1,15}}://[^\s/:@?#\[\]\"'<>]{{0,128}}):(?!\[REDACTED)[^\s/?#\"'<>]{{1,{most}}}@",
              rf"\1:{MARKER}@"),
        _Rule(("%3a%2f%2f",), True,  # the same URL percent-encoded, as a query parameter carries it
              rf"(?i)\b([a-z][a-z0-9+.-]{{1,15}}%3A%2F%2F[A-Za-z0-9._~!$'()*+,;=-]{{0,128}})%3A(?!\[REDACTED)"
              rf"[A-Za-z0-9._~!$'()*+,;=%-]{{1,{most}}}?%40",
              rf"\1%3A{MARKER}%40"),
        _Rule(("bearer", "basic"), True,
              r"\b(?P<scheme>(?i:bearer|basic))(?P<space>\s{1,5}|%20|\+)(?!(?i:realm|error|scope|charset)=)"
              r"(?P<credential>[A-Za-z0-9._~+/=-]{6,8192})",
              _credential),
        _Rule(("eyJ",), False, r"\beyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,16384}\.[A-Za-z0-9_-]{0,4096}", JWT_MARKER),
        _Rule(_TOKEN_PREFIXES, False,
              r"(?<![A-Za-z0-9])(?:(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}|AIza[0-9A-Za-z_-]{35}|ya29\.[0-9A-Za-z_-]{20,4096}"
              r"|xox[abeoprs](?:\.xox[a-z])?-[0-9A-Za-z-]{10,512}|xapp-\d-[0-9A-Za-z-]{10,512}|gh[opusr]_[0-9A-Za-z]{30,255}"
              r"|github_pat_[0-9A-Za-z_]{22,255}|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,255}|whsec_[0-9A-Za-z+/=]{20,255})"
              r"(?![A-Za-z0-9])",
              MARKER),
        _Rule(("found ",), False,
              r"\bexpected (?P<path>[\w.\-]{1,200}) (?:==|!=|<=|>=|<|>|matches|not exists)"
              r"(?:(?!, found |\bexpected )[^\n]){0,2048}, found (?:string )?"
              rf"(?P<value>\"(?:[^\"\\\n]|\\.){{1,{most}}}\"|[^\s,;]{{1,{most}}})",
              _found),
    )


@cache
def _keywords() -> re.Pattern[str]:
    """Keywords in lower-case text: a plain scan, many times faster than a case-insensitive one."""
    return re.compile(_KEYWORD)


@cache
def _key_value_pattern() -> re.Pattern[str]:
    """A secret's key (from its keyword on), its separator and its value: quoted, escaped-quoted, percent-encoded or bare."""
    space, most = r"(?:\s|%20|\+)", MAX_VALUE_CHARS
    # A bare value ends where a delimiter does, written or percent-encoded (%20 %22 %26 %27 %2C %3B %7D).
    # Each character is read one way only ("%41" as an escape, never as "%", "4", "1"): nothing to backtrack into.
    bare = r"(?:[^\s\"'`\\&,;{}()\[\]<>|%]|%(?!2[0267Cc]|3[Bb]|7[Dd])[0-9A-Fa-f]{2}|%(?![0-9A-Fa-f]{2}))"
    return re.compile(
        rf"(?i){_KEYWORD}[A-Za-z0-9_.-]{{0,40}}(?:\\{{0,2}}[\"']|%2[27])?{space}{{0,3}}(?:[:=]|%3[AD]){space}{{0,3}}"
        rf"(?!(?:bearer|basic|token|digest){space}{{1,3}}\[)"  # "Authorization: Bearer [REDACTED]" stays whole
        rf"(?:\\{{1,2}}\"(?P<escaped>[^\"\\\n]{{1,{most}}})\\{{1,2}}\""
        rf"|\"(?P<double>(?:[^\"\\\n]|\\.){{1,{most}}})\""
        rf"|'(?P<single>[^'\n]{{1,{most}}})'"
        rf"|%22(?P<encoded>(?:[^%\s\"]|%(?!22)[0-9A-Fa-f]{{2}}|%(?![0-9A-Fa-f]{{2}})){{1,{most}}})%22"
        rf"|(?P<bare>(?:(?:bearer|basic|token|digest)\s{{1,3}})?{bare}{{1,{most}}}))")


def _key_values(text: str) -> str:
    lowered = text.lower()
    if not any(stem in lowered for stem in _KEYWORD_STEMS):
        return text
    if len(lowered) != len(text):  # a few characters change length in lower case: positions would not line up
        return _key_value_pattern().sub(_key_value, text)
    parts: list[str] = []
    last = 0
    for hit in _keywords().finditer(lowered):
        if hit.start() < last:
            continue
        m = _key_value_pattern().match(text, hit.start())
        if m:
            parts += [text[last:m.start()], _key_value(m)]
            last = m.end()
    return "".join(parts) + text[last:] if parts else text


class _Redactor:
    """One pass over a value with a fixed set of exact values."""

    def __init__(self, exact: tuple[str, ...]) -> None:
        self.exact = exact

    def text(self, text: str) -> str:
        # Again while a pass changes something (a later rule may hand an earlier one a new neighbour): a fixed point.
        for _ in range(MAX_PASSES):
            redacted = self._pass(text)
            if redacted == text:
                break
            text = redacted
        return text

    def _pass(self, text: str) -> str:
        for secret in self.exact:
            if secret in text:
                text = text.replace(secret, MARKER)
        lowered = text.lower()  # replacements only remove text: a needle absent now stays absent
        for rule in _rules():
            text = rule.apply(text, lowered)
        return _key_values(text)

    def walk(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            text = self.text(value)
            return secret_value(text) if key is not None and names_secret(key) else text
        if isinstance(value, dict):
            return {k: self.walk(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.walk(v) for v in value)
        return value
