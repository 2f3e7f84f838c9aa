"""Re-run on demand: validate again the revision a stored report names; file the new report beside the old one.

`python main.py rerun BUILD_ID --service S` and the HTTP function `rerun` (for tooling) both come here. The stored
``{service}/{build_id}/report.json`` names the project, region, service, revision and previous revision; the same
pipeline validates that revision again, as the build it belonged to, and files the report under
``{service}/{build_id}/rerun-{id}/``: the original is never overwritten, and a rerun id runs once.
Light imports only at the top: `main` imports this module, and a filtered Cloud Build message must stay cheap.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import Busy, ConfigError, PostdeployError, Transient
from core.model import Build, DeployIntent, Rerun
from trigger.events import BUILD_ID, BUILD_ID_EXPECTED
from trigger.resolve import SERVICE_NAME_EXPECTED, is_service_name, quoted

if TYPE_CHECKING:
    from flask import Request

    from core.config import Config
    from core.pipeline import Adapters, Validation

RERUN_PREFIX = "rerun-"
RERUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RERUN_ID_EXPECTED = "1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_BODY_BYTES = 16 * 1024  # {"build_id", "service", "rerun_id"} is well under 1 KiB
BUSY_RETRY_AFTER_S = 30
REQUEST_EXPECTED = 'a JSON object {"build_id": "…", "service": "…"} (optional "rerun_id")'


class Refused(Exception):  # an answer with an HTTP status at the entry boundary; core.errors holds the faults
    """A rerun that cannot start: what was expected and what was found, and the HTTP status that says so.

    400: the request itself; 404: no stored report for it; 422: a stored report that cannot be rerun.
    """

    def __init__(self, status: int, field: str, expected: str, found: str) -> None:
        super().__init__(status, field, expected, found)
        self.status, self.field, self.expected, self.found = status, field, expected, found

    def __str__(self) -> str:
        return self.message()

    def message(self, names: dict[str, str] | None = None) -> str:
        """One line naming the field (as ``names`` calls it), what it takes and what it was given."""
        return f"{(names or {}).get(self.field, self.field)}: expected {self.expected}, found {self.found}"

    def to_json(self) -> dict[str, Any]:
        from core.redact import redact

        return dict(redact({"error": str(self), "field": self.field, "expected": self.expected, "found": self.found}))


def new_rerun_id(now: datetime | None = None) -> str:
    """``rerun-{UTC timestamp}``, to the microsecond: two reruns never share a folder."""
    return RERUN_PREFIX + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")


def checked(build_id: Any, service: Any, rerun_id: Any = None, *, names: dict[str, str] | None = None) -> str:
    """The rerun id (``rerun-…``; a new one when none is given) once the request can name a stored report; else Refused.

    ``names`` renames the fields in a message (the CLI says ``BUILD_ID`` and ``--service``).
    """
    label = {"build_id": "build_id", "service": "service", "rerun_id": "rerun_id", **(names or {})}
    if not isinstance(build_id, str) or not BUILD_ID.fullmatch(build_id):
        raise Refused(400, label["build_id"], BUILD_ID_EXPECTED, _shown(build_id))
    if not isinstance(service, str) or not is_service_name(service):
        raise Refused(400, label["service"], f"a Cloud Run service name ({SERVICE_NAME_EXPECTED})", _shown(service))
    if rerun_id is None:
        return new_rerun_id()
    if not isinstance(rerun_id, str) or not RERUN_ID.fullmatch(rerun_id.removeprefix(RERUN_PREFIX)):
        raise Refused(400, label["rerun_id"], RERUN_ID_EXPECTED, _shown(rerun_id))
    return rerun_id if rerun_id.startswith(RERUN_PREFIX) else RERUN_PREFIX + rerun_id


_KINDS = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def _shown(value: Any) -> str:
    """A request field as found: quoted when it is a string, else what kind of JSON it is."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return quoted(value)
    return f"a JSON {_KINDS.get(type(value), type(value).__name__)}"


