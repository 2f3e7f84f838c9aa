"""What the check tests share: the `orders` revision under test, and one run of a check."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import ModuleType
from typing import Any

from core.model import CheckContext, CheckResult, RevisionInfo, Target
from tests.servers.data import NEW, OLD

__all__ = ["NEW", "OLD", "revision_target", "run_check"]


def revision_target(created: datetime, previous: str = OLD) -> Target:
    """`orders`' new revision, created at `created`, to compare with `previous` (nothing when empty)."""
    return Target(service="orders", project="acme-prod", region="us-central1", revision=NEW, previous_revision=previous,
                  revision_info=RevisionInfo(name=NEW, create_time=created))


def run_check(module: ModuleType, target: Target, config: Any, **ctx_fields: Any) -> CheckResult:
    """The result of one ``module.run`` with a CheckContext of `ctx_fields` and no HTTP client."""
    result: CheckResult = asyncio.run(module.run(target, config, CheckContext(http=None, **ctx_fields)))
    return result
