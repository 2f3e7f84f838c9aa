"""core.detect: which builds are ours, and which Cloud Run services each one deployed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.detect import deploy_intents, is_candidate
from core.events import decode
from core.model import Build, DeployIntent, Step
from tests.servers.data import load_build

CLI_IMAGE = "gcr.io/google.com/cloudsdktool/cloud-sdk:slim"


def recorded(name: str) -> Build:
    """A recorded Build from tests/data/builds, decoded the way the function decodes it."""
    return decode(load_build(name))


def build_with(*steps: Step, substitutions: dict[str, str] | None = None, images: tuple[str, ...] = ()) -> Build:
    return Build(id="b-1", status="SUCCESS", project_id="acme-prod", steps=steps,
                 substitutions=substitutions or {}, images=images)


def intent(service: str, region: str = "", *, project: str = "acme-prod", image: str = "", no_traffic: bool = False,
           tag: str = "", revision_suffix: str = "") -> DeployIntent:
    """The expected intent; ``source`` is descriptive and left out of comparisons."""
    return DeployIntent(service=service, region=region, project=project, image=image, no_traffic=no_traffic,
                        tag=tag, revision_suffix=revision_suffix)


def found(build: Build) -> list[DeployIntent]:
    return [replace(i, source="") for i in deploy_intents(build)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("console_cd_trigger", [intent(
            "orders", "us-central1",
            image="us-central1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/orders/orders:9d2b1c0e4f",
        )], id="console-cd-trigger-services-update"),
        pytest.param("gcloud_entrypoint", [intent(
            "api", "europe-west1", project="acme-staging",
            image="europe-west1-docker.pkg.dev/acme-staging/apps/api:a1b2c3d", revision_suffix="a1b2c3d",
        )], id="gcloud-entrypoint-region-space-short-sha-expanded"),
        pytest.param("bash_two_services", [
            intent("web", "us-east1", image="gcr.io/acme-prod/web:1.8.0", no_traffic=True, tag="canary"),
            intent("worker", "us-east1", image="gcr.io/acme-prod/worker:1.8.0"),
        ], id="bash-script-two-services-comment-ignored"),
        pytest.param("cloud_function", [], id="cloud-function-build"),
        pytest.param("docker_only", [], id="docker-only"),
    ],
)
def test_recorded_builds(name: str, expected: list[DeployIntent]) -> None:
    assert found(recorded(name)) == expected


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "deploy", "svc", "--image=gcr.io/p/svc:1", "--region=us-west2"))),
            [intent("svc", "us-west2", image="gcr.io/p/svc:1")], id="region-equals-form",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "deploy", "svc", "--region", "us-west2", "--revision-suffix", "${SHORT_SHA}")),
                       substitutions={"SHORT_SHA": "abc1234"}),
            [intent("svc", "us-west2", revision_suffix="abc1234")], id="braced-substitution-expanded",
        ),
        pytest.param(
            build_with(Step(name="gcr.io/cloud-builders/gcloud",
                            args=("run", "deploy", "svc", "--image", "gcr.io/p/svc:2", "--region", "asia-east1"))),
            [intent("svc", "asia-east1", image="gcr.io/p/svc:2")], id="gcloud-step-name-no-entrypoint",
        ),
        pytest.param(
            build_with(Step(name="gcr.io/google.com/cloudsdktool/cloud-sdk",
                            args=("gcloud", "run", "deploy", "svc", "--region", "us-east4", "--image=gcr.io/p/svc:4"))),
            [intent("svc", "us-east4", image="gcr.io/p/svc:4")], id="cloud-sdk-image-gcloud-as-first-arg",
        ),
        pytest.param(
            build_with(Step(name="alpine", entrypoint="sh",
                            args=("-c", "gcloud run deploy svc --region=europe-west4 --image=gcr.io/p/svc:3"))),
            [intent("svc", "europe-west4", image="gcr.io/p/svc:3")], id="sh-c",
        ),
        pytest.param(
            build_with(Step(name="alpine", entrypoint="bash",
                            args=("-c", 'IMAGE=gcr.io/p/svc:5; gcloud run deploy svc --region=us-west1 --image "$IMAGE"'))),
            [intent("svc", "us-west1")], id="shell-variable-image-is-unknown-not-wrong",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="bash", args=("-c", (
                "# gcloud run deploy commented-out --region r0\n"
                "echo start; gcloud run deploy a --region r1 --no-traffic --tag canary\n"
                "gcloud beta run deploy b --region=r1 --quiet  # then b\n"
            )))),
            [intent("a", "r1", no_traffic=True, tag="canary"), intent("b", "r1")], id="bash-c-comment-lines-ignored",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "deploy", "svc", "--platform=gke", "--cluster=c1", "--region=us-east1"))),
            [], id="platform-gke-equals",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud", args=("run", "deploy", "svc", "--platform", "gke"))),
            [], id="platform-gke-space",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "deploy", "svc", "--platform", "managed", "--region", "r1"))),
            [intent("svc", "r1")], id="platform-managed",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "deploy", "svc", "--project", "other-proj", "--region", "r1"))),
            [intent("svc", "r1", project="other-proj")], id="explicit-project",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud", args=("run", "deploy", "svc")),
                       substitutions={"_DEPLOY_REGION": "us-east4"}),
            [intent("svc", "us-east4")], id="region-from-_DEPLOY_REGION",
        ),
        pytest.param(
            build_with(Step(name="gcr.io/cloud-builders/docker", args=("build", "-t", "gcr.io/p/svc:4", ".")),
                       substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "us-west1"}, images=("gcr.io/p/svc:4",)),
            [intent("svc", "us-west1", image="gcr.io/p/svc:4")], id="substitutions-only",
        ),
        pytest.param(
            build_with(substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "us-west1", "_PLATFORM": "gke"}),
            [], id="substitutions-only-gke",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud",
                            args=("run", "services", "update-traffic", "svc", "--to-latest", "--region", "r1"))),
            [], id="update-traffic-is-not-a-deploy",
        ),
        pytest.param(
            build_with(Step(name=CLI_IMAGE, entrypoint="gcloud", args=("run", "jobs", "deploy", "job", "--region", "r1"))),
            [], id="cloud-run-job",
        ),
        pytest.param(
            build_with(Step(name="python:3.12", entrypoint="bash", args=("-c", "pip install . && pytest -q"))),
            [], id="tests-only",
        ),
    ],
)
def test_inline_steps(build: Build, expected: list[DeployIntent]) -> None:
    assert found(build) == expected


def test_substitutions_do_not_duplicate_a_detected_step() -> None:
    build = build_with(
        Step(name=CLI_IMAGE, entrypoint="gcloud", args=("run", "deploy", "svc", "--region", "r1", "--image", "gcr.io/p/svc:5")),
        substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "r1"},
        images=("gcr.io/p/svc:5",),
    )

    assert [i.source for i in deploy_intents(build)] == ["gcloud run deploy"]


@pytest.mark.parametrize(
    ("status", "candidate"),
    [
        pytest.param("SUCCESS", True, id="SUCCESS"),
        pytest.param("QUEUED", False, id="QUEUED"),
        pytest.param("WORKING", False, id="WORKING"),
        pytest.param("FAILURE", False, id="FAILURE"),
        pytest.param("TIMEOUT", False, id="TIMEOUT"),
        pytest.param("CANCELLED", False, id="CANCELLED"),
        pytest.param("INTERNAL_ERROR", False, id="INTERNAL_ERROR"),
        pytest.param("STATUS_UNKNOWN", False, id="STATUS_UNKNOWN"),
    ],
)
def test_only_successful_builds_are_candidates(status: str, candidate: bool) -> None:
    build = replace(recorded("console_cd_trigger"), status=status)

    assert is_candidate(build) is candidate


@pytest.mark.parametrize(
    ("number", "candidate"),
    [pytest.param(3, True, id="enum-3-SUCCESS"), pytest.param(1, False, id="enum-1-QUEUED"),
     pytest.param(2, False, id="enum-2-WORKING"), pytest.param(4, False, id="enum-4-FAILURE")],
)
def test_numeric_status_from_the_wire(number: int, candidate: bool) -> None:
    raw = load_build("console_cd_trigger")
    raw["status"] = number

    assert is_candidate(decode(raw)) is candidate
