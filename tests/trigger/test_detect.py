"""trigger.detect: which builds are ours, and which Cloud Run services each one deployed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.model import Build, DeployIntent, Step
from tests.servers.data import load_build
from trigger.detect import deploy_intents, is_candidate
from trigger.events import decode

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


def gcloud(*args: str) -> Step:
    """A step with gcloud as its entrypoint."""
    return Step(name=CLI_IMAGE, entrypoint="gcloud", args=args)


def script(text: str, *, option: str = "-c", entrypoint: str = "bash", name: str = CLI_IMAGE) -> Step:
    """A step running ``text`` as a shell script."""
    return Step(name=name, entrypoint=entrypoint, args=(option, text))


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
        pytest.param("services_update_no_substitutions", [intent(
            "billing", "us-east1", image="us-docker.pkg.dev/acme-prod/apps/billing:e41f0a7",
        )], id="services-update-without-console-substitutions"),
        pytest.param("one_service_two_regions", [
            intent("orders", "europe-west1", image="europe-docker.pkg.dev/acme-prod/apps/orders:2.4.0", no_traffic=True,
                   tag="rc"),
            intent("orders", "us-east1", image="europe-docker.pkg.dev/acme-prod/apps/orders:2.4.0"),
        ], id="one-service-two-regions-gcloud-builder-and-bash-ec"),
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
        pytest.param(build_with(gcloud("run", "deploy", "fn", "--region", "r1", "--function", "on_build"),
                                substitutions={"_GOOGLE_FUNCTION_TARGET": "on_build", "_SERVICE_NAME": "fn",
                                               "_DEPLOY_REGION": "r1"}),
                     [], id="function-target-overrules-deploy-step-and-substitutions"),
        pytest.param(build_with(substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "us-west1", "_PLATFORM": "managed"}),
                     [intent("svc", "us-west1")], id="substitutions-only-no-images"),
        pytest.param(build_with(substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "us-west1",
                                               "_AR_HOSTNAME": "us-west1-docker.pkg.dev", "COMMIT_SHA": "c0ffee"},
                                images=("$_AR_HOSTNAME/$PROJECT_ID/cloud-run-source-deploy/svc:$COMMIT_SHA",)),
                     [intent("svc", "us-west1", image="us-west1-docker.pkg.dev/acme-prod/cloud-run-source-deploy/svc:c0ffee")],
                     id="substitutions-only-image-expanded"),
        pytest.param(build_with(gcloud("run", "deploy", "api", "--region", "us-west1"),
                                substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "us-west1"}),
                     [intent("api", "us-west1"), intent("svc", "us-west1")], id="substitutions-name-another-service"),
        pytest.param(build_with(gcloud("run", "services", "update", "svc", "--image", "gcr.io/p/svc:6", "--region", "r1")),
                     [intent("svc", "r1", image="gcr.io/p/svc:6")], id="services-update-without-substitutions"),
        pytest.param(build_with(gcloud("beta", "run", "services", "update", "svc", "--region", "r1")),
                     [intent("svc", "r1")], id="beta-services-update"),
        pytest.param(build_with(gcloud("alpha", "run", "deploy", "svc", "--region", "r1")),
                     [intent("svc", "r1")], id="alpha-run-deploy"),
        pytest.param(build_with(gcloud("run", "deploy", "--no-traffic", "orders", "--image", "gcr.io/p/o:1", "--region", "r")),
                     [intent("orders", "r", image="gcr.io/p/o:1", no_traffic=True)], id="no-traffic-before-the-service"),
        pytest.param(build_with(gcloud("run", "deploy", "--region", "r1", "--tag", "canary", "svc")),
                     [intent("svc", "r1", tag="canary")], id="valued-flags-before-the-service-take-their-value"),
        pytest.param(build_with(gcloud("--project", "other-proj", "run", "deploy", "svc", "--region=r1")),
                     [intent("svc", "r1", project="other-proj")], id="gcloud-wide-flag-before-run"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1", "--revision-suffix=v7", "--tag=blue")),
                     [intent("svc", "r1", tag="blue", revision_suffix="v7")], id="tag-and-revision-suffix-equals-form"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--set-env-vars=MODE=fast,LEVEL=2", "--region", "r1")),
                     [intent("svc", "r1")], id="flag-value-with-equals-signs"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1", "--future-switch")),
                     [intent("svc", "r1")], id="unknown-flag-last-is-valueless"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--future-switch", "--region", "r1")),
                     [intent("svc", "r1")], id="unknown-flag-before-a-flag-is-valueless"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--image", "gcr.io/p/svc:1", "--region")),
                     [intent("svc", image="gcr.io/p/svc:1")], id="region-flag-without-value-last"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--image", "--region", "r1")),
                     [intent("svc", "r1")], id="image-flag-without-value-before-a-flag"),
        pytest.param(build_with(gcloud("run", "deploy", "--image", "gcr.io/p/svc:1", "--region", "r1")),
                     [], id="no-service-name"),
        pytest.param(build_with(gcloud("run", "deploy", "--image", "gcr.io/p/svc:1", "--region", "r1"),
                                substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "r1"}),
                     [intent("svc", "r1")], id="no-service-name-substitutions-name-it"),
        pytest.param(build_with(gcloud("run")), [], id="gcloud-run-alone"),
        pytest.param(build_with(gcloud("run", "services", "list", "--region", "r1")), [], id="services-list"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--platform"), substitutions={"_DEPLOY_REGION": "r1"}),
                     [], id="platform-without-value-is-not-managed"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1"), substitutions={"_DEPLOY_REGION": "r2"}),
                     [intent("svc", "r1")], id="region-flag-wins-over-_DEPLOY_REGION"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--image", "gcr.io/$PROJECT_ID/svc:$_V", "--tag", "b-$BUILD_ID",
                                       "--region", "r1"), substitutions={"_V": "3"}),
                     [intent("svc", "r1", image="gcr.io/acme-prod/svc:3", tag="b-b-1")], id="built-in-substitutions-expanded"),
        pytest.param(build_with(gcloud("run", "deploy", "$_SVC", "--image", "gcr.io/p/svc:$_UNSET", "--region", "r1")),
                     [intent("$_SVC", "r1")], id="unknown-substitutions-stay-as-written"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1", "--image", "gcr.io/p/svc:1"),
                                gcloud("run", "deploy", "svc", "--region", "r2", "--image", "gcr.io/p/svc:1")),
                     [intent("svc", "r1", image="gcr.io/p/svc:1"), intent("svc", "r2", image="gcr.io/p/svc:1")],
                     id="one-service-two-regions-two-steps"),
        pytest.param(build_with(script("gcloud run deploy svc --region r1 --image gcr.io/p/svc:1 && "
                                       "gcloud run deploy svc --region r2 --image gcr.io/p/svc:1")),
                     [intent("svc", "r1", image="gcr.io/p/svc:1"), intent("svc", "r2", image="gcr.io/p/svc:1")],
                     id="one-service-two-regions-one-script"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--regions=us-central1,europe-west1", "--image", "gcr.io/p/svc:1")),
                     [intent("svc", "us-central1", image="gcr.io/p/svc:1"), intent("svc", "europe-west1", image="gcr.io/p/svc:1")],
                     id="multi-region-service-regions-flag"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1", "--image", "gcr.io/p/svc:1", "--no-traffic"),
                                gcloud("run", "services", "update", "svc", "--region", "r1", "--image", "gcr.io/p/svc:2",
                                       "--project", "acme-prod")),
                     [intent("svc", "r1", image="gcr.io/p/svc:2")], id="same-service-and-region-twice-the-later-wins"),
        pytest.param(build_with(gcloud("run", "deploy", "svc", "--region", "r1"),
                                gcloud("run", "deploy", "svc", "--region", "r1", "--project", "acme-dr")),
                     [intent("svc", "r1"), intent("svc", "r1", project="acme-dr")], id="same-service-two-projects"),
        pytest.param(build_with(Step(name=CLI_IMAGE, entrypoint="/bin/bash", args=("-c", "gcloud run deploy svc --region r1"))),
                     [intent("svc", "r1")], id="entrypoint-bin-bash"),
        pytest.param(build_with(Step(name=CLI_IMAGE, args=("bash", "-c", "gcloud run deploy svc --region r1"))),
                     [intent("svc", "r1")], id="cloud-sdk-image-bash-as-first-arg"),
        pytest.param(build_with(Step(name="gcr.io/cloud-builders/gcloud", entrypoint="bash",
                                     args=("-c", "gcloud run deploy svc --region r1"))),
                     [intent("svc", "r1")], id="gcloud-builder-with-bash-entrypoint"),
        pytest.param(build_with(Step(name="gcr.io/cloud-builders/gcloud-slim", args=("run", "deploy", "svc", "--region", "r1"))),
                     [intent("svc", "r1")], id="gcloud-slim-builder-no-entrypoint"),
        pytest.param(build_with(Step(name=CLI_IMAGE)), [], id="no-entrypoint-no-args"),
        pytest.param(build_with(Step(name="gcr.io/cloud-builders/gcloud")), [], id="gcloud-builder-no-args"),
        pytest.param(build_with(Step(name=CLI_IMAGE, entrypoint="bash", args=("gcloud", "run", "deploy", "svc", "--region", "r1"))),
                     [], id="bash-reads-its-first-arg-as-a-script-file"),
        pytest.param(build_with(Step(name="python:3.12", entrypoint="python3",
                                     args=("-c", "print('gcloud run deploy svc --region r1')"))),
                     [], id="python-c-is-not-a-shell"),
        pytest.param(build_with(Step(name=CLI_IMAGE, entrypoint="bash", args=("-e", "-c"))), [], id="bash-c-without-script"),
        pytest.param(build_with(script("gcloud run deploy svc --region r1", option="-ceu")), [intent("svc", "r1")],
                     id="bash-ceu"),
        pytest.param(build_with(Step(name=CLI_IMAGE, entrypoint="sh",
                                     args=("-o", "errexit", "-xc", "gcloud run deploy svc --region r1"))),
                     [intent("svc", "r1")], id="sh-options-then-xc"),
        pytest.param(build_with(script("gcloud run deploy \\\n  svc \\\n  --image gcr.io/p/svc:1 \\\n  --region r1")),
                     [intent("svc", "r1", image="gcr.io/p/svc:1")], id="line-continuations-join-one-command"),
        pytest.param(build_with(script('gcloud run deploy svc --description "" --region r1')),
                     [intent("svc", "r1")], id="empty-quoted-argument-is-not-a-separator"),
        pytest.param(build_with(script('gcloud run deploy svc --region r1 --description "unfinished')),
                     [intent("svc", "r1")], id="unclosed-quote-read-word-by-word"),
        pytest.param(build_with(script("gcloud run deploy a --region r1 & gcloud run deploy b --region r1 | tee log; wait")),
                     [intent("a", "r1"), intent("b", "r1")], id="background-and-pipe-separate-commands"),
        pytest.param(build_with(script("gcloud run deploy a --region r1 || gcloud run deploy b --region r1 ;echo done")),
                     [intent("a", "r1"), intent("b", "r1")], id="or-and-semicolon-separate-commands"),
        pytest.param(build_with(script("gcloud run deploy svc --update-env-vars=MAX_WORKERS=4 --region r1")),
                     [intent("svc", "r1")], id="words-with-capitals-stay-whole"),
        pytest.param(build_with(script("CLOUDSDK_CORE_DISABLE_PROMPTS=1 /usr/lib/google-cloud-sdk/bin/gcloud run deploy svc "
                                       "--region r1")),
                     [intent("svc", "r1")], id="gcloud-by-path-after-an-assignment"),
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


# Every flag `gcloud run deploy --help` / `gcloud run services update --help` (and gcloud's own) shows without a value.
VALUELESS_FLAGS = (
    "--allow-unauthenticated", "--no-allow-unauthenticated", "--allow-unencrypted-build", "--async",
    "--automatic-updates", "--cpu-boost", "--cpu-throttling", "--no-cpu-throttling", "--default-url", "--delegate-builds",
    "--deploy-health-check", "--dry-run", "--gpu-zonal-redundancy", "--iap", "--invoker-iam-check", "--log-http",
    "--quiet", "-q", "--session-affinity", "--ssh", "--use-http2", "--user-output-enabled", "--no-user-output-enabled",
    "--clear-env-vars", "--clear-base-image", "--no-traffic",
)


@pytest.mark.parametrize("flag", VALUELESS_FLAGS, ids=VALUELESS_FLAGS)
def test_valueless_flag_does_not_swallow_the_service_name(flag: str) -> None:
    build = build_with(gcloud("run", "deploy", flag, "orders", "--image", "gcr.io/p/orders:1", "--region", "r1"))

    assert [(i.service, i.region, i.image) for i in deploy_intents(build)] == [("orders", "r1", "gcr.io/p/orders:1")]


@pytest.mark.parametrize(
    "flag", ["--breakglass", "--mesh", "--description", "--service-account"], ids=lambda f: f"{f}-takes-a-value",
)
def test_valued_flag_before_the_service_takes_its_value(flag: str) -> None:
    build = build_with(gcloud("run", "deploy", flag, "some-value", "orders", "--region", "r1"))

    assert [i.service for i in deploy_intents(build)] == ["orders"]


@pytest.mark.parametrize(
    ("build", "sources"),
    [
        pytest.param(recorded("console_cd_trigger"), ["gcloud run services update"], id="console-trigger-step-found"),
        pytest.param(recorded("services_update_no_substitutions"), ["gcloud run services update"],
                     id="services-update-without-substitutions"),
        pytest.param(recorded("bash_two_services"), ["gcloud run deploy", "gcloud run deploy"], id="deploy-and-beta-deploy"),
        pytest.param(build_with(substitutions={"_SERVICE_NAME": "svc", "_DEPLOY_REGION": "r1"}),
                     ["substitutions _SERVICE_NAME/_DEPLOY_REGION"], id="substitutions-only"),
    ],
)
def test_source_says_how_the_deploy_was_found(build: Build, sources: list[str]) -> None:
    assert [i.source for i in deploy_intents(build)] == sources


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
