"""The function's own logs: JSON lines on stdout with severity and build/service labels.

The structured handler comes from google-cloud-logging and is installed on first use, so a
filtered message never pays for importing it.
"""

from __future__ import annotations

import json
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


class _JsonLines(logging.Formatter):
    """The same JSON line shape, for when google-cloud-logging's handler cannot be had: a log line is never lost."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"severity": record.levelname, "message": record.getMessage(),
                "logging.googleapis.com/labels": getattr(record, "labels", {}), **getattr(record, "json_fields", {})}
        return json.dumps(line, default=str)


def _fallback(problem: Exception) -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonLines())
    print(json.dumps({"severity": "WARNING", "message": f"structured logging unavailable, writing plain JSON lines: "
                      f"{type(problem).__name__}: {problem}"}), flush=True)
    return handler


def use_structured() -> None:
    """Send postdeploy's records to stdout as Cloud Logging JSON (idempotent, thread-safe, never raises)."""
    global _configured
    if _configured:
        return
    with _setup_lock:
        if _configured:
            return
        handler: logging.Handler
        try:
            from google.cloud.logging_v2.handlers import StructuredLogHandler

            handler = StructuredLogHandler(stream=sys.stdout)
        except Exception as exc:  # an import that failed half-way must not take the message's ack with it
            handler = _fallback(exc)
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
