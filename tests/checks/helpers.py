"""What the check tests share: the `orders` revision under test, one run of a check, and log lines to judge."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import ModuleType
from typing import Any

from core.model import CheckContext, CheckResult, RevisionInfo, Target
from core.signals import LogEntry
from tests.servers.data import NEW, OLD

__all__ = ["FAST", "NEW", "OLD", "TRACEBACK", "log_line", "revision_target", "run_check"]


def revision_target(created: datetime, previous: str = OLD) -> Target:
    """`orders`' new revision, created at `created`, to compare with `previous` (nothing when empty)."""
    return Target(service="orders", project="acme-prod", region="us-central1", revision=NEW, previous_revision=previous,
                  revision_info=RevisionInfo(name=NEW, create_time=created))


def run_check(module: ModuleType, target: Target, config: Any, **ctx_fields: Any) -> CheckResult:
    """The result of one ``module.run`` with a CheckContext of `ctx_fields` and no HTTP client."""
    result: CheckResult = asyncio.run(module.run(target, config, CheckContext(http=None, **ctx_fields)))
    return result


FAST = {"settle_s": 0}  # logs settings that read at once instead of waiting for ingestion
TRACEBACK = '''Traceback (most recent call last):
  File "/app/orders/api.py", line 42, in handle_checkout
    order = ORDERS[order_id]
KeyError: 'ord_7Hq2xK9p'
'''


def log_line(value: str, severity: str = "ERROR") -> LogEntry:
    """A log entry with no time: it falls in every window."""
    return LogEntry(None, severity=severity, text=value)
