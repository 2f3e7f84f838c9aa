"""What the pipeline tests share: a quick config and the adapters of a run against the fake Cloud Run API."""

from __future__ import annotations

from typing import Any

from core.config import Config
from core.pipeline import Adapters
from sources.cloud_run import RunRevisionSource
from tests.servers.slack import SlackReceiver

CONFIG = Config.parse("""
version: 1
defaults:
  checks:
    health: {path: /health, expect_json: ['status == "healthy"'], tries: 2, interval_s: 0}
    window: {window_s: 0}
""", "test")


def adapters(store: Any, slack: SlackReceiver | None = None) -> Adapters:
    """The Cloud Run API (the fake, through the official client), `store`, and `slack`'s webhook when given."""
    return Adapters(revisions=RunRevisionSource, store=lambda: store, webhook=lambda: slack.url if slack else "")
