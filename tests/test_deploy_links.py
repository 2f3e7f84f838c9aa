"""deploy/deploy.sh and the config's links to the outside: signed report links (signed_url_ttl) get the IAM Credentials
API and the function's account signing as itself, and Slack routes (notify) get read access to their webhooks'
secrets, each exactly when the config uses them (--dry-run), and a real run stops at a route whose secret is missing."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.test_deploy import EXAMPLE, FAKE_GCLOUD, FN_SA, MEMBER, README, P, bindings, commands, deploy

REGION = "us-central1"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
ACCESSOR = "roles/secretmanager.secretAccessor"
SELF_GRANT = (f"gcloud iam service-accounts add-iam-policy-binding {FN_SA} --project={P} {MEMBER} "
              f"--role={TOKEN_CREATOR} --condition=None --format=none")
ROUTES = """notify:
  - webhook_secret: projects/acme-prod/secrets/slack-deploys/versions/latest
    services: [orders]
  - webhook_secret: projects/ops-hub/secrets/oncall-webhook/versions/3
    verdicts: [FAIL]
  - webhook_secret: projects/acme-prod/secrets/slack-deploys/versions/2
    services: ["web-*"]
    verdicts: [WARN, FAIL]
"""
CONFIGS = {
    "ttl in one service": "version: 1\nservices:\n  orders:\n    signed_url_ttl: 24h\n  web:\n    on_fail: rollback\n",
    "ttl in defaults": "version: 1\ndefaults:\n  signed_url_ttl: 7d\n",
    "ttl switched off again": "version: 1\nservices:\n  orders:\n    signed_url_ttl: ''\n",
    "routes": f"version: 1\n{ROUTES}",
    "routes and ttl": f"version: 1\ndefaults:\n  signed_url_ttl: 1h\n{ROUTES}",
    "ttl and follow-ups": "version: 1\ndefaults:\n  signed_url_ttl: 24h\n  follow_up: [1h]\n",
    "neither": "version: 1\ndefaults:\n  verdict_topic: projects/acme-prod/topics/verdicts\n",
}


def plan(tmp_path: Path, config_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "postdeploy.yaml"
    path.write_text(CONFIGS[config_name], encoding="utf-8")
    return plan_of(path, *args)


def plan_of(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--dry-run", "--config", str(path),
                  *(args or ("--no-slack",)))
    assert done.returncode == 0, done.stderr
    return done


def enabled_apis(cmds: list[str]) -> list[str]:
    [enable] = [c for c in cmds if c.startswith("gcloud services enable ")]
    return [w for w in enable.split()[3:] if not w.startswith("--")]


def function_grants(cmds: list[str], role: str) -> list[str]:
    """The commands that bind ``role`` for the function's own account."""
    return [c for c in cmds if f" {MEMBER} " in c and f" --role={role} " in c]


# --- signed_url_ttl ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_name", ["ttl in one service", "ttl in defaults"])
def test_signed_links_enable_iam_credentials_and_let_the_account_sign_as_itself_only(tmp_path: Path,
                                                                                    config_name: str) -> None:
    done = plan(tmp_path, config_name, "--no-slack", "--service", "orders", "--service", "web")
    cmds = commands(done)
    assert "iamcredentials.googleapis.com" in enabled_apis(cmds)
    assert function_grants(cmds, TOKEN_CREATOR) == [SELF_GRANT]
    # besides it, only the Pub/Sub agent's binding on the same account: nothing on the project or another account
    assert [(on, what) for on, what, role in bindings(cmds) if role == TOKEN_CREATOR] == [
        ("iam service-accounts", FN_SA)] * 2
    assert f"signed report links: {FN_SA} may sign as itself" in done.stderr
    # granted before the function that signs is deployed
    main = next(c for c in cmds if c.startswith("gcloud functions deploy postdeploy "))
    assert cmds.index(SELF_GRANT) < cmds.index(main)


@pytest.mark.parametrize("config_name", ["neither", "ttl switched off again", "routes"])
def test_without_signed_links_no_iam_credentials_and_no_signing_as_itself(tmp_path: Path, config_name: str) -> None:
    done = plan(tmp_path, config_name, "--no-slack", "--service", "orders")
    cmds = commands(done)
    assert "iamcredentials" not in done.stdout
    assert function_grants(cmds, TOKEN_CREATOR) == []
    assert [c for c in cmds if f"--role={TOKEN_CREATOR}" in c] == [
        c for c in cmds if "gcp-sa-pubsub" in c and f"--role={TOKEN_CREATOR}" in c]
    assert "signed report links" not in done.stderr


def test_signing_and_scheduling_each_bind_once_on_the_accounts_own_policy(tmp_path: Path) -> None:
    cmds = commands(plan(tmp_path, "ttl and follow-ups", "--no-slack", "--service", "orders"))
    on_itself = [role for on, what, role in bindings(cmds) if (on, what) == ("iam service-accounts", FN_SA)]
    assert sorted(on_itself) == [TOKEN_CREATOR, TOKEN_CREATOR, "roles/iam.serviceAccountUser"]  # one is Pub/Sub's
    assert function_grants(cmds, TOKEN_CREATOR) == [SELF_GRANT]
    assert len(function_grants(cmds, "roles/iam.serviceAccountUser")) == 1
    apis = enabled_apis(cmds)
    assert {"iamcredentials.googleapis.com", "cloudtasks.googleapis.com"} <= set(apis) and len(apis) == len(set(apis))


# --- notify routes --------------------------------------------------------------------------------------------------


