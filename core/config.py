"""postdeploy.yaml: versioned behaviour config, validated once, every error reported with its path."""

from __future__ import annotations

import fnmatch
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from core.errors import ConfigError
from core.schema import CATEGORIES, FUNCTION_TIMEOUT_S, CheckSettings, Strict

DEFAULT_WEIGHTS = {"Deployment": 20.0, "Migration": 25.0, "Stability": 20.0, "Business": 20.0, "Testing": 15.0}
DEFAULT_PASS = 90.0
DEFAULT_WARN = 75.0
DEFAULT_DEADLINE_S = 480.0
DEADLINE_MARGIN_S = 30.0
SENSITIVE_KEYS = frozenset({"headers", "token", "password", "secret"})
# A Pub/Sub topic's full name; the topic id: a letter, then 2 to 254 letters, digits or - _ . ~ + %.
TOPIC = re.compile(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}")
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "postdeploy.yaml"
# A follow-up's delay: a whole number of seconds, minutes, hours or days ("90m", "1h", "24h").
DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_FOLLOW_UP_S = 7 * 86400  # the logs and metrics checks look back at most 7 days
DURATION_RULE = f"a whole number and s, m, h or d, at most {MAX_FOLLOW_UP_S // 86400} days"
MAX_STEP_WAIT_S = 86400.0


