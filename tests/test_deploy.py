"""deploy/deploy.sh: the commands it would run (--dry-run, no gcloud credentials or network), and a real run
against a stand-in gcloud that records what it was asked to do."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "deploy.sh"
EXAMPLE = ROOT / "deploy" / "postdeploy.example.yaml"
P = "acme-prod"
FN_SA = f"postdeploy-fn@{P}.iam.gserviceaccount.com"
MEMBER = f"--member=serviceAccount:{FN_SA}"
AGENT = 'serviceAccount:service-"$PROJECT_NUMBER"@gcp-sa-pubsub.iam.gserviceaccount.com'
BASE = ["--project", P, "--region", "us-central1", "--bucket", "acme-reports", "--slack-secret", "slack-webhook",
        "--dry-run"]
FUNCTION_ROLE = f"projects/{P}/roles/postdeployFunction"
REPORTS_ROLE = f"projects/{P}/roles/postdeployReports"
PROBE_JOB_ROLE = f"projects/{P}/roles/postdeployProbeJob"
RUN_READ = "run.services.get,run.revisions.get,run.revisions.list"
PROBE_JOB_PERMISSIONS = ("run.jobs.get,run.jobs.update,run.jobs.run,run.jobs.runWithOverrides,run.executions.get,"
                         "run.executions.cancel")

# Configs for each combination of what the permissions depend on.
CONFIGS = {
    "probe copies identity": "version: 1\ndefaults:\n  checks:\n    imports: {modules: [app.main]}\n",
    "probe without copy_env": "version: 1\ndefaults:\n  checks:\n    imports: {modules: [app.main], copy_env: false}\n",
    "no probe": "version: 1\n",
    "no logs, no metrics": ("version: 1\ndefaults:\n  checks:\n    logs: {enabled: false}\n"
                            "    metrics: {enabled: false}\n"),
    "probe copies identity and rolls back": ("version: 1\ndefaults:\n  on_fail: rollback\n  checks:\n"
                                             "    imports: {modules: [app.main]}\n"),
    "verdict topics": ("version: 1\ndefaults:\n  verdict_topic: projects/acme-prod/topics/postdeploy-verdicts\n"
                       "services:\n  orders:\n    verdict_topic: projects/ci-hub/topics/verdicts\n"),
}
SLACK = {"secret": ["--slack-secret", "slack-webhook"], "none": ["--no-slack"]}
INVOKER = {"services named": ["--service", "orders", "--service", "europe-west1/api"],
           "all services": ["--service", "orders", "--invoker-all-services"],
           "nothing named": []}


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False,
                          env=env)


def commands(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]


def config(tmp_path: Path, name: str) -> str:
    path = tmp_path / "postdeploy.yaml"
    path.write_text(CONFIGS[name], encoding="utf-8")
    return str(path)


def plan(tmp_path: Path, config_name: str, *args: str) -> list[str]:
    done = deploy("--project", P, "--region", "us-central1", "--bucket", "acme-reports", "--dry-run",
                  "--config", config(tmp_path, config_name), *args)
    assert done.returncode == 0, done.stderr
    return commands(done)


def bindings(cmds: list[str]) -> list[tuple[str, str, str]]:
    """(what the binding is on, the resource, the role) of every add-iam-policy-binding command."""
    out = []
    for cmd in cmds:
        words = shlex.split(cmd)
        if "add-iam-policy-binding" in words or "add-invoker-policy-binding" in words:
            verb = next(i for i, w in enumerate(words) if w.endswith("-policy-binding"))
            role = next((w.split("=", 1)[1] for w in words if w.startswith("--role=")), "roles/run.invoker")
            out.append((" ".join(words[1:verb]), words[verb + 1], role))
    return out


def created_role(cmds: list[str], role_id: str) -> str | None:
    """The --permissions of the custom role the plan creates, or None."""
    for cmd in cmds:
        words = shlex.split(cmd)
        if words[:4] == ["gcloud", "iam", "roles", "create"] and words[4] == role_id:
            return next(w.split("=", 1)[1] for w in words if w.startswith("--permissions="))
    return None


# --- every combination: what must never be granted, and what must always be set ----------------------------


@pytest.mark.parametrize("slack", sorted(SLACK))
@pytest.mark.parametrize("invoker", sorted(INVOKER))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_no_combination_grants_project_wide_act_as_or_run_developer(tmp_path: Path, config_name: str, invoker: str,
                                                                     slack: str) -> None:
    cmds = plan(tmp_path, config_name, *INVOKER[invoker], *SLACK[slack])
    text = "\n".join(cmds)
    granted = bindings(cmds)

    assert "run.developer" not in text and "roles/run.admin" not in text and "roles/editor" not in text
    assert "iam.serviceAccounts.actAs" not in text  # in no custom role either
    project_roles = {role for on, _, role in granted if on == "projects"}
    assert project_roles == {FUNCTION_ROLE} | ({"roles/run.servicesInvoker"} if invoker == "all services" else set())
    # acting as an account is granted on that account only, and only when a probe job copies an identity
    acting = [(on, resource) for on, resource, role in granted if role == "roles/iam.serviceAccountUser"]
    named = [s.split("/")[-1] for s in INVOKER[invoker][1::2]]  # the --service values
    probing = named if config_name.startswith("probe copies identity") else []
    assert acting == [("iam service-accounts", f"$RUNTIME_SA_{i}") for i, _ in enumerate(probing, 1)]
    assert all(on == "run jobs" for on, _, role in granted if role == PROBE_JOB_ROLE)
    assert [r for on, r, _ in granted if on == "run jobs"] == [f"postdeploy-probe-{name}" for name in probing]
    # objects in the report bucket only; the Slack secret only
    assert [(r, role) for on, r, role in granted if on == "storage buckets"] == [("gs://acme-reports", REPORTS_ROLE)]
    secrets = [(r, role) for on, r, role in granted if on == "secrets"]
    assert secrets == ([("slack-webhook", "roles/secretmanager.secretAccessor")] if slack == "secret" else [])
    deploys = [c for c in cmds if c.startswith("gcloud functions deploy ")]
    assert len(deploys) == 1 and " --max-instances=10 " in deploys[0]
    assert ("POSTDEPLOY_SLACK_WEBHOOK_SECRET=" in deploys[0]) == (slack == "secret")
    update = [c for c in cmds if c.startswith("gcloud pubsub subscriptions update ")]
    assert len(update) == 1 and " --dead-letter-topic=" in update[0] and " --max-delivery-attempts=10 " in update[0]


# --- the imports probe ---------------------------------------------------------------------------------------


def test_a_probe_that_copies_the_identity_gets_its_one_job_and_acts_as_the_services_own_account(tmp_path: Path) -> None:
    cmds = plan(tmp_path, "probe copies identity", "--slack-secret", "slack-webhook", "--service", "orders")
    start = cmds.index("gcloud run services describe orders --region=us-central1 --project=acme-prod --format=none")
    where = "--region=us-central1 --project=acme-prod"
    assert cmds[start:start + 8] == [
        f"gcloud run services describe orders {where} --format=none",
        f"gcloud run services add-iam-policy-binding orders {where} {MEMBER} --role=roles/run.invoker "
        "--condition=None --format=none",
        f"RUNTIME_SA_1=$(gcloud run services describe orders {where} "
        "'--format=value(spec.template.spec.serviceAccountName)')",
        f'gcloud iam service-accounts add-iam-policy-binding "$RUNTIME_SA_1" --project=acme-prod {MEMBER} '
        "--role=roles/iam.serviceAccountUser --condition=None --format=none",
        f"IMAGE_1=$(gcloud run services describe orders {where} "
        "'--format=value(spec.template.spec.containers[0].image)')",
        f"gcloud run jobs describe postdeploy-probe-orders {where}",
        f'gcloud run jobs create postdeploy-probe-orders {where} --image="$IMAGE_1" --service-account="$RUNTIME_SA_1" '
        "--labels=managed-by=postdeploy --tasks=1 --max-retries=0 --format=none",
        f"gcloud run jobs add-iam-policy-binding postdeploy-probe-orders {where} {MEMBER} --role={PROBE_JOB_ROLE} "
        "--format=none",
    ]
    assert created_role(cmds, "postdeployProbeJob") == PROBE_JOB_PERMISSIONS
    assert not any(" jobs create" in c for c in cmds if "postdeploy-probe-orders" not in c)


def test_the_job_name_and_the_probe_follow_the_shipped_config_per_service(tmp_path: Path) -> None:
    # The example config configures imports for `orders` only; `web-frontend` matches "web-*", which has none.
    done = deploy(*BASE, "--service", "orders", "--service", "web-frontend", "--service", "orders-api")
    assert done.returncode == 0, done.stderr
    jobs = [c for c in commands(done) if c.startswith("gcloud run jobs create ")]
    assert [shlex.split(c)[4] for c in jobs] == ["postdeploy-probe-orders"]
    assert "service web-frontend in us-central1: roles/run.invoker on it; no imports probe configured" in done.stderr


def test_without_copy_env_no_job_is_prepared_and_no_account_may_be_acted_as(tmp_path: Path) -> None:
    done = deploy("--project", P, "--region", "us-central1", "--bucket", "acme-reports", "--dry-run", "--no-slack",
                  "--config", config(tmp_path, "probe without copy_env"), "--service", "orders",
                  "--runtime-sa", f"orders@{P}.iam.gserviceaccount.com")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    assert not [c for c in cmds if "serviceAccountUser" in c or " run jobs " in c]
    assert created_role(cmds, "postdeployProbeJob") is None
    assert created_role(cmds, "postdeployFunction") == f"{RUN_READ},logging.logEntries.list,monitoring.timeSeries.list"
    assert "checks.imports.copy_env is false" in done.stderr and "no job is prepared" in done.stderr
    assert "--runtime-sa not granted" in done.stderr


@pytest.mark.parametrize(("config_name", "services", "permissions"), [
    ("probe copies identity", ["--service", "orders"],
     f"{RUN_READ},logging.logEntries.list,monitoring.timeSeries.list,run.operations.get"),
    ("probe copies identity", [], f"{RUN_READ},logging.logEntries.list,monitoring.timeSeries.list"),
    ("no probe", ["--service", "orders"], f"{RUN_READ},logging.logEntries.list,monitoring.timeSeries.list"),
    ("no logs, no metrics", ["--service", "orders"], RUN_READ),
], ids=["probe job", "probe but no service named", "no probe", "no logs or metrics"])
def test_the_function_role_holds_only_what_the_enabled_checks_call(tmp_path: Path, config_name: str,
                                                                   services: list[str], permissions: str) -> None:
    cmds = plan(tmp_path, config_name, "--no-slack", *services)
    assert created_role(cmds, "postdeployFunction") == permissions
    assert created_role(cmds, "postdeployReports") == "storage.objects.create,storage.objects.get,storage.objects.delete"
    assert (f"gcloud projects add-iam-policy-binding acme-prod {MEMBER} --role={FUNCTION_ROLE} --condition=None "
            "--format=none") in cmds


@pytest.mark.parametrize(("config_name", "granted"), [("probe copies identity", True), ("no probe", False)])
def test_runtime_accounts_given_by_hand_are_acted_as_only_when_a_probe_job_copies_an_identity(
        tmp_path: Path, config_name: str, granted: bool) -> None:
    runtime = [f"orders@{P}.iam.gserviceaccount.com", "123456789-compute@developer.gserviceaccount.com"]
    cmds = plan(tmp_path, config_name, "--no-slack", "--service", "orders", "--runtime-sa", runtime[0],
                f"--runtime-sa={runtime[1]}")
    acting = [c for c in cmds if "roles/iam.serviceAccountUser" in c and '"$RUNTIME_SA_1"' not in c]
    assert acting == ([f"gcloud iam service-accounts add-iam-policy-binding {email} --project=acme-prod {MEMBER} "
                       "--role=roles/iam.serviceAccountUser --condition=None --format=none" for email in runtime]
                      if granted else [])


# --- invoking services -----------------------------------------------------------------------------------------


def test_run_invoker_is_granted_on_the_named_services_only(tmp_path: Path) -> None:
    cmds = plan(tmp_path, "no probe", "--no-slack", *INVOKER["services named"])
    invokers = [(on, r) for on, r, role in bindings(cmds) if role == "roles/run.invoker"]
    assert invokers == [("run services", "orders"), ("run services", "api"), ("functions", "postdeploy")]
    assert ("gcloud run services add-iam-policy-binding api --region=europe-west1 --project=acme-prod "
            f"{MEMBER} --role=roles/run.invoker --condition=None --format=none") in cmds
    assert "roles/run.servicesInvoker" not in "\n".join(cmds)


def test_invoker_on_every_service_only_with_the_flag_that_says_so(tmp_path: Path) -> None:
    done = deploy(*BASE, "--service", "orders", "--invoker-all-services")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    assert (f"gcloud projects add-iam-policy-binding acme-prod {MEMBER} --role=roles/run.servicesInvoker "
            "--condition=None --format=none") in cmds
    assert not [c for c in cmds if c.startswith("gcloud run services add-iam-policy-binding")]
    assert "may call every Cloud Run service in acme-prod" in done.stderr


def test_without_named_services_nothing_is_invoked_but_the_function_itself(tmp_path: Path) -> None:
    done = deploy(*BASE)
    assert done.returncode == 0, done.stderr
    assert [(on, r) for on, r, role in bindings(commands(done)) if "invoker" in role.lower()] == [
        ("functions", "postdeploy")]
    assert "no --service given" in done.stderr


def test_the_trigger_may_invoke_the_function_alone() -> None:
    done = deploy(*BASE)
    assert done.returncode == 0, done.stderr
    assert (f"gcloud functions add-invoker-policy-binding postdeploy --region=us-central1 --project=acme-prod {MEMBER} "
            "--format=none") in commands(done)


# --- storage, Slack, delivery ---------------------------------------------------------------------------------


def test_an_artifacts_bucket_gets_object_viewer_on_that_bucket_only() -> None:
    done = deploy(*BASE, "--artifacts-bucket", "gs://acme-ci/", "--artifacts-bucket", "acme-junit")
    assert done.returncode == 0, done.stderr
    assert [(r, role) for on, r, role in bindings(commands(done)) if on == "storage buckets"] == [
        ("gs://acme-reports", REPORTS_ROLE), ("gs://acme-ci", "roles/storage.objectViewer"),
        ("gs://acme-junit", "roles/storage.objectViewer")]


def test_no_slack_stores_no_secret_and_sets_no_secret_variable() -> None:
    done = deploy("--project", P, "--region", "us-central1", "--bucket", "acme-reports", "--no-slack", "--dry-run")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    assert not [c for c in cmds if " secrets " in c]
    deploy_cmd = next(c for c in cmds if c.startswith("gcloud functions deploy "))
    assert deploy_cmd.endswith(" --set-env-vars=POSTDEPLOY_REPORTS=gs://acme-reports/reports")


def test_the_subscription_dead_letters_after_the_given_attempts_and_the_function_has_max_instances() -> None:
    done = deploy(*BASE, "--max-delivery-attempts", "20", "--max-instances=3")
    assert done.returncode == 0, done.stderr
    cmds = commands(done)
    start = cmds.index("TRIGGER=$(gcloud functions describe postdeploy --v2 --region=us-central1 --project=acme-prod "
                       "'--format=value(eventTrigger.trigger)')")
    assert cmds[start + 1:start + 9] == [
        'SUBSCRIPTION=$(gcloud eventarc triggers describe "$TRIGGER" \'--format=value(transport.pubsub.subscription)\')',
        "gcloud pubsub topics describe postdeploy-dead-letter --project=acme-prod",
        "gcloud pubsub topics create postdeploy-dead-letter --project=acme-prod",
        "gcloud pubsub subscriptions describe postdeploy-dead-letter --project=acme-prod",
        "gcloud pubsub subscriptions create postdeploy-dead-letter --project=acme-prod --topic=postdeploy-dead-letter "
        "--message-retention-duration=7d --expiration-period=never",
        f"gcloud pubsub topics add-iam-policy-binding postdeploy-dead-letter --project=acme-prod --member={AGENT} "
        "--role=roles/pubsub.publisher --format=none",
        f'gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --member={AGENT} '
        "--role=roles/pubsub.subscriber --format=none",
        'gcloud pubsub subscriptions update "$SUBSCRIPTION" --dead-letter-topic=projects/acme-prod/topics/'
        "postdeploy-dead-letter --max-delivery-attempts=20 --min-retry-delay=10s --max-retry-delay=600s --format=none",
    ]
    assert " --max-instances=3 " in next(c for c in cmds if c.startswith("gcloud functions deploy "))


# --- the README says what the script does ---------------------------------------------------------------------

README = ROOT / "deploy" / "README.md"


def test_the_readme_permission_table_lists_exactly_what_each_custom_role_holds(tmp_path: Path) -> None:
    cmds = plan(tmp_path, "probe copies identity and rolls back", "--no-slack", "--service", "orders")
    section = README.read_text(encoding="utf-8").split("## Permissions", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) == 6 and "postdeploy" in cells[2]:
            role = re.search(r"`(postdeploy\w+)`", cells[2]).group(1)  # type: ignore[union-attr]
            listed.setdefault(role, set()).update(re.findall(r"`([a-z]+\.[a-zA-Z]+\.[a-zA-Z]+)`", cells[2]))
    assert listed.keys() == {"postdeployFunction", "postdeployProbeJob", "postdeployReports", "postdeployRollback"}
    for role, permissions in listed.items():
        assert set((created_role(cmds, role) or "").split(",")) == permissions, role


def test_the_readmes_dry_run_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^## Dry run\n+```bash\n(.*?)^```", text, re.M | re.S)
    assert block, "deploy/README.md has no bash block under ## Dry run"
    args = shlex.split(block.group(1).replace("\\\n", " "))
    assert args[0] == "deploy/deploy.sh" and "--dry-run" in args
    done = deploy(*args[1:])
    assert done.returncode == 0, done.stderr
    assert "'****'" in done.stdout and "hooks.slack.com" not in done.stdout


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--runtime-sa", "orders"], "expected --runtime-sa to be a service account email (NAME@PROJECT.iam.gserviceaccount.com "
                                 "or PROJECT_NUMBER-compute@developer.gserviceaccount.com), got 'orders'"),
    (["--service", "Orders"], "expected --service to be a Cloud Run service name (lowercase letters, digits, hyphens; "
                              "starting with a letter) or REGION/NAME, got 'Orders'"),
    (["--service", "eu/orders"], "expected --service REGION/NAME to start with a region such as us-central1, "
                                 "got 'eu/orders'"),
    (["--service", "orders", "--service", "us-central1/orders"],
     "--service us-central1/orders given twice; expected each service once"),
    (["--service"], "expected --service NAME or REGION/NAME, got nothing"),
    (["--max-instances", "0"], "expected --max-instances to be a whole number from 1 to 1000, got '0'"),
    (["--max-instances=ten"], "expected --max-instances to be a whole number from 1 to 1000, got 'ten'"),
    (["--max-delivery-attempts", "4"], "expected --max-delivery-attempts to be a whole number from 5 to 100, got '4'"),
    (["--max-delivery-attempts", "101"],
     "expected --max-delivery-attempts to be a whole number from 5 to 100, got '101'"),
    (["--artifacts-bucket", "gs://acme-ci/results/x"], "expected --artifacts-bucket to be a bucket name (3-222 lowercase "
                                                       "letters, digits, - _ .; no path), got 'gs://acme-ci/results/x'"),
    (["--invoker-all-services=yes"], "--invoker-all-services takes no value, got 'yes'"),
    (["--no-slack"], "expected --no-slack on its own, got it with --slack-webhook or --slack-secret"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("-") else None)
def test_bad_values_are_usage_errors_that_say_what_was_expected_and_found(args: list[str], message: str) -> None:
    done = deploy(*BASE, *args)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(f"deploy.sh: error: {message}")
    assert not commands(done)


def test_an_invalid_config_stops_before_any_command(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\ndefaults:\n  checks:\n    imports: {modulez: [app]}\n", encoding="utf-8")
    done = deploy(*BASE, "--config", str(path), "--service", "orders")
    assert done.returncode == 2
    assert "defaults.checks.imports.modulez: unknown key" in done.stderr
    assert f"deploy.sh: error: the config {path} is invalid" in done.stderr
    assert not commands(done)


# --- a real run, against a stand-in gcloud ------------------------------------------------------------------------

FAKE_GCLOUD = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_GCLOUD_LOG"
case "$*" in
  "auth list "*) echo deployer@example.com ;;
  "projects describe "*) echo 123456789 ;;
  "iam roles describe "*) exit 1 ;;
  "run services describe missing "*) exit 1 ;;
  "run services describe "*serviceAccountName*) printf '%s\n' "$FAKE_RUNTIME_SA" ;;
  "run services describe "*image*) echo us-docker.pkg.dev/acme-prod/app/orders:1 ;;
  "run jobs describe "*|"pubsub topics describe postdeploy-"*|"pubsub subscriptions describe "*) exit 1 ;;
  "functions describe "*) echo projects/acme-prod/locations/us-central1/triggers/postdeploy-123 ;;
  "eventarc triggers describe "*) echo projects/acme-prod/subscriptions/eventarc-us-central1-postdeploy-123-sub-456 ;;
  "projects get-iam-policy "*) printf '%s\n' roles/run.developer roles/logging.viewer projects/acme-prod/roles/postdeployFunction ;;
  "storage buckets get-iam-policy "*) echo "roles/storage.objectAdmin,serviceAccount:postdeploy-fn@acme-prod.iam.gserviceaccount.com" ;;
esac
exit 0
"""


