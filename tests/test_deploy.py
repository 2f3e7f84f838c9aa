"""deploy/deploy.sh --dry-run: the commands it would run, without gcloud credentials or network."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--project", "acme-prod", "--region", "us-central1", "--bucket", "acme-reports", "--slack-secret", "slack-webhook",
        "--dry-run"]
SA = "serviceAccount:postdeploy-fn@acme-prod.iam.gserviceaccount.com"


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "deploy" / "deploy.sh"), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def commands(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]


def test_without_runtime_accounts_service_account_user_is_project_wide_and_said_so() -> None:
    done = deploy(*BASE)
    assert done.returncode == 0, done.stderr
    acting = [c for c in commands(done) if "roles/iam.serviceAccountUser" in c]
    assert acting == [f"gcloud projects add-iam-policy-binding acme-prod --member={SA} --role=roles/iam.serviceAccountUser "
                      "--condition=None --format=none"]
    assert "pass --runtime-sa EMAIL" in done.stderr  # notes go to stderr, commands to stdout


def test_runtime_accounts_narrow_service_account_user_to_them() -> None:
    runtime = ["orders@acme-prod.iam.gserviceaccount.com", "123456789-compute@developer.gserviceaccount.com"]
    done = deploy(*BASE, "--runtime-sa", runtime[0], f"--runtime-sa={runtime[1]}")
    assert done.returncode == 0, done.stderr
    acting = [c for c in commands(done) if "roles/iam.serviceAccountUser" in c]
    assert acting == [f"gcloud iam service-accounts add-iam-policy-binding {email} --project=acme-prod --member={SA} "
                      "--role=roles/iam.serviceAccountUser --condition=None --format=none" for email in runtime]
    assert not any(c.startswith("gcloud projects add-iam-policy-binding") and "serviceAccountUser" in c for c in commands(done))
    # the other roles are unchanged
    assert any("--role=roles/run.developer" in c for c in commands(done))


def test_a_runtime_account_that_is_not_an_email_is_a_usage_error() -> None:
    done = deploy(*BASE, "--runtime-sa", "orders")
    assert done.returncode == 2
    assert "expected --runtime-sa to be a service account email" in done.stderr and "got 'orders'" in done.stderr
    assert not commands(done)
