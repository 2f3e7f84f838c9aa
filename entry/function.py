"""Ack or validate: the one place that decides what a message becomes.

Bad messages and foreign builds are acked here with light imports only (no Google SDK, no
pydantic); only a candidate build loads the pipeline. Transient faults propagate for redelivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import BadMessage, Busy, ConfigError, Transient
from trigger.detect import deploy_intents, is_candidate
from trigger.events import decode

if TYPE_CHECKING:
    from core.config import Config
    from core.pipeline import Adapters, Validation

_config: Config | None = None
_adapters: Adapters | None = None


@dataclass
class Handled:
    """What became of one message."""

    kind: str  # "bad" (undecodable), "ignored" (not ours), "error" (our bug, logged), "validated"
    reason: str = ""
    validations: list[Validation] = field(default_factory=list)


def cached_config() -> Config:
    """POSTDEPLOY_CONFIG, validated once per instance."""
    global _config
    if _config is None:
        from core.config import load

        _config = load()
    return _config


def cached_adapters() -> Adapters:
    """Clients and the Slack webhook from the environment, made once per instance."""
    global _adapters
    if _adapters is None:
        from core.pipeline import Adapters

        _adapters = Adapters.from_env()
    return _adapters


def handle(payload: Any, event_id: str = "", config: Config | None = None,
           adapters: Adapters | None = None) -> Handled:
    """Decode, filter and validate one message. Raises only Transient (→ redelivery); everything else is acked."""
    try:
        return _handle(payload, event_id, config, adapters)
    except Transient:
        raise
    except Exception as exc:  # a bug must not become a 24-hour redelivery loop
        from core.logs import log

        log("ERROR", f"acked message {event_id or '?'} after an unexpected error: {type(exc).__name__}: {exc}",
            message_id=event_id, traceback=_trace(exc))
        return Handled("error", f"{type(exc).__name__}: {exc}")


def _handle(payload: Any, event_id: str, config: Config | None, adapters: Adapters | None) -> Handled:
    try:
        build = decode(payload, event_id)
    except BadMessage as exc:
        from core.logs import log

        log("WARNING", f"acked undecodable message: {exc.reason}", message_id=exc.message_id or event_id)
        return Handled("bad", exc.reason)
    if not is_candidate(build):
        return Handled("ignored", f"build {build.id} is {build.status}, not SUCCESS")
    intents = deploy_intents(build)
    if not intents:
        return Handled("ignored", f"build {build.id} deploys no Cloud Run service")

    from core import pipeline
    from core.config import Config
    from core.logs import log

    problem = ""
    try:
        config = config or cached_config()
    except ConfigError as exc:
        # Say so in a report and in Slack: a silently skipped validation looks like a quiet success.
        log("ERROR", f"invalid config, reporting build {build.id} as INCONCLUSIVE: {exc}", build_id=build.id)
        problem = f"postdeploy config {exc.source} is invalid, nothing was checked: " + "; ".join(exc.problems[:3])
        config = Config.default()
    try:
        return Handled("validated", validations=pipeline.run(build, intents, config, adapters or cached_adapters(), problem))
    except Busy as exc:  # a duplicate delivery while the first is at work: expected, not a fault
        log("INFO", f"busy, asking for redelivery: {exc}", build_id=build.id)
        raise
    except Transient as exc:
        log("WARNING", f"transient fault, asking for redelivery: {exc}", build_id=build.id)
        raise


def _trace(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))[-4000:]