def real_run(tmp_path: Path, runtime_sa: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(FAKE_GCLOUD, encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gcloud.log"
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "FAKE_GCLOUD_LOG": str(log),
           "FAKE_RUNTIME_SA": runtime_sa}
    done = deploy("--project", P, "--region", "us-central1", "--bucket", "acme-reports", "--no-slack",
                  "--config", str(EXAMPLE), "--service", "orders", "--service", "missing", *args, env=env)
    return done, log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_a_real_run_acts_as_the_services_own_account_and_revokes_the_broad_roles_of_earlier_versions(
        tmp_path: Path) -> None:
    done, calls = real_run(tmp_path, f"orders-runtime@{P}.iam.gserviceaccount.com")
    assert done.returncode == 0, done.stderr
    acting = [c for c in calls if "roles/iam.serviceAccountUser" in c]
    assert acting == [f"iam service-accounts add-iam-policy-binding orders-runtime@{P}.iam.gserviceaccount.com "
                      f"--project=acme-prod {MEMBER} --role=roles/iam.serviceAccountUser --condition=None --format=none"]
    assert ("run jobs create postdeploy-probe-orders --region=us-central1 --project=acme-prod "
            "--image=us-docker.pkg.dev/acme-prod/app/orders:1 "
            f"--service-account=orders-runtime@{P}.iam.gserviceaccount.com --labels=managed-by=postdeploy --tasks=1 "
            "--max-retries=0 --format=none") in calls
    assert [c for c in calls if "remove-iam-policy-binding" in c] == [
        f"projects remove-iam-policy-binding acme-prod {MEMBER} --role=roles/run.developer --condition=None --format=none",
        f"projects remove-iam-policy-binding acme-prod {MEMBER} --role=roles/logging.viewer --condition=None --format=none",
        f"storage buckets remove-iam-policy-binding gs://acme-reports {MEMBER} --role=roles/storage.objectAdmin "
        "--format=none",
    ]
    # the revocations come last, after the trigger may invoke the function on its own
    assert calls.index(next(c for c in calls if c.startswith("functions add-invoker-policy-binding"))) < calls.index(
        next(c for c in calls if "remove-iam-policy-binding" in c))
    assert ("pubsub subscriptions update projects/acme-prod/subscriptions/eventarc-us-central1-postdeploy-123-sub-456 "
            "--dead-letter-topic=projects/acme-prod/topics/postdeploy-dead-letter --max-delivery-attempts=10 "
            "--min-retry-delay=10s --max-retry-delay=600s --format=none") in calls
    assert "service missing not found in us-central1: nothing granted for it" in done.stderr
    assert not [c for c in calls if c.startswith("run services add-iam-policy-binding missing")]


@pytest.mark.parametrize("runtime_sa", ["", "123456789-compute@developer.gserviceaccount.com"],
                         ids=["no account set", "the default account"])
def test_a_real_run_never_acts_as_the_compute_default_account_unless_told_to(tmp_path: Path, runtime_sa: str) -> None:
    done, calls = real_run(tmp_path, runtime_sa)
    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if "serviceAccountUser" in c or c.startswith("run jobs ")]
    assert ("service orders runs as the Compute Engine default account 123456789-compute@developer.gserviceaccount.com"
            in done.stderr)


