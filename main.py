"""postdeploy entry points: the Cloud Function (`on_build`), the HTTP functions `rerun` and `scheduled`, and the CLI."""

from __future__ import annotations

import sys
from typing import Any

import functions_framework

from core.errors import Transient
from entry import scheduled as scheduled_check
from entry.function import handle
from entry.rerun import Answer, answer


@functions_framework.cloud_event
def on_build(cloud_event: Any) -> None:
    """Validate the Cloud Run deploy a finished Cloud Build made; ack everything else.

    Returning acks the Pub/Sub message; only a Transient fault raises (→ 500 → redelivery).
    """
    handle(cloud_event.data, str(cloud_event["id"]))


@functions_framework.http
def rerun(request: Any) -> Answer:
    """Validate again the revision a stored report names: POST {"build_id", "service"} (tooling; deploy with IAM)."""
    return answer(request)


@functions_framework.http
def scheduled(request: Any) -> Answer:
    """A promotion's step check or a follow-up, as Cloud Tasks delivers it (deploy with IAM: the function's own
    service account is the only caller)."""
    return scheduled_check.answer(request)


def answer_transient(exc: Transient) -> tuple[str, int]:
    """500 for a fault worth a redelivery, without Flask's traceback: handle() has logged one line saying why
    (INFO for a duplicate delivery that found the validation in progress, WARNING for an outage)."""
    return f"asking for redelivery: {exc}", 500


# Serving, functions-framework has made this its Flask app's errorhandler; imported by the CLI, a no-op.
functions_framework.errorhandler(Transient)(answer_transient)


if __name__ == "__main__":
    from entry.cli import main

    sys.exit(main(sys.argv[1:]))