class Thresholds(Strict):
    """Score thresholds for PASS and WARN (else FAIL)."""

    pass_: float = Field(DEFAULT_PASS, alias="pass", ge=0, le=100)
    warn: float = Field(DEFAULT_WARN, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warn > self.pass_:
            raise ValueError(f"expected warn <= pass, found warn {self.warn} > pass {self.pass_}")
        return self


class Rubric(Strict):
    """Category weights and verdict thresholds."""

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    thresholds: Thresholds = Field(default_factory=lambda: Thresholds())

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown category {', '.join(unknown)}; valid: {', '.join(CATEGORIES)}")
        if any(w < 0 for w in value.values()):
            raise ValueError("expected weights >= 0")
        return {**DEFAULT_WEIGHTS, **value}


def _checks_model() -> type[Strict]:
    from checks import REGISTRY

    fields: dict[str, Any] = {
        name: (module.Config, Field(default_factory=module.Config)) for name, module in REGISTRY.items()
    }
    return create_model("Checks", __base__=Strict, **fields)


Checks = _checks_model()


class Settings(Strict):
    """The effective settings for one service."""

    region: str = ""
    deadline_s: float = Field(DEFAULT_DEADLINE_S, gt=0, le=FUNCTION_TIMEOUT_S - DEADLINE_MARGIN_S)
    rubric: Rubric = Field(default_factory=Rubric)
    checks: Checks = Field(default_factory=Checks)  # type: ignore[valid-type]
    verdict_topic: str = ""  # projects/P/topics/T: one postdeploy.verdict/v1 message per validation
    on_fail: Literal["report", "rollback"] = "report"  # rollback: move the traffic back when the verdict is FAIL
    on_pass: Literal["report", "promote"] = "report"  # promote: move traffic to a --no-traffic revision after a PASS
    steps: list[int] = Field(default_factory=lambda: [100])  # percent of traffic at each step; the last is 100
    step_wait_s: float = Field(300.0, ge=1, le=MAX_STEP_WAIT_S)  # between a step's move and its check
    follow_up: list[str] = Field(default_factory=list)  # "1h", "24h": look again at logs and metrics then
    follow_up_notify: Literal["worse", "always"] = "worse"  # Slack for a follow-up only when its verdict got worse
    _routes: list[Any] = PrivateAttr(default_factory=list)  # the file's top-level notify routes (Config fills it)
    signed_url_ttl: str = ""  # "24h": report links are V4 signed URLs valid this long (at most 7d); "": authenticated URLs

    @field_validator("signed_url_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        if value and duration_s(value) is None:
            raise ValueError(f"expected a lifetime like 1h or 7d ({DURATION_RULE}), found {value!r}")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or value[-1] != 100 or any(not 0 < p <= 100 for p in value) or value != sorted(set(value)):
            raise ValueError(f"expected increasing percents from 1 to 100 that end at 100 (e.g. [10, 50, 100]), "
                             f"found {value}")
        return value

    @field_validator("follow_up")
    @classmethod
    def _follow_up(cls, value: list[str]) -> list[str]:
        for text in value:
            if duration_s(text) is None:
                raise ValueError(f"expected delays like 30m, 1h or 24h ({DURATION_RULE}), found {text!r}")
        if len({duration_s(text) for text in value}) != len(value):
            raise ValueError(f"expected each follow-up delay once, found {value}")
        return sorted(value, key=lambda text: duration_s(text) or 0)

    @property
    def routes(self) -> list[NotifyRoute]:
        """The config file's Slack routes (top-level ``notify``), which every service's settings carry."""
        return list(self._routes)

    @property
    def schedules(self) -> bool:
        """Whether this service needs Cloud Tasks: a promotion in steps or follow-ups."""
        return self.on_pass == "promote" or bool(self.follow_up)

    @field_validator("verdict_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if value and not TOPIC.fullmatch(value):
            raise ValueError(f"expected a topic name projects/PROJECT/topics/TOPIC, found {value!r}")
        return value

    def check(self, name: str) -> CheckSettings:
        """The settings of one check by its registry name."""
        value: CheckSettings = getattr(self.checks, name)
        return value

    @model_validator(mode="after")
    def _window_fits(self) -> Settings:
        from checks.logs import QUERY_RESERVE_S as LOG_QUERY_RESERVE_S  # its own queries after the window and the settle

        window: Any = self.check("window")
        logs: Any = self.check("logs")
        if window.enabled and logs.enabled:
            needed = window.window_s + logs.settle_s + LOG_QUERY_RESERVE_S
            if needed > self.deadline_s:
                raise ValueError(f"expected checks.window.window_s + checks.logs.settle_s + {LOG_QUERY_RESERVE_S:g} s of "
                                 f"log queries ≤ deadline_s ({self.deadline_s:g} s), found {window.window_s:g} + "
                                 f"{logs.settle_s:g} + {LOG_QUERY_RESERVE_S:g} = {needed:g} s")
        smoke: Any = self.check("smoke")
        if isinstance(window.smoke, list):
            known = [p.name for p in smoke.paths]
            unknown = [name for name in window.smoke if name not in known]
            if unknown:
                raise ValueError(f"expected checks.window.smoke to name paths of checks.smoke ({', '.join(known) or 'none'}), "
                                 f"found {', '.join(unknown)}")
        return self


def duration_s(text: str) -> int | None:
    """Seconds in a follow-up delay such as ``24h``; None when it is not one (or longer than 7 days)."""
    match = DURATION.fullmatch(text)
    if match is None:
        return None
    seconds = int(match[1]) * DURATION_UNITS[match[2]]
    return seconds if seconds <= MAX_FOLLOW_UP_S else None


Verdict = Literal["PASS", "WARN", "FAIL", "INCONCLUSIVE"]
VERDICTS: tuple[Verdict, ...] = typing.get_args(Verdict)
# A Secret Manager secret version: projects/P/secrets/S/versions/V (V a number or "latest").
SECRET_VERSION = re.compile(r"projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)")


class NotifyRoute(Strict):
    """One Slack webhook and what it wants to hear of: services by name or glob, and verdicts."""

    webhook_secret: str  # projects/P/secrets/S/versions/V holding the incoming webhook URL
    services: list[str] = Field(default_factory=lambda: ["*"])
    verdicts: list[Verdict] = Field(default_factory=lambda: list(VERDICTS))

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not SECRET_VERSION.fullmatch(value):
            raise ValueError(f"expected a secret version projects/P/secrets/S/versions/latest (or a number), "
                             f"found {value!r}")
        return value

    def wants(self, service: str, verdict: str) -> bool:
        return verdict in self.verdicts and any(fnmatch.fnmatchcase(service, p) for p in self.services)


class ConfigFile(Strict):
    """The top level of postdeploy.yaml."""

    version: Literal[1]
    defaults: dict[str, Any] = Field(default_factory=dict)
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notify: list[NotifyRoute] = Field(default_factory=list)  # Slack routing; empty: POSTDEPLOY_SLACK_WEBHOOK[_SECRET]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _strip(tp: Any) -> Any:
    """The type under Annotated[...] and Optional[...]."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _tagged(tp: Any, tag: Any) -> Any:
    """The member of a discriminated union (``Annotated[Model, Tag(tag)] | …``) that ``tag`` names, else None."""
    tp = _strip(tp)
    if not (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union):
        return None
    return next((_strip(m) for m in typing.get_args(tp)
                 if any(getattr(meta, "tag", None) == tag for meta in getattr(m, "__metadata__", ()))), None)


def _valid_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys accepted where an unknown key was found, for the error message."""
    current: Any = model
    for part in loc[:-1]:
        if (member := _tagged(current, part)) is not None:
            current = member  # pydantic puts a tagged union member's tag in the location
            continue
        current = _strip(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part)) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return []
            current = info.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return []
    current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or n for n, f in current.model_fields.items())
    return []


def _problems(exc: ValidationError, model: Any, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "(top level)"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(model, loc)
            lines.append(f"{path}: unknown key; valid keys: {', '.join(valid)}" if valid else f"{path}: unknown key")
        else:
            message = err["msg"].removeprefix("Value error, ")
            # A header value may be a credential: never echo what was found there.
            secret = any(str(part).lower() in SENSITIVE_KEYS for part in loc)
            shown = "" if err["type"] == "value_error" or secret else f" (found {err.get('input')!r})"
            lines.append(f"{path}: {message}{shown}")
    return lines


class Config:
    """A validated config: defaults plus per-service sections matched by name, then glob."""

    def __init__(self, file: ConfigFile, source: str = "(defaults)") -> None:
        self.file = file
        self.source = source
        self.defaults = Settings.model_validate(file.defaults)
        self._by_service = {name: Settings.model_validate(_merge(file.defaults, section)) for name, section in file.services.items()}
        for settings in (self.defaults, *self._by_service.values()):
            settings._routes = list(file.notify)

    def for_service(self, service: str) -> Settings:
        """Settings for a service: its exact section, else the first matching glob, else defaults."""
        if service in self._by_service:
            return self._by_service[service]
        for pattern, settings in self._by_service.items():
            if fnmatch.fnmatchcase(service, pattern):
                return settings
        return self.defaults

    @classmethod
    def default(cls) -> Config:
        """Zero config: every check with its defaults."""
        return cls(ConfigFile(version=1))

    @classmethod
    def parse(cls, text: str, source: str) -> Config:
        """Validate YAML text; raise ConfigError listing every problem with its path."""
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"(top level): expected YAML, found a syntax error: {exc}"]) from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(source, [f"(top level): expected a mapping, found {type(raw).__name__}"])
        problems: list[str] = []
        try:
            file = ConfigFile.model_validate(raw)
        except ValidationError as exc:
            problems += _problems(exc, ConfigFile)
            defaults, services = raw.get("defaults"), raw.get("services")
            file = ConfigFile.model_construct(
                version=1,
                defaults=defaults if isinstance(defaults, dict) else {},
                services={k: v for k, v in services.items() if isinstance(v, dict)} if isinstance(services, dict) else {},
            )
        try:
            Settings.model_validate(file.defaults)
        except ValidationError as exc:
            problems += _problems(exc, Settings, "defaults.")
        for name, section in file.services.items():
            try:
                Settings.model_validate(_merge(file.defaults, section))
            except ValidationError as exc:
                inherited = {p.removeprefix("defaults.") for p in problems}
                problems += [
                    f"services.{name}.{p}" for p in _problems(exc, Settings) if p not in inherited
                ]
        if problems:
            raise ConfigError(source, problems)
        return cls(file, source)


def load(path: str | None = None) -> Config:
    """Load POSTDEPLOY_CONFIG (file or gs://bucket/object); a missing default file means zero config."""
    explicit = path or os.environ.get("POSTDEPLOY_CONFIG", "")
    if explicit.startswith("gs://"):
        from core.errors import AccessDenied, TargetNotFound
        from sources.gcp import read_gcs_text

        try:
            text = read_gcs_text(explicit)
        except (TargetNotFound, AccessDenied) as exc:
            raise ConfigError(explicit, [f"(file): {exc}"]) from exc
        return Config.parse(text, explicit)
    target = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if not target.exists():
        if explicit:
            raise ConfigError(explicit, [f"(file): expected a config file at {explicit}, found nothing"])
        return Config.default()
    return Config.parse(target.read_text(encoding="utf-8"), str(target))
