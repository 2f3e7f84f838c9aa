"""Recorded payloads from tests/data and the messages that carry them; free of pytest, so bench/ uses it too."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.servers.loopback import rfc3339

Json = dict[str, Any]
DATA = Path(__file__).parent.parent / "data"
NEW, OLD = "orders-00042-new", "orders-00041-old"  # the revisions of `orders` the recorded build and logs name
IMAGE = "us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f"  # console_cd_trigger's
SUBSCRIPTION = "projects/acme-prod/subscriptions/postdeploy"
# Cloud Run LogEntry JSON by kind (python_traceback, json_stack_trace, request_503, ...), without timestamps.
RECORDED: dict[str, Json] = json.loads((DATA / "logs" / "cloud_run_entries.json").read_text(encoding="utf-8"))
# A Python 3.11 traceback as Cloud Run stores plain stdout: one DEFAULT entry per line, nanosecond timestamps.
SPLIT: list[Json] = json.loads((DATA / "logs" / "split_traceback.json").read_text(encoding="utf-8"))
SPLIT_LINES = [e["textPayload"] for e in SPLIT]
SPLIT_KEY = "ValueError at orders/pricing.py parse_quantity"
INSTANCE_A, INSTANCE_B = SPLIT[0]["labels"]["instanceId"], "0066d924aa77e0b9c4f1"


def load_build(name: str) -> Json:
    """A real-shaped Build from tests/data/builds."""
    data: Json = json.loads((DATA / "builds" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def recorded_entry(name: str, when: datetime, revision: str = NEW) -> Json:
    """A copy of the recorded entry `name`, stamped `when` and attributed to `revision`."""
    entry: Json = copy.deepcopy(RECORDED[name])
    entry["timestamp"] = entry["receiveTimestamp"] = rfc3339(when)
    entry["resource"]["labels"]["revision_name"] = revision
    return entry


def pubsub_message(build: Json, message_id: str, *, attributes: Mapping[str, str] | None = None,
                   publish_time: str = "") -> Json:
    """A Pub/Sub message whose ``data`` is `build` as base64 JSON; ``attributes`` and ``publishTime`` only when given."""
    message: Json = {"data": base64.b64encode(json.dumps(build).encode()).decode()}
    if attributes is not None:
        message["attributes"] = dict(attributes)
    message["messageId"] = message_id
    if publish_time:
        message["publishTime"] = publish_time
    return message


def push_body(build: Json, message_id: str = "m-1", *, status: str | None = "SUCCESS",
              subscription: str = SUBSCRIPTION) -> Json:
    """A Pub/Sub push request body for `build`, with attributes ``buildId`` and `status` (none when `status` is None)."""
    attributes = None if status is None else {"buildId": build["id"], "status": status}
    return {"message": pubsub_message(build, message_id, attributes=attributes), "subscription": subscription}


def split_entries(lines: list[str], start: datetime, *, instance: str = INSTANCE_A, severity: str = "DEFAULT",
                  log: str = "run.googleapis.com%2Fstdout", gap_s: float = 0.001) -> list[Json]:
    """The recorded split traceback's entry shape, one entry per line of `lines`, `gap_s` apart from `start`."""
    entries = []
    for i, line in enumerate(lines):
        entry: Json = copy.deepcopy(SPLIT[0])
        entry["timestamp"] = entry["receiveTimestamp"] = rfc3339(start + timedelta(seconds=i * gap_s))
        entry["insertId"] = f"{instance[-6:]}{start:%S%f}{i:03d}"
        entry.update(severity=severity, textPayload=line, logName=f"projects/acme-prod/logs/{log}")
        entry["labels"]["instanceId"] = instance
        entries.append(entry)
    return entries
