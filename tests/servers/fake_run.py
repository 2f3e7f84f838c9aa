"""A hand-written fake of the Cloud Run Admin API v2 REST calls postdeploy makes.

Revisions are read-only. A service's traffic can be updated (``PATCH …/services/S?updateMask=traffic`` carrying
the service's ``etag``: a stale one is refused with 409 ABORTED, as AIP-154 prescribes); every such update is recorded
in ``service_updates``. Jobs can be created, read, updated and run; writes answer with long-running Operations the way
the API does over REST (``{name, metadata{@type}, done}``, polled with ``GET /v2/projects/*/locations/*/operations/*``),
and an execution's outcome is scripted per test with ``next_execution``. Every request is recorded: ``requests``
(method, path) and ``bodies`` (method, path, JSON body) for writes.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.servers.loopback import Faults, LoopbackHandler, LoopbackServer, error_body, rfc3339

if TYPE_CHECKING:
    from tests.servers.fake_logging import FakeLogging

TRAFFIC_LATEST = 1
TRAFFIC_REVISION = 2
CONDITION_FAILED = 3
CONDITION_SUCCEEDED = 4
EXECUTION_REASON_NON_ZERO_EXIT_CODE = 2
EXECUTION_REASON_CANCELLED = 3
EXECUTION_POLLS = 1  # reads of an execution that still show it running
OPERATION_POLLS = 1  # reads of a job write operation before it is done

_SEGMENT = r"([^/?]+)"
_SERVICES = re.compile(rf"/v2/projects/{_SEGMENT}/locations/{_SEGMENT}/services")
_SERVICE = re.compile(rf"{_SERVICES.pattern}/{_SEGMENT}")
_REVISIONS = re.compile(rf"{_SERVICE.pattern}/revisions")
_REVISION = re.compile(rf"{_REVISIONS.pattern}/{_SEGMENT}")
_JOBS = re.compile(rf"/v2/projects/{_SEGMENT}/locations/{_SEGMENT}/jobs")
_JOB = re.compile(rf"{_JOBS.pattern}/([^/?:]+)(:run)?")
_EXECUTION = re.compile(rf"{_JOBS.pattern}/([^/?:]+)/executions/([^/?:]+)(:cancel)?")
_OPERATION = re.compile(rf"/v2/projects/{_SEGMENT}/locations/{_SEGMENT}/operations/([^/?:]+)")
TYPE_JOB = "type.googleapis.com/google.cloud.run.v2.Job"
TYPE_SERVICE = "type.googleapis.com/google.cloud.run.v2.Service"
TYPE_EXECUTION = "type.googleapis.com/google.cloud.run.v2.Execution"
OUTCOMES = ("succeeded", "failed", "cancelled", "timed_out", "running")

Json = dict[str, Any]


def ready_condition(ready: bool, message: str = "", when: str = "") -> Json:
    """A `Ready` condition in REST shape, succeeded or failed."""
    condition: Json = {
        "type": "Ready",
        "state": CONDITION_SUCCEEDED if ready else CONDITION_FAILED,
    }
    if message:
        condition["message"] = message
    if not ready:
        condition["reason"] = "ContainerFailed"
    if when:
        condition["lastTransitionTime"] = when
    return condition


class _Handler(LoopbackHandler["FakeCloudRun"]):
    def do_GET(self) -> None:
        """Answer a read call from the fake's state."""
        self._reply("GET")

    def do_POST(self) -> None:
        """Create or run a job, cancel an execution; other writes are refused."""
        self._reply("POST")

    def do_PATCH(self) -> None:
        """Update a job or a service's traffic; other writes are refused."""
        self._reply("PATCH")

    def do_DELETE(self) -> None:
        """Refuse a delete."""
        self._reply("DELETE")

    def _reply(self, method: str) -> None:
        self.send_json(*self.owner._handle(method, self.path, self.read_json()))


