"""postdeploy entry points: the Cloud Function (`on_build`) and the CLI (`python main.py …`)."""

from __future__ import annotations

import sys
from typing import Any

import functions_framework

from entry.function import handle


@functions_framework.cloud_event
def on_build(cloud_event: Any) -> None:
    """Validate the Cloud Run deploy a finished Cloud Build made; ack everything else.

    Returning acks the Pub/Sub message; only a Transient fault raises (→ 500 → redelivery).
    """
    handle(cloud_event.data, str(cloud_event["id"]))


if __name__ == "__main__":
    from entry.cli import main

    sys.exit(main(sys.argv[1:]))
