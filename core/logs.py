"""The function's own logs: JSON lines on stdout with severity and build/service labels.

The structured handler comes from google-cloud-logging and is installed on first use, so a
filtered message never pays for importing it.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from core.redact import redact

LOGGER = logging.getLogger("postdeploy")
_configured = False
# The first log lines of a fresh instance may come from many request threads at once: one of them installs the
# handler, and the others wait for it (importing google.cloud.logging_v2 from two threads at once can fail half-way).
_setup_lock = threading.Lock()


def use_structured() -> None:
    """Send postdeploy's records to stdout as Cloud Logging JSON (idempotent, thread-safe)."""
    global _configured
    if _configured:
        return
    with _setup_lock:
        if _configured:
            return
        from google.cloud.logging_v2.handlers import StructuredLogHandler

        handler = StructuredLogHandler(stream=sys.stdout)
        LOGGER.handlers[:] = [handler]
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
        _configured = True


def use_console(level: int = logging.WARNING) -> None:
    """Plain lines on stderr, for the CLI."""
    global _configured
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    with _setup_lock:
        LOGGER.handlers[:] = [handler]
        LOGGER.setLevel(level)
        LOGGER.propagate = False
        _configured = True


def log(severity: str, message: str, *, build_id: str = "", service: str = "", **fields: Any) -> None:
    """One log record; ``build_id`` and ``service`` become Cloud Logging labels; the message and fields are redacted."""
    if not _configured:
        use_structured()
    labels = {k: v for k, v in (("build_id", build_id), ("service", service)) if v}
    level = logging.getLevelName(severity.upper())
    message, fields = redact((message, fields))
    LOGGER.log(level if isinstance(level, int) else logging.INFO, message,
               extra={"labels": labels, "json_fields": fields})
