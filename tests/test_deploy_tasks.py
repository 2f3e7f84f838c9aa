"""deploy/deploy.sh and Cloud Tasks: the queue, NAME-tasks and their grants appear exactly when the config promotes in
steps or follows up (--dry-run), and a real run against a stand-in gcloud learns NAME-tasks' URL before deploying NAME."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.test_deploy import (
    EXAMPLE,
    FAKE_GCLOUD,
    FN_SA,
    FUNCTION_ROLE,
    MEMBER,
    README,
    SCRIPT,
    P,
    bindings,
    commands,
    created_role,
    deploy,
)

REGION = "us-central1"
QUEUE_PATH = f"projects/{P}/locations/{REGION}/queues/postdeploy"
TASKS_VARS = ("POSTDEPLOY_TASKS_QUEUE", "POSTDEPLOY_TASKS_URL", "POSTDEPLOY_TASKS_SERVICE_ACCOUNT")
ROLLBACK_ROLE = f"projects/{P}/roles/postdeployRollback"
CONFIGS = {
    "promote": ("version: 1\nservices:\n  orders:\n    on_pass: promote\n    steps: [10, 50, 100]\n"
                "    step_wait_s: 600\n"),
    "follow-up only": "version: 1\ndefaults:\n  follow_up: [1h]\n",
    "rollback only": "version: 1\nservices:\n  orders:\n    on_fail: rollback\n",
    "nothing scheduled": "version: 1\n",
}


def plan(tmp_path: Path, config_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "postdeploy.yaml"
    path.write_text(CONFIGS[config_name], encoding="utf-8")
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--dry-run",
                  "--config", str(path), *args)
    assert done.returncode == 0, done.stderr
    return done


def env_of(cmd: str) -> dict[str, str]:
    """The --set-env-vars of a deploy command, as a dict."""
    value = next(w.split("=", 1)[1] for w in shlex.split(cmd) if w.startswith("--set-env-vars="))
    return dict(item.split("=", 1) for item in value.split(","))


def deploys_of(cmds: list[str], name: str) -> list[str]:
    return [c for c in cmds if c.startswith(f"gcloud functions deploy {name} ")]


@pytest.mark.parametrize("config_name", ["promote", "follow-up only"])
def test_scheduling_sets_up_the_queue_and_the_tasks_function_before_the_function(tmp_path: Path,
                                                                                config_name: str) -> None:
    cmds = commands(plan(tmp_path, config_name, "--service", "orders"))
    enable = next(c for c in cmds if c.startswith("gcloud services enable "))
    assert " cloudtasks.googleapis.com " in f"{enable} "
    where = f"--location={REGION} --project={P}"
    assert f"gcloud tasks queues create postdeploy {where} --max-attempts=8 --min-backoff=30s --max-backoff=300s" in cmds
    tasks = deploys_of(cmds, "postdeploy-tasks")
    assert len(tasks) == 2  # a dry run assumes it is new: once to learn its URL, then with it
    for cmd in tasks:
        assert " --entry-point=scheduled --trigger-http --no-allow-unauthenticated " in cmd
        assert f" --service-account={FN_SA} " in cmd and " --source=\"$STAGING\" " in cmd
        assert " --runtime=python312 " in cmd and " --timeout=540s --memory=256Mi --max-instances=10 " in cmd
    # sources/tasks.py refuses a queue without a URL: the first deploy sets none of the three
    assert not set(TASKS_VARS) & env_of(tasks[0]).keys()
    read_url = (f"TASKS_URL=$(gcloud functions describe postdeploy-tasks --v2 --region={REGION} --project={P} "
                "'--format=value(serviceConfig.uri)')")
    [main] = deploys_of(cmds, "postdeploy")
    assert cmds.index(tasks[0]) < cmds.index(read_url) < cmds.index(tasks[1]) < cmds.index(main)
    wanted = {"POSTDEPLOY_TASKS_QUEUE": QUEUE_PATH, "POSTDEPLOY_TASKS_URL": "$TASKS_URL",
              "POSTDEPLOY_TASKS_SERVICE_ACCOUNT": FN_SA}
    for cmd in (tasks[1], main):
        env = env_of(cmd)
        assert {k: env.get(k) for k in TASKS_VARS} == wanted
        assert env["POSTDEPLOY_REPORTS"] == "gs://acme-reports/reports"


@pytest.mark.parametrize("config_name", ["promote", "follow-up only"])
def test_scheduling_grants_the_queue_the_tasks_function_and_acting_as_itself_only(tmp_path: Path,
                                                                                 config_name: str) -> None:
    cmds = commands(plan(tmp_path, config_name, "--service", "orders"))
    granted = bindings(cmds)
    assert ("tasks queues", "postdeploy", "roles/cloudtasks.enqueuer") in granted
    assert ("functions", "postdeploy-tasks", "roles/run.invoker") in granted
    assert ("iam service-accounts", FN_SA, "roles/iam.serviceAccountUser") in granted
    # gcloud tasks queues add-iam-policy-binding has no --condition; on the queue in the function's region only
    assert (f"gcloud tasks queues add-iam-policy-binding postdeploy --location={REGION} --project={P} {MEMBER} "
            "--role=roles/cloudtasks.enqueuer --format=none") in cmds
    assert (f"gcloud functions add-invoker-policy-binding postdeploy-tasks --region={REGION} --project={P} {MEMBER} "
            "--format=none") in cmds
    assert (f"gcloud iam service-accounts add-iam-policy-binding {FN_SA} --project={P} {MEMBER} "
            "--role=roles/iam.serviceAccountUser --condition=None --format=none") in cmds
    assert {role for on, _, role in granted if on == "projects"} == {FUNCTION_ROLE}
    assert not [c for c in cmds if "cloudtasks." in c and " projects add-iam-policy-binding " in f" {c}"]
    acting = [r for on, r, role in granted if role == "roles/iam.serviceAccountUser"]
    assert acting == [FN_SA]


@pytest.mark.parametrize("config_name", ["rollback only", "nothing scheduled"])
def test_without_promotion_or_follow_ups_nothing_of_cloud_tasks_is_set_up(tmp_path: Path, config_name: str) -> None:
    done = plan(tmp_path, config_name, "--service", "orders", "--rerun-invoker", "user:alice@example.com")
    text = done.stdout
    for absent in ("cloudtasks", "tasks queues", "postdeploy-tasks", "POSTDEPLOY_TASKS_", "TASKS_URL",
                   "serviceAccountUser"):
        assert absent not in text, absent
    assert "Cloud Tasks" not in done.stderr


def test_the_shipped_example_schedules_nothing() -> None:
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--dry-run",
                  "--config", str(EXAMPLE), "--service", "orders")
    assert done.returncode == 0, done.stderr
    assert "tasks" not in done.stdout.replace("--tasks=1", "")


def test_the_tasks_queue_flag_names_the_queue_in_the_functions_region(tmp_path: Path) -> None:
    cmds = commands(plan(tmp_path, "follow-up only", "--tasks-queue", "deploy-steps"))
    assert any(c.startswith(f"gcloud tasks queues create deploy-steps --location={REGION} ") for c in cmds)
    assert ("tasks queues", "deploy-steps", "roles/cloudtasks.enqueuer") in bindings(cmds)
    [main] = deploys_of(cmds, "postdeploy")
    assert env_of(main)["POSTDEPLOY_TASKS_QUEUE"] == f"projects/{P}/locations/{REGION}/queues/deploy-steps"
    assert not any(" postdeploy " in f"{c} " and "tasks queues" in c for c in cmds)


def test_a_tasks_queue_without_anything_scheduled_is_not_used_and_says_so(tmp_path: Path) -> None:
    done = plan(tmp_path, "nothing scheduled", "--tasks-queue=deploy-steps")
    assert "deploy-steps" not in done.stdout
    assert "--tasks-queue deploy-steps not used: no config section has on_pass: promote or follow_up" in done.stderr


@pytest.mark.parametrize("queue", ["deploy_steps", "a" * 101, "queue/x"])
def test_a_bad_queue_name_is_a_usage_error(tmp_path: Path, queue: str) -> None:
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--dry-run",
                  "--tasks-queue", queue)
    assert done.returncode == 2 and not commands(done)
    assert done.stderr.strip().endswith(
        f"deploy.sh: error: expected --tasks-queue to be a queue name (1-100 letters, digits or hyphens), got '{queue}'")


def test_promoted_services_may_have_their_traffic_updated_like_those_that_roll_back(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text("version: 1\nservices:\n  orders:\n    on_pass: promote\n  api:\n    on_fail: rollback\n"
                    "  web:\n    follow_up: [24h]\n", encoding="utf-8")
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--dry-run",
                  "--config", str(path), "--service", "orders", "--service", "api", "--service", "web")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    assert [(on, what) for on, what, role in bindings(cmds) if role == ROLLBACK_ROLE] == [
        ("run services", "orders"), ("run services", "api")]
    assert created_role(cmds, "postdeployRollback") == "run.services.update"
    # waiting on the traffic update's operation
    assert (created_role(cmds, "postdeployFunction") or "").endswith(",run.operations.get")
    assert "service orders: on_pass: promote, so the function may update this service's traffic" in done.stderr
    only_follow_up = commands(plan(tmp_path, "follow-up only", "--service", "orders"))
    assert created_role(only_follow_up, "postdeployRollback") is None
    assert not [r for _, r, role in bindings(only_follow_up) if role == ROLLBACK_ROLE]


def test_the_examples_promotion_block_uncommented_promotes_the_named_service(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("  # checkout:")
    block = [lines[start]] + [line for line in lines[start + 1:] if line.startswith("  #   ")]
    assert len(block) == len(lines) - start, "the promotion example must be the last lines of the example config"
    assert any("--no-traffic --tag candidate" in line for line in lines[:start])
    uncommented = [line.replace("  # ", "  ", 1) for line in block]
    path = tmp_path / "example.yaml"
    path.write_text("\n".join(lines[:start] + uncommented) + "\n", encoding="utf-8")
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--dry-run",
                  "--config", str(path), "--service", "checkout")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    assert ("run services", "checkout", ROLLBACK_ROLE) in bindings(cmds)
    assert len(deploys_of(cmds, "postdeploy-tasks")) == 2


# --- a real run, against a stand-in gcloud ------------------------------------------------------------------------

TASKS_URL = "https://postdeploy-tasks-abc123-uc.a.run.app"
TASKS_CASES = """  "functions describe postdeploy-tasks "*serviceConfig.uri*) printf '%s\\n' "$FAKE_TASKS_URL" ;;
  "functions describe postdeploy-tasks "*) exit "$FAKE_TASKS_FUNCTION_MISSING" ;;