def stored_report(store: Any, service: str, build_id: str) -> dict[str, Any]:
    """The stored report of ``build_id`` for ``service``; Refused (404) when there is none, (422) when it cannot be rerun."""
    from report.document import SCHEMA as REPORT_SCHEMA
    from report.publish import folder

    name = f"{folder(service, build_id)}/report.json"
    where = store.location(name)
    text = store.read(name)
    if text is None:
        raise Refused(404, "build_id", f"the stored report of build {build_id} for service {service} at {where}",
                      "nothing there")
    try:
        report = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Refused(422, "build_id", f"a {REPORT_SCHEMA} report at {where}", f"text that is not JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        schema = report.get("schema") if isinstance(report, dict) else None
        found = f"schema {quoted(schema)}" if isinstance(schema, str) else "JSON without a schema"
        raise Refused(422, "build_id", f"a {REPORT_SCHEMA} report at {where}", found)
    target, build = report.get("target"), report.get("build")
    if not isinstance(target, dict) or not isinstance(build, dict):
        raise Refused(422, "build_id", f"a {REPORT_SCHEMA} report with a target and a build at {where}", "neither")
    if build.get("id") != build_id or target.get("service") != service:
        raise Refused(422, "build_id", f"the report of build {build_id} for service {service} at {where}",
                      f"one of build {quoted(str(build.get('id')))} for service {quoted(str(target.get('service')))}")
    named = [target.get(k) for k in ("project", "region", "revision")]
    if not all(isinstance(v, str) and v for v in named):
        why = f"{report.get('verdict', '?')}: {report.get('summary', '')}"
        raise Refused(422, "build_id", f"a report naming the project, region and revision it validated at {where}",
                      f"project {quoted(str(named[0] or ''))}, region {quoted(str(named[1] or ''))}, revision "
                      f"{quoted(str(named[2] or ''))} (that validation was {why})")
    return report


def plan(report: dict[str, Any], rerun_id: str, original_link: str) -> tuple[Build, DeployIntent, Rerun]:
    """The build (its id, trigger, branch, commit and log as stored), the intent and the rerun a stored report gives."""

    target, stored = report["target"], report["build"]
    substitutions = {k: str(stored.get(f) or "") for k, f in
                     (("TRIGGER_NAME", "trigger"), ("BRANCH_NAME", "branch"), ("COMMIT_SHA", "commit")) if stored.get(f)}
    build = Build(id=stored["id"], status="RERUN", project_id=target["project"], substitutions=substitutions,
                  log_url=str(stored.get("log_url") or ""))
    intent = DeployIntent(service=target["service"], region=target["region"], project=target["project"],
                          source=f"rerun of the stored report of build {stored['id']}")
    of = {"verdict": report.get("verdict"), "score": report.get("score"), "finished_at": report.get("finished_at"),
          "report": original_link}
    return build, intent, Rerun(rerun_id, target["revision"], str(target.get("previous_revision") or ""), of)


def rerun(build_id: str, service: str, config: Config, adapters: Adapters, rerun_id: str | None = None) -> Validation | None:
    """Validate again the revision the stored report of ``build_id`` names; None when ``rerun_id`` was already done.

    Refused when the request or the stored report cannot start a rerun; Transient and other PostdeployErrors propagate.
    """
    from core.pipeline import run_rerun
    from report.publish import folder

    rerun_id = checked(build_id, service, rerun_id)
    store = adapters.get("store")
    report = stored_report(store, service, build_id)
    build, intent, planned = plan(report, rerun_id, store.link(f"{folder(service, build_id)}/report.html"))
    return run_rerun(build, intent, config.for_service(service), adapters, planned)


def done_before(store: Any, service: str, build_id: str, rerun_id: str) -> dict[str, Any] | None:
    """What a rerun id that already ran stored (its verdict, score and link), or None when it stored no report."""
    from report.publish import folder

    base = folder(service, build_id, rerun_id)
    text = store.read(f"{base}/report.json")
    if text is None:
        return None
    report = json.loads(text)
    return _answer(report, store.link(f"{base}/report.html"), rerun_id)


def _answer(report: dict[str, Any], link: str, rerun_id: str) -> dict[str, Any]:
    return {"verdict": report["verdict"], "score": report["score"], "report": link, "rerun_id": rerun_id,
            "build_id": report["build"]["id"], "service": report["target"]["service"],
            "revision": report["target"]["revision"]}


Answer = tuple[dict[str, Any], int] | tuple[dict[str, Any], int, dict[str, str]]


def answer(request: Request) -> Answer:
    """The HTTP entry point: POST {"build_id", "service"[, "rerun_id"]} → 200 {verdict, score, report, …} when done;
    400 bad request, 404 no stored report, 405 not a POST, 413 too large, 422 a report that cannot be rerun,
    503 (Retry-After) while the same rerun id runs or an outage lasts, 500 otherwise; every error is JSON."""
    from core.logs import log

    try:
        asked = body(request)
        rerun_id = checked(asked.get("build_id"), asked.get("service"), asked.get("rerun_id"))
        build_id, service = asked["build_id"], asked["service"]
        return _run(build_id, service, rerun_id)
    except Refused as exc:
        log("WARNING" if exc.status < 500 else "ERROR", f"rerun refused ({exc.status}): {exc}")
        return exc.to_json(), exc.status
    except Busy as exc:
        log("INFO", f"rerun busy: {exc}")
        return {"error": str(exc)}, 503, {"Retry-After": str(BUSY_RETRY_AFTER_S)}
    except Transient as exc:
        log("WARNING", f"rerun interrupted by an outage: {exc}")
        return {"error": str(exc)}, 503, {"Retry-After": str(BUSY_RETRY_AFTER_S)}
    except ConfigError as exc:
        log("ERROR", f"rerun impossible, invalid config: {exc}")
        return {"error": f"postdeploy config {exc.source} is invalid", "problems": exc.problems}, 500
    except PostdeployError as exc:
        log("ERROR", f"rerun failed: {exc}")
        return {"error": str(exc)}, 500


def _run(build_id: str, service: str, rerun_id: str) -> Answer:
    from entry.function import cached_adapters, cached_config

    adapters = cached_adapters()
    config = cached_config()
    validation = rerun(build_id, service, config, adapters, rerun_id)
    if validation is None:  # a retried request whose rerun id already ran: its answer, not a second run
        earlier = done_before(adapters.get("store"), service, build_id, rerun_id)
        if earlier is None:
            raise Refused(500, "rerun_id", f"the report of {rerun_id}, which is marked done", "no report")
        return earlier, 200  # stored from a redacted report
    return _answer(validation.report, validation.links["report.html"], rerun_id), 200  # make_report redacted it


def body(request: Request, fields: tuple[str, ...] = ("build_id", "service", "rerun_id"),
         expected: str = REQUEST_EXPECTED) -> dict[str, Any]:
    """The request's JSON object with no field but ``fields``, or Refused saying what came instead."""
    if request.method != "POST":
        raise Refused(405, "method", f"POST with {expected}", request.method)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise Refused(413, "body", f"{expected} of at most {MAX_BODY_BYTES} bytes",
                      f"{request.content_length} bytes")
    data = request.get_data(cache=False)[: MAX_BODY_BYTES + 1]
    if len(data) > MAX_BODY_BYTES:
        raise Refused(413, "body", f"{expected} of at most {MAX_BODY_BYTES} bytes", "more")
    if not data.strip():
        raise Refused(400, "body", expected, "an empty body")
    try:
        found = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "body", expected, f"a body that is not JSON ({exc})") from None
    if not isinstance(found, dict):
        raise Refused(400, "body", expected, "JSON null" if found is None else f"a JSON {_KINDS.get(type(found))}")
    unknown = sorted(set(found) - set(fields))
    if unknown:
        raise Refused(400, "body", f"{expected} and nothing else", "unknown field(s) " + ", ".join(map(quoted, unknown)))
    return found