def accessor_grants(cmds: list[str]) -> list[tuple[str, str]]:
    """(secret, project) of every secretAccessor binding for the function's account."""
    out = []
    for cmd in function_grants(cmds, ACCESSOR):
        words = cmd.split()
        assert words[:4] == ["gcloud", "secrets", "add-iam-policy-binding", words[3]], cmd
        out.append((words[3], next(w.split("=", 1)[1] for w in words if w.startswith("--project="))))
    return out


@pytest.mark.parametrize("config_name", ["routes", "routes and ttl"])
def test_routes_may_read_each_named_secret_once_and_no_other(tmp_path: Path, config_name: str) -> None:
    done = plan(tmp_path, config_name, "--no-slack")
    cmds = commands(done)
    # slack-deploys is named twice (two versions): one binding, on the secret, in the secret's own project
    assert accessor_grants(cmds) == [("slack-deploys", "acme-prod"), ("oncall-webhook", "ops-hub")]
    assert "secretmanager.googleapis.com" in enabled_apis(cmds)
    for secret, project in accessor_grants(cmds):
        describe = f"gcloud secrets describe {secret} --project={project} --format=none"
        grant = next(c for c in cmds if c.startswith(f"gcloud secrets add-iam-policy-binding {secret} "))
        assert cmds.index(describe) < cmds.index(grant)
    # read only: nothing is created in or written to the routes' secrets
    assert not [c for c in cmds if c.startswith(("gcloud secrets create", "gcloud secrets versions"))]
    [main] = [c for c in cmds if c.startswith("gcloud functions deploy postdeploy ")]
    assert "SLACK_WEBHOOK" not in main
    assert "notify: roles/secretmanager.secretAccessor on secret oncall-webhook in ops-hub only" in done.stderr


@pytest.mark.parametrize(("config_name", "slack", "granted"), [
    ("neither", ["--no-slack"], []),
    ("ttl in defaults", ["--no-slack"], []),
    ("neither", ["--slack-secret", "slack-webhook"], [("slack-webhook", P)]),
    ("routes", ["--slack-secret", "projects/acme-prod/secrets/slack-deploys"], [
        ("slack-deploys", P), ("oncall-webhook", "ops-hub")]),
], ids=["no routes, no slack", "signing only", "no routes, the slack secret", "a route on the slack secret"])
def test_secret_access_is_the_slack_secret_and_the_routes_secrets_each_once(
        tmp_path: Path, config_name: str, slack: list[str], granted: list[tuple[str, str]]) -> None:
    cmds = commands(plan(tmp_path, config_name, *slack))
    assert accessor_grants(cmds) == granted
    assert [c for c in cmds if f"--role={ACCESSOR}" in c] == function_grants(cmds, ACCESSOR)


# --- the example config ------------------------------------------------------------------------------------------


def test_the_shipped_example_neither_signs_nor_reads_route_secrets() -> None:
    cmds = commands(plan_of(EXAMPLE, "--no-slack", "--service", "orders"))
    assert function_grants(cmds, TOKEN_CREATOR) == [] and accessor_grants(cmds) == []
    assert "iamcredentials" not in "\n".join(cmds)


def test_the_examples_commented_signing_and_routes_uncommented_grant_both(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    ttl = lines.index("  # signed_url_ttl: 24h")
    start = lines.index("# notify:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("#   "))
    assert ttl < start < end < lines.index("services:"), "both examples come before the services: section"
    lines[ttl] = "  signed_url_ttl: 24h"
    lines[start:end] = [line.removeprefix("# ") for line in lines[start:end]]
    path = tmp_path / "example.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmds = commands(plan_of(path, "--no-slack", "--service", "orders"))
    assert function_grants(cmds, TOKEN_CREATOR) == [SELF_GRANT]
    assert accessor_grants(cmds) == [("slack-deploys", "my-project"), ("slack-oncall", "my-project")]


def test_the_readme_lists_both_grants_in_the_permission_table() -> None:
    section = README.read_text(encoding="utf-8").split("## Permissions", 1)[1].split("\n## ", 1)[0]
    rows = {row.split("|")[1].strip(): row for row in section.splitlines() if row.count("|") == 5}  # what it grants
    assert "`roles/iam.serviceAccountTokenCreator`" in rows["signed report links (`signed_url_ttl`)"]
    assert "`roles/secretmanager.secretAccessor`" in rows["Slack routes (`notify:`)"]
    assert "serviceAccountTokenCreator" not in section.split("role to add", 1)[1]  # no longer left to you


# --- a real run, against a stand-in gcloud ----------------------------------------------------------------------------


def test_a_real_run_stops_before_deploying_when_a_routes_secret_is_missing(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(FAKE_GCLOUD.replace('case "$*" in\n', 'case "$*" in\n  "secrets describe oncall-webhook "*) exit 1 ;;\n',
                                        1), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gcloud.log"
    config = tmp_path / "postdeploy.yaml"
    config.write_text(CONFIGS["routes"], encoding="utf-8")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "FAKE_GCLOUD_LOG": str(log),
           "FAKE_RUNTIME_SA": ""}
    done = deploy("--project", P, "--region", REGION, "--bucket", "acme-reports", "--no-slack", "--config", str(config),
                  env=env)
    calls = log.read_text(encoding="utf-8").splitlines()
    assert done.returncode == 1
    assert ("deploy.sh: error: expected secret 'oncall-webhook' in project ops-hub (a notify route's webhook_secret), "
            "got nothing or no access to it") in done.stderr
    assert f"secrets add-iam-policy-binding slack-deploys --project={P} {MEMBER} --role={ACCESSOR} --condition=None " \
           "--format=none" in calls
    assert not [c for c in calls if c.startswith(("functions deploy ", "secrets add-iam-policy-binding oncall-webhook"))]