def test_a_real_run_acts_as_the_compute_default_account_when_given_with_runtime_sa(tmp_path: Path) -> None:
    compute = "123456789-compute@developer.gserviceaccount.com"
    done, calls = real_run(tmp_path, "", "--runtime-sa", compute)
    assert done.returncode == 0, done.stderr
    assert [c.split()[3] for c in calls if "roles/iam.serviceAccountUser" in c] == [compute]
    assert any(c.startswith("run jobs create postdeploy-probe-orders ") and f"--service-account={compute} " in c
               for c in calls)


def test_the_function_may_publish_to_the_configured_verdict_topics_only(tmp_path: Path) -> None:
    cmds = plan(tmp_path, "verdict topics", "--no-slack")
    publishing = [(on, what) for on, what, role in bindings(cmds) if role == "roles/pubsub.publisher" and MEMBER in
                  next(c for c in cmds if f"add-iam-policy-binding {what} " in c)]
    assert publishing == [("pubsub topics", "postdeploy-verdicts"), ("pubsub topics", "verdicts")]
    assert f"gcloud pubsub topics add-iam-policy-binding verdicts --project=ci-hub {MEMBER} --role=roles/pubsub.publisher " \
           "--format=none" in cmds
    # created only in the deploy's own project, and only when missing
    assert "gcloud pubsub topics create postdeploy-verdicts --project=acme-prod" in cmds
    assert not any(c.startswith("gcloud pubsub topics create verdicts") for c in cmds)
    without = plan(tmp_path, "no probe", "--no-slack")
    assert not any(MEMBER in c and "roles/pubsub.publisher" in c for c in without)


