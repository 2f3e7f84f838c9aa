"""The HTTP function Cloud Tasks calls (entry.scheduled), in process: what it answers for every request it cannot
run, so Cloud Tasks retries only what may work later. The runs themselves are in tests/test_rollout_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Request
from werkzeug.test import EnvironBuilder

from core.config import Config
from core.errors import Busy, PostdeployError, Transient
from entry import function, scheduled
from report.document import SCHEMA
from report.store import LocalStore
from tests.core.helpers import CONFIG, adapters

BUILD, S = "b-1", "orders"
STEP = {"kind": "step", "build_id": BUILD, "service": S, "step": 1}
ROLLOUT = {"steps": [10, 100], "wait_s": 60.0, "step": 1,
           "base": [{"type": "REVISION", "revision": "orders-1-old", "percent": 100, "tag": ""}]}


def request(body: Any = None, method: str = "POST", raw: bytes | None = None) -> Request:
    data = raw if raw is not None else json.dumps(body).encode()
    return Request(EnvironBuilder(method=method, data=data, content_type="application/json").get_environ())


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """The function's adapters and config as cached at its first request: a local store, the quick config."""
    local = LocalStore(str(tmp_path))
    monkeypatch.setattr(function, "_adapters", adapters(local))
    monkeypatch.setattr(function, "_config", CONFIG)
    return local


def report(*actions: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "verdict": "PASS", "score": 100.0, "finished_at": "2026-12-01T10:00:00Z",
            "target": {"service": S, "project": "acme-prod", "region": "us-central1", "revision": "orders-2-new",
                       "previous_revision": "orders-1-old"},
            "build": {"id": BUILD}, "actions": list(actions)}


def put(store: LocalStore, folder: str, data: dict[str, Any]) -> None:
    store.write(f"{folder}/report.json", json.dumps(data))


def promote(outcome: str, step: int) -> dict[str, Any]:
    return {"kind": "promote", "outcome": outcome, "detail": f"the move: {outcome}", "rollout": {**ROLLOUT, "step": step}}


@pytest.mark.parametrize(("body", "found"), [
    pytest.param({**STEP, "kind": "deploy"}, 'kind: expected "step" or "follow-up", found "deploy"', id="kind"),
    pytest.param({k: v for k, v in STEP.items() if k != "kind"}, 'kind: expected "step" or "follow-up", found null',
                 id="no-kind"),
    pytest.param({**STEP, "step": 0}, "step: expected a whole number from 1 to 100, found 0", id="step-0"),
    pytest.param({**STEP, "step": 101}, "step: expected a whole number from 1 to 100, found 101", id="step-101"),
    pytest.param({**STEP, "step": True}, "step: expected a whole number from 1 to 100, found true", id="step-bool"),
    pytest.param({**STEP, "step": "2"}, 'step: expected a whole number from 1 to 100, found "2"', id="step-text"),
    pytest.param({"kind": "follow-up", "build_id": BUILD, "service": S, "after": "1x"},
                 'after: expected a delay such as 1h or 24h, found "1x"', id="after"),
    pytest.param({"kind": "follow-up", "build_id": BUILD, "service": S, "after": "8d"},
                 'after: expected a delay such as 1h or 24h, found "8d"', id="after-too-long"),
    pytest.param({**STEP, "service": "Orders!"}, "service: expected a Cloud Run service name", id="service"),
    pytest.param({**STEP, "revision": "x"}, 'body: expected a JSON object {"kind": "step"', id="unknown-field"),
    pytest.param([STEP], "body: expected a JSON object", id="array"),
])
def test_a_request_that_can_never_run_is_dropped_with_200(store: LocalStore, body: Any, found: str) -> None:
    answer = scheduled.answer(request(body))
    assert answer[1] == 200  # Cloud Tasks retries anything else
    assert answer[0]["dropped"].startswith(found), answer[0]
    assert list(Path(store.root).iterdir()) == []