"""


def real_run(tmp_path: Path, missing: bool, url: str = TASKS_URL) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(FAKE_GCLOUD.replace('case "$*" in\n', 'case "$*" in\n' + TASKS_CASES, 1), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gcloud.log"
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIGS["promote"], encoding="utf-8")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "FAKE_GCLOUD_LOG": str(log),
           "FAKE_RUNTIME_SA": "", "FAKE_TASKS_FUNCTION_MISSING": "1" if missing else "0", "FAKE_TASKS_URL": url}
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--config",
                  str(config), "--service", "orders", env=env)
    return done, log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.mark.parametrize("missing", [True, False], ids=["new tasks function", "existing tasks function"])
def test_a_real_run_deploys_the_function_with_the_url_it_read_back(tmp_path: Path, missing: bool) -> None:
    done, calls = real_run(tmp_path, missing)
    assert done.returncode == 0, done.stderr
    tasks = [c for c in calls if c.startswith("functions deploy postdeploy-tasks ")]
    [main] = [c for c in calls if c.startswith("functions deploy postdeploy ")]
    assert len(tasks) == (2 if missing else 1)
    if missing:
        assert "POSTDEPLOY_TASKS_" not in tasks[0]
    for cmd in (tasks[-1], main):
        assert env_of(cmd)["POSTDEPLOY_TASKS_URL"] == TASKS_URL
    assert calls.index(tasks[-1]) < calls.index(main)
    # the queue exists here: its retries are brought to the bounded ones, and it is not created again
    assert (f"tasks queues update postdeploy --location={REGION} --project={P} --max-attempts=8 --min-backoff=30s "
            "--max-backoff=300s --format=none") in calls
    assert not [c for c in calls if c.startswith("tasks queues create ")]


def test_a_real_run_stops_before_the_function_when_the_tasks_function_has_no_url(tmp_path: Path) -> None:
    done, calls = real_run(tmp_path, missing=False, url="")
    assert done.returncode == 1
    assert "deploy.sh: error: expected postdeploy-tasks to have an https:// URL (serviceConfig.uri), got ''" in done.stderr
    assert not [c for c in calls if c.startswith("functions deploy ")]


def test_every_option_the_script_takes_is_in_its_help_and_the_readme() -> None:
    script = SCRIPT.read_text(encoding="utf-8")
    parsing = script.split("parse_args() {", 1)[1].split("\n}\n", 1)[0]
    taken = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)(?=[ |)\\\n])", parsing)) - {"--help"}
    assert "--tasks-queue" in taken
    usage = deploy("--help").stdout
    readme = README.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n## ", 1)[0]
    assert sorted(f for f in taken if not re.search(rf"^\s+{f}\b", usage, re.M)) == [], "missing from --help"
    assert sorted(f for f in taken if f"| `{f}" not in readme) == [], "missing from the README's options"