def test_only_services_that_roll_back_may_have_their_traffic_updated(tmp_path: Path) -> None:
    path = tmp_path / "rollback.yaml"
    path.write_text("version: 1\nservices:\n  orders:\n    on_fail: rollback\n", encoding="utf-8")
    done = deploy(*BASE, "--config", str(path), "--service", "orders", "--service", "api")
    assert done.returncode == 0, done.stderr
    rollback = [(on, what) for on, what, role in bindings(commands(done)) if role.endswith("/postdeployRollback")]
    assert rollback == [("run services", "orders")]
    assert created_role(commands(done), "postdeployRollback") == "run.services.update"
    assert not any("run.services.update" in c for c in plan(tmp_path, "no probe", "--service", "orders"))


def test_the_rerun_function_is_deployed_only_for_named_callers_and_requires_authentication(tmp_path: Path) -> None:
    alice, ci = "user:alice@example.com", f"serviceAccount:ci@{P}.iam.gserviceaccount.com"
    cmds = plan(tmp_path, "no probe", "--no-slack", "--rerun-invoker", alice, f"--rerun-invoker={ci}")
    [rerun] = [c for c in cmds if c.startswith("gcloud functions deploy postdeploy-rerun ")]
    assert " --entry-point=rerun --trigger-http --no-allow-unauthenticated " in rerun
    assert f" --service-account={FN_SA} " in rerun and "--allow-unauthenticated" not in rerun.replace("--no-allow", "")
    assert [(what, role) for on, what, role in bindings(cmds) if what == "postdeploy-rerun"] == [
        ("postdeploy-rerun", "roles/run.invoker")] * 2
    assert [c.split("--member=")[1].split()[0] for c in cmds if "add-invoker-policy-binding postdeploy-rerun" in c] == [alice, ci]
    without = plan(tmp_path, "no probe", "--no-slack")
    assert not any("postdeploy-rerun" in c for c in without)


@pytest.mark.parametrize("member", ["alice", "user:alice", "allUsers", "domain:example.com"])
def test_a_rerun_caller_must_be_one_principal(member: str) -> None:
    done = deploy(*BASE, "--rerun-invoker", member)
    assert done.returncode == 2 and not commands(done)
    assert f"expected --rerun-invoker to be user:EMAIL, serviceAccount:EMAIL or group:EMAIL, got '{member}'" in done.stderr