def test_a_get_and_a_body_that_is_not_json_are_dropped(store: LocalStore) -> None:
    got = scheduled.answer(request(STEP, method="GET"))
    assert got[1] == 200 and got[0]["field"] == "method"
    garbled = scheduled.answer(request(raw=b"{kind: step"))
    assert garbled[1] == 200 and garbled[0]["dropped"].startswith("body: expected a JSON object")


def test_before_the_first_report_is_stored_it_asks_to_come_again(store: LocalStore) -> None:
    answer = scheduled.answer(request(STEP))
    assert answer[1:] == (503, {"Retry-After": "60"})
    assert answer[0]["error"].startswith(f"build_id: expected the stored report of build {BUILD} for service {S}")


def test_a_step_of_a_report_that_started_no_rollout_is_dropped(store: LocalStore) -> None:
    put(store, f"{S}/{BUILD}", report({"kind": "rollback", "outcome": "skipped", "detail": "x"}))
    answer = scheduled.answer(request(STEP))
    assert answer[1] == 200
    assert answer[0]["dropped"] == (f"build_id: expected a report of build {BUILD} that started a promotion in steps, "
                                    "found no promote action with a rollout")


def test_a_step_beyond_the_rollout_is_dropped(store: LocalStore) -> None:
    put(store, f"{S}/{BUILD}", report(promote("done", 1)))
    answer = scheduled.answer(request({**STEP, "step": 3}))
    assert answer[1] == 200 and answer[0]["dropped"] == "step: expected a step of that rollout, 1 to 2, found 3"


def test_a_step_whose_move_was_not_made_has_nothing_to_check(store: LocalStore) -> None:
    put(store, f"{S}/{BUILD}", report(promote("refused", 1)))
    answer = scheduled.answer(request(STEP))
    assert answer == ({"status": "nothing to check", "check": "step-1",
                       "reason": "the move to step 1 was not made (refused: the move: refused)"}, 200)
    assert not (Path(store.root) / S / BUILD / "step-1").exists()


def test_a_later_step_waits_for_the_report_of_the_step_before(store: LocalStore) -> None:
    put(store, f"{S}/{BUILD}", report(promote("done", 1)))
    waiting = scheduled.answer(request({**STEP, "step": 2}))
    assert waiting[1] == 503 and "the report of step 1 at" in waiting[0]["error"]

    put(store, f"{S}/{BUILD}/step-1", report({**promote("held", 1), "detail": "WARN: holds"}))  # step 1 held
    held = scheduled.answer(request({**STEP, "step": 2}))
    assert held == ({"status": "nothing to check", "check": "step-2",
                     "reason": "the move to step 2 was not made (no move to it was planned)"}, 200)


@pytest.mark.parametrize(("fault", "status"), [
    pytest.param(Busy("another delivery is validating"), 503, id="busy"),
    pytest.param(Transient("Cloud Run API unavailable"), 503, id="outage"),
    pytest.param(PostdeployError("something else"), 500, id="other"),
])
def test_faults_answer_what_cloud_tasks_should_do(store: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                                  fault: Exception, status: int) -> None:
    def fail(*args: Any) -> Any:
        raise fault

    monkeypatch.setattr(scheduled, "_run", fail)
    answer = scheduled.answer(request(STEP))
    assert answer[1] == status
    assert answer[2:] == (({"Retry-After": "60"},) if status == 503 else ())
    assert answer[0] == {"error": str(fault)}


def test_an_invalid_config_runs_the_check_on_the_defaults_and_says_why(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "postdeploy.yaml"
    bad.write_text("version: 1\ndefaults:\n  steps: [50, 10]\n", encoding="utf-8")
    monkeypatch.setenv("POSTDEPLOY_CONFIG", str(bad))
    monkeypatch.setattr(function, "_config", None)  # as a new instance: the config is read at the first request
    settings, problem = scheduled._settings("orders")
    assert settings == Config.default().for_service("orders")
    assert problem.startswith(f"postdeploy config {bad} is invalid: ") and "defaults.steps: expected increasing" in problem