class FakeCloudRun(Faults, LoopbackServer):
    """Serves services and revisions as REST-shaped dicts that tests may mutate."""

    def __init__(self) -> None:
        super().__init__(_Handler, "fake Cloud Run")
        self.services: dict[str, Json] = {}
        self.revisions: dict[str, Json] = {}
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, Json]] = []  # (method, path, JSON body) of every write
        self.jobs: dict[str, Json] = {}
        self.executions: dict[str, Json] = {}
        self.operations: dict[str, Json] = {}
        # What `:run` does (every run, until a test changes it): {"outcome": one of OUTCOMES, "message": str,
        # "stdout": str}. "message" replaces the default failure text after "Task …-task0 failed with message: ".
        self.next_execution: Json = {"outcome": "succeeded"}
        self.logging: FakeLogging | None = None  # receives the stdout lines of finished executions
        self._job_errors: list[Json] = []
        self.service_updates: list[Json] = []  # {"service", "updateMask", "etag", "traffic"} of every service PATCH
        self.service_operation_polls = OPERATION_POLLS  # reads of a service update operation before it is done
        self._update_faults: list[Json] = []  # scripted for the next service PATCHes: {"status"} or {"traffic"}
        self._service_errors: list[Json] = []
        self._pending: dict[str, int] = {}  # operation or execution name -> reads left before it finishes
        self._plans: dict[str, Json] = {}

    @staticmethod
    def service_name(project: str, region: str, service: str) -> str:
        """Full resource name of a service."""
        return f"projects/{project}/locations/{region}/services/{service}"

    @classmethod
    def revision_name(cls, project: str, region: str, service: str, rev_id: str) -> str:
        """Full resource name of a revision; a full name passes through unchanged."""
        if rev_id.startswith("projects/"):
            return rev_id
        return f"{cls.service_name(project, region, service)}/revisions/{rev_id}"

    def add_service(self, project: str, region: str, name: str, *, uri: str, latest_created: str, latest_ready: str,
                    traffic: list[Json], ingress: int = 1) -> Json:
        """Store a service; revision arguments may be short ids or full names; ``ingress`` an IngressTraffic number."""
        full = self.service_name(project, region, name)
        service: Json = {
            "name": full,
            "uid": f"uid-{name}",
            "generation": "1",
            "observedGeneration": "1",
            "uri": uri,
            "urls": [uri],
            "latestCreatedRevision": self.revision_name(project, region, name, latest_created),
            "latestReadyRevision": self.revision_name(project, region, name, latest_ready),
            "traffic": [{k: v for k, v in t.items() if k != "uri"} for t in traffic],
            "trafficStatuses": [dict(t) for t in traffic],
            "terminalCondition": ready_condition(True),
            "conditions": [],
            "reconciling": False,
            "ingress": ingress,
            "etag": _etag(),
        }
        with self._lock:
            self.services[full] = service
        return service

    def add_revision(self, project: str, region: str, service: str, rev_id: str, *, image: str,
                     labels: dict[str, str] | None = None, create_time: str, ready: bool = True,
                     ready_message: str = "", container: Json | None = None, **fields: Any) -> Json:
        """Store a revision of a service; ``container`` (env, resources, startupProbe, …) and ``fields`` (scaling,
        timeout, vpcAccess, volumes, maxInstanceRequestConcurrency, …: v2 JSON names) replace the defaults' keys."""
        full = self.revision_name(project, region, service, rev_id)
        short = full.rsplit("/", 1)[1]
        revision: Json = {
            "name": full,
            "uid": f"uid-{short}",
            "generation": "1",
            "labels": dict(labels or {}),
            "createTime": create_time,
            "updateTime": create_time,
            "service": self.service_name(project, region, service),
            "scaling": {"maxInstanceCount": 100},
            "maxInstanceRequestConcurrency": 80,
            "timeout": "300s",
            "serviceAccount": "123456789-compute@developer.gserviceaccount.com",
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [{"name": "http1", "containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
                    **(container or {}),
                }
            ],
            "executionEnvironment": 2,
            "conditions": [
                ready_condition(ready, ready_message, create_time),
                {
                    "type": "ContainerHealthy",
                    "state": CONDITION_SUCCEEDED if ready else CONDITION_FAILED,
                },
            ],
            "observedGeneration": "1",
            "reconciling": False,
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={project}"
            f"&resource=cloud_run_revision/service_name/{service}/revision_name/{short}",
            **fields,
        }
        with self._lock:
            self.revisions[full] = revision
        return revision

    def service(self, project: str, region: str, name: str) -> Json:
        """The stored dict of a service, for tests to mutate."""
        return self.services[self.service_name(project, region, name)]

    def revision(self, project: str, region: str, service: str, rev_id: str) -> Json:
        """The stored dict of a revision, for tests to mutate."""
        return self.revisions[self.revision_name(project, region, service, rev_id)]

    def set_traffic(self, project: str, region: str, name: str, traffic: list[Json]) -> None:
        """Replace a service's traffic split and traffic statuses (a change by someone else: a new etag)."""
        with self._lock:
            service = self.service(project, region, name)
            service["traffic"] = [{k: v for k, v in t.items() if k != "uri"} for t in traffic]
            service["trafficStatuses"] = [dict(t) for t in traffic]
            service["etag"] = _etag()

    def fail_next_update(self, status: int) -> None:
        """Answer the next service PATCH with ``status`` (403, 409, 500, …) before looking at it."""
        with self._lock:
            self._update_faults.append({"status": status})

    def race_next_update(self, traffic: list[Json]) -> None:
        """Just before the next service PATCH lands, someone else sets ``traffic`` (new etag): a stale PATCH gets 409."""
        with self._lock:
            self._update_faults.append({"traffic": traffic})

    def fail_next_service_operation(self, code: int, message: str) -> None:
        """Make the next service update operation end in error (``google.rpc.Status`` code), traffic unchanged."""
        with self._lock:
            self._service_errors.append({"code": code, "message": message})

    def _update_service(self, project: str, region: str, name: str, query: dict[str, str],
                        body: Json) -> tuple[int, Json]:
        full = self.service_name(project, region, name)
        if full not in self.services:
            return self._get(self.services, full, "Service")
        traffic = body.get("traffic", [])
        self.service_updates.append({"service": full, "updateMask": query.get("updateMask", ""),
                                     "etag": body.get("etag", ""), "traffic": copy.deepcopy(traffic)})
        fault = self._update_faults.pop(0) if self._update_faults else {}
        if "status" in fault:
            return fault["status"], error_body(fault["status"], f"injected failure {fault['status']}")
        stored = self.services[full]
        if "traffic" in fault:
            stored.update(traffic=copy.deepcopy(fault["traffic"]), trafficStatuses=copy.deepcopy(fault["traffic"]),
                          etag=_etag())
        if query.get("updateMask") != "traffic":
            return 400, error_body(400, f"the fake updates a service's traffic only (updateMask=traffic), "
                                        f"got updateMask={query.get('updateMask', '')!r}")
        if body.get("etag") and body["etag"] != stored["etag"]:
            return 409, {"error": {"code": 409, "status": "ABORTED", "message": f"etag {body['etag']} does not match "
                                   f"the current etag {stored['etag']} of service {name}"}}
        known = {r["name"].rsplit("/", 1)[1] for r in self.revisions.values() if r["service"] == full}
        unknown = [t["revision"] for t in traffic if t.get("revision") and t["revision"] not in known]
        total = sum(int(t.get("percent", 0)) for t in traffic)
        if unknown or total != 100:
            what = f"revision {unknown[0]} not found" if unknown else f"traffic percents add up to {total}, not 100"
            return 400, error_body(400, f"invalid traffic for service {name}: {what}")
        operation = self._operation(project, region, TYPE_SERVICE, stored, self._service_errors,
                                    self.service_operation_polls)
        if "_error" not in self.operations[operation["name"]]:
            latest = stored["latestReadyRevision"].rsplit("/", 1)[1]
            host = stored["uri"].split("://", 1)[-1]
            # A tag keeps its URL while it stays on the service (a loopback URL a test gave it, too).
            tag_uris = {t["tag"]: t["uri"] for t in stored.get("trafficStatuses", []) if t.get("tag") and t.get("uri")}
            stored.update(traffic=copy.deepcopy(traffic), etag=_etag(), generation=str(int(stored["generation"]) + 1),
                          trafficStatuses=[{**t, **({"revision": latest} if t.get("type") == TRAFFIC_LATEST else {}),
                                            **({"uri": tag_uris.get(t["tag"], f"https://{t['tag']}---{host}")}
                                               if t.get("tag") else {})}
                                           for t in traffic])
            self.operations[operation["name"]]["metadata"] = {"@type": TYPE_SERVICE, **copy.deepcopy(stored)}
        return 200, operation

    def _handle(self, method: str, target: str, body: Json | None = None) -> tuple[int, Json]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, unquote(target)))
            if method != "GET":
                self.bodies.append((method, path, copy.deepcopy(body or {})))
            if (status := self._take_failure()) is not None:
                return status, error_body(status, f"injected failure {status}")
            answer = self._jobs_api(method, path, query, body or {})
            if answer is not None:
                return answer
            if method == "PATCH" and (m := _SERVICE.fullmatch(path)):
                return self._update_service(m.group(1), m.group(2), m.group(3), query, body or {})
            if method != "GET":
                return 405, error_body(405, f"{method} {path} is not supported by the fake")
            if m := _REVISION.fullmatch(path):
                return self._get(self.revisions, self.revision_name(*m.groups()), "Revision")
            if m := _REVISIONS.fullmatch(path):
                parent = self.service_name(m.group(1), m.group(2), m.group(3))
                if parent not in self.services:
                    return 404, error_body(404, f"Resource '{m.group(3)}' of kind 'SERVICE' in region '{m.group(2)}' "
                                                f"in project '{m.group(1)}' does not exist.")
                items = [r for r in self.revisions.values() if r["service"] == parent]
                return 200, _page("revisions", items, query)
            if m := _SERVICE.fullmatch(path):
                name = self.service_name(m.group(1), m.group(2), m.group(3))
                return self._get(self.services, name, "Service")
            if m := _SERVICES.fullmatch(path):
                prefix = self.service_name(m.group(1), m.group(2), "")
                items = [s for name, s in self.services.items() if name.startswith(prefix)]
                return 200, _page("services", items, query)
        return 404, error_body(404, f"Method not found: {path}")

    @staticmethod
    def _get(store: dict[str, Json], name: str, kind: str) -> tuple[int, Json]:
        if name in store:
            return 200, copy.deepcopy(store[name])
        _, project, _, region, *rest = name.split("/")
        return 404, error_body(
            404,
            f"Resource '{rest[-1]}' of kind '{kind.upper()}' in region '{region}' "
            f"in project '{project}' does not exist.",
        )

    # --- Jobs API ---------------------------------------------------------------------------------

    @staticmethod
    def job_name(project: str, region: str, job: str) -> str:
        """Full resource name of a job."""
        return f"projects/{project}/locations/{region}/jobs/{job}"

    def fail_next_job_operation(self, code: int, message: str) -> None:
        """Make the next job create/update operation end in error (``google.rpc.Status`` code)."""
        with self._lock:
            self._job_errors.append({"code": code, "message": message})

    def add_job(self, project: str, region: str, job: str, template: Json) -> Json:
        """Store an existing job (as if created earlier), for the update path; ``template`` is its ExecutionTemplate JSON."""
        with self._lock:
            stored = self._store_job(self.job_name(project, region, job), {"template": template}, generation=1)
        return stored

    def _jobs_api(self, method: str, path: str, query: dict[str, str], body: Json) -> tuple[int, Json] | None:
        """Answer a Jobs, Executions or Operations call; None when the path is not one of theirs."""
        if m := _OPERATION.fullmatch(path):
            if method != "GET":
                return 405, error_body(405, f"{method} {path} is not supported by the fake")
            return self._read_operation(f"projects/{m.group(1)}/locations/{m.group(2)}/operations/{m.group(3)}")
        if m := _EXECUTION.fullmatch(path):
            name = f"{self.job_name(m.group(1), m.group(2), m.group(3))}/executions/{m.group(4)}"
            if name not in self.executions:
                return 404, error_body(404, f"Resource '{m.group(4)}' of kind 'EXECUTION' in region '{m.group(2)}' "
                                            f"in project '{m.group(1)}' does not exist.")
            if m.group(5) and method == "POST":
                return self._cancel(name)
            if method == "GET" and not m.group(5):
                self._advance(name)
                return 200, copy.deepcopy(self.executions[name])
            return 405, error_body(405, f"{method} {path} is not supported by the fake")
        if m := _JOB.fullmatch(path):
            project, region, job, verb = m.groups()
            name = self.job_name(project, region, job)
            if verb and method == "POST":
                return self._run(project, region, job, body)
            if method == "GET" and not verb:
                return self._get(self.jobs, name, "Job")
            if method == "PATCH" and not verb:
                if name not in self.jobs and query.get("allowMissing") != "true":
                    return self._get(self.jobs, name, "Job")
                generation = int(self.jobs[name]["generation"]) + 1 if name in self.jobs else 1
                return 200, self._job_operation(project, region, self._store_job(name, body, generation))
            return 405, error_body(405, f"{method} {path} is not supported by the fake")
        if m := _JOBS.fullmatch(path):
            project, region = m.groups()
            if method == "GET":
                prefix = self.job_name(project, region, "")
                return 200, _page("jobs", [j for n, j in self.jobs.items() if n.startswith(prefix)], query)
            if method != "POST":
                return 405, error_body(405, f"{method} {path} is not supported by the fake")
            job_id = query.get("jobId", "")
            if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", job_id):
                return 400, error_body(400, f"Invalid value for field 'job_id': {job_id!r}. Must be lowercase letters, digits "
                                            "and hyphens, start with a letter, end with a letter or digit, at most 63 characters.")
            name = self.job_name(project, region, job_id)
            if name in self.jobs:
                return 409, error_body(409, f"Resource '{job_id}' already exists.")
            return 200, self._job_operation(project, region, self._store_job(name, body, generation=1))
        return None

    def _store_job(self, name: str, sent: Json, generation: int) -> Json:
        now = rfc3339()
        previous = self.jobs.get(name, {})
        job = copy.deepcopy(sent)
        job.update({
            "name": name,
            "uid": previous.get("uid") or str(uuid.uuid4()),
            "generation": str(generation),
            "createTime": previous.get("createTime", now),
            "updateTime": now,
            "creator": "postdeploy@test.iam.gserviceaccount.com",
            "lastModifier": "postdeploy@test.iam.gserviceaccount.com",
            "launchStage": 3,
            "observedGeneration": str(generation),
            "terminalCondition": {"type": "Ready", "state": CONDITION_SUCCEEDED, "lastTransitionTime": now},
            "conditions": [],
            "executionCount": previous.get("executionCount", 0),
            "reconciling": False,
            "etag": f'"{uuid.uuid4().hex[:16]}"',
        })
        if "latestCreatedExecution" in previous:
            job["latestCreatedExecution"] = previous["latestCreatedExecution"]
        template = job.setdefault("template", {})
        template.setdefault("taskCount", 1)
        template.setdefault("parallelism", 0)
        task = template.setdefault("template", {})
        task.setdefault("maxRetries", 3)  # the API's default when the field is absent
        task.setdefault("timeout", "600s")
        task.setdefault("serviceAccount", "123456789-compute@developer.gserviceaccount.com")
        task.setdefault("executionEnvironment", 2)
        self.jobs[name] = job
        return job

    def _job_operation(self, project: str, region: str, job: Json) -> Json:
        return self._operation(project, region, TYPE_JOB, job, self._job_errors, OPERATION_POLLS)

    def _operation(self, project: str, region: str, kind: str, resource: Json, errors: list[Json], polls: int) -> Json:
        """A pending write operation on ``resource`` that is done after ``polls`` reads; ends in the next of ``errors``."""
        name = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        operation: Json = {"name": name, "metadata": {"@type": kind, **copy.deepcopy(resource)}, "done": False}
        if errors:
            operation["_error"] = errors.pop(0)
        self.operations[name] = operation
        self._pending[name] = polls
        return self._operation_view(name)

    def _operation_view(self, name: str) -> Json:
        """The operation as the API shows it: done with a response or an error once nothing is pending."""
        stored = self.operations[name]
        view = {k: copy.deepcopy(v) for k, v in stored.items() if not k.startswith("_")}
        execution = stored.get("_execution")
        if execution is not None:
            current = self.executions[execution]
            view["metadata"] = {"@type": TYPE_EXECUTION, **copy.deepcopy(current)}
            if "completionTime" in current:
                view["done"] = True
                failure = _execution_failure(current)
                if failure:
                    view["error"] = failure
                else:
                    view["response"] = {"@type": TYPE_EXECUTION, **copy.deepcopy(current)}
            return view
        if name not in self._pending:
            view["done"] = True
            if "_error" in stored:
                view["error"] = stored["_error"]
            else:
                view["response"] = view["metadata"]
        return view

    def _read_operation(self, name: str) -> tuple[int, Json]:
        if name not in self.operations:
            return 404, error_body(404, f"Operation {name} not found.")
        execution = self.operations[name].get("_execution")
        self._advance(execution or name)
        return 200, self._operation_view(name)

    def _advance(self, name: str) -> None:
        """One more read of a pending operation or execution; an execution finishes when none are left."""
        if name not in self._pending:
            return
        if self._pending[name] > 0:
            self._pending[name] -= 1
            return
        del self._pending[name]
        if name in self.executions:
            self._finish(name)

    def _run(self, project: str, region: str, job: str, body: Json) -> tuple[int, Json]:
        name = self.job_name(project, region, job)
        if name not in self.jobs:
            return self._get(self.jobs, name, "Job")
        plan = dict(self.next_execution)
        outcome = plan.get("outcome", "succeeded")
        if outcome not in OUTCOMES:
            return 500, error_body(500, f"the test scripted an unknown outcome {outcome!r}; use one of {OUTCOMES}")
        stored = self.jobs[name]
        template = copy.deepcopy(stored["template"]["template"])
        overrides = body.get("overrides", {})
        for override in overrides.get("containerOverrides", []):
            container = next((c for c in template.get("containers", []) if c.get("name") == override.get("name")),
                             template.get("containers", [{}])[0])
            if override.get("clearArgs"):
                container["args"] = []
            if "args" in override:
                container["args"] = list(override["args"])
            if "env" in override:
                names = {e["name"] for e in override["env"]}
                container["env"] = [e for e in container.get("env", []) if e["name"] not in names] + list(override["env"])
        if "timeout" in overrides:
            template["timeout"] = overrides["timeout"]
        short = f"{job}-{uuid.uuid4().hex[:5]}"
        full = f"{name}/executions/{short}"
        now = rfc3339()
        execution: Json = {
            "name": full,
            "uid": str(uuid.uuid4()),
            "creator": "postdeploy@test.iam.gserviceaccount.com",
            "generation": "1",
            "labels": {"run.googleapis.com/jobUid": stored["uid"]},
            "createTime": now,
            "startTime": now,
            "updateTime": now,
            "launchStage": 3,
            "job": job,
            "parallelism": 1,
            "taskCount": int(overrides.get("taskCount") or stored["template"].get("taskCount", 1)),
            "template": template,
            "reconciling": True,
            "conditions": [
                {"type": "ResourcesAvailable", "state": CONDITION_SUCCEEDED, "lastTransitionTime": now},
                {"type": "Started", "state": CONDITION_SUCCEEDED, "lastTransitionTime": now},
                {"type": "Completed", "state": 2, "lastTransitionTime": now},  # CONDITION_RECONCILING
            ],
            "observedGeneration": "1",
            "runningCount": 1,
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={project}"
                      f"&advancedFilter=resource.type%3D%22cloud_run_job%22%0Alabels.%22run.googleapis.com/execution_name%22%3D%22{short}%22",
            "etag": f'"{uuid.uuid4().hex[:16]}"',
        }
        self.executions[full] = execution
        self._plans[full] = plan
        stored["executionCount"] = int(stored.get("executionCount", 0)) + 1
        stored["latestCreatedExecution"] = {"name": full, "createTime": now, "completionStatus": 3}  # EXECUTION_RUNNING
        if outcome != "running":
            self._pending[full] = EXECUTION_POLLS
        operation = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        self.operations[operation] = {"name": operation, "done": False, "_execution": full}
        return 200, self._operation_view(operation)

    def _finish(self, name: str, outcome: str | None = None) -> None:
        """Complete an execution the way its plan says (or as ``outcome``) and publish its stdout."""
        plan = self._plans.get(name, {})
        outcome = outcome or plan.get("outcome", "succeeded")
        execution = self.executions[name]
        short = name.rsplit("/", 1)[1]
        now = rfc3339()
        execution.update({"completionTime": now, "updateTime": now, "reconciling": False, "runningCount": 0})
        completed: Json = {"type": "Completed", "lastTransitionTime": now}
        task = f"{short}-task0"
        if outcome == "succeeded":
            execution["succeededCount"] = execution["taskCount"]
            completed.update(state=CONDITION_SUCCEEDED, message=plan.get("message") or "Execution completed successfully in 4.32s.")
            status = 1
        elif outcome == "cancelled":
            execution["cancelledCount"] = execution["taskCount"]
            completed.update(state=CONDITION_FAILED, executionReason=EXECUTION_REASON_CANCELLED,
                             message=plan.get("message") or "The execution was cancelled.")
            status = 5
        else:
            execution["failedCount"] = execution["taskCount"]
            default = ("The configured timeout was reached." if outcome == "timed_out"
                       else "The container exited with an error.")
            completed.update(state=CONDITION_FAILED, executionReason=EXECUTION_REASON_NON_ZERO_EXIT_CODE,
                             message=f"Task {task} failed with message: {plan.get('message') or default}")
            status = 2
        execution["conditions"] = [c for c in execution["conditions"] if c["type"] != "Completed"] + [completed]
        job = self.jobs.get(name.split("/executions/", 1)[0])
        if job and job.get("latestCreatedExecution", {}).get("name") == name:
            job["latestCreatedExecution"].update(completionTime=now, completionStatus=status)
        if self.logging is not None and outcome in ("succeeded", "failed"):
            _, project, _, region, _, job_id, *_ = name.split("/")
            for line in str(plan.get("stdout", "")).splitlines():
                self.logging.add_entry(
                    project=project, log="run.googleapis.com/stdout", text=line, resource_type="cloud_run_job",
                    resource_labels={"project_id": project, "job_name": job_id, "location": region},
                    labels={"run.googleapis.com/execution_name": short, "run.googleapis.com/task_index": "0",
                            "run.googleapis.com/task_attempt": "0", "instanceId": f"00{uuid.uuid4().hex}"},
                )

    def _cancel(self, name: str) -> tuple[int, Json]:
        self._pending.pop(name, None)
        if "completionTime" not in self.executions[name]:
            self._finish(name, "cancelled")
        _, project, _, region, *_ = name.split("/")
        operation = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        self.operations[operation] = {"name": operation, "done": False, "_execution": name}
        return 200, self._operation_view(operation)


def _etag() -> str:
    return f'"{uuid.uuid4().hex[:16]}"'


def _page(key: str, items: list[Json], query: dict[str, str]) -> Json:
    """One page of a list response, paged by `pageSize` and an offset `pageToken`."""
    start = int(query.get("pageToken") or 0)
    size = int(query.get("pageSize") or 0) or len(items) or 1
    body: Json = {key: copy.deepcopy(items[start : start + size])}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return body


def _execution_failure(execution: Json) -> Json | None:
    """The ``google.rpc.Status`` a finished run operation carries when its execution did not succeed."""
    if execution.get("succeededCount"):
        return None
    completed: Json = next((c for c in execution.get("conditions", []) if c["type"] == "Completed"), {})
    code = 1 if execution.get("cancelledCount") else 2  # CANCELLED, UNKNOWN
    return {"code": code, "message": completed.get("message", "Execution failed.")}
