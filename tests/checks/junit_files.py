"""JUnit files and one run of the `tests` check, shared by tests/checks/test_tests.py and test_tests_judge.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checks import tests as junit
from core.model import ArtifactSource, Build, CheckResult, Target
from sources.gcp import storage_client
from tests.checks.helpers import run_check
from tests.servers.data import DATA

JUNIT = DATA / "junit"
BUILD_ID = "4f1c9a2e-7d3b-4c1e-9a8f-0b6d5e2c1a77"
OTHER_BUILD = "0a9b8c7d-0000-4c1e-9a8f-0b6d5e2c1a77"
MIXED = "pytest_e2e_5_of_6_failed.xml"
SUREFIRE = "TEST-com.acme.orders.CheckoutIT.xml"
GO = "go_junit_report.xml"
BARE = "pytest_bare_testsuite_skips.xml"


def fixture(name: str) -> bytes:
    return (JUNIT / name).read_bytes()


def check(config: junit.Config, build: Build | None, artifacts: ArtifactSource | None) -> CheckResult:
    return run_check(junit, Target(service="orders"), config, build=build, artifacts=artifacts)


def uploaded_build(bucket: str, files: dict[str, bytes], build_id: str = BUILD_ID) -> Build:
    """Files under results/BUILD/ as Cloud Build's artifacts.objects leaves them, and the build that says so."""
    b = storage_client().bucket(bucket)
    for name, data in files.items():
        b.blob(f"results/{build_id}/{name}").upload_from_string(data, content_type="application/xml")
    artifacts = {"objects": {"location": f"gs://{bucket}/results/{build_id}/", "paths": ["reports/*.xml", "dist/orders.tar.gz"],
                             "timing": {"startTime": "2026-11-25T10:03:01Z", "endTime": "2026-11-25T10:03:02Z"}}}
    return Build(id=build_id, status="SUCCESS", project_id="acme-prod", artifacts=artifacts)


def evidence(result: CheckResult) -> dict[str, Any]:
    return {e.what: e.measured for e in result.evidence}


def padded(data: bytes, size: int) -> bytes:
    """`data` grown to exactly `size` bytes with an XML comment before its <testsuites> root."""
    filler = size - len(data) - len(b"<!--  -->")
    assert filler >= 0
    return data.replace(b"<testsuites", b"<!-- " + b"x" * filler + b" --><testsuites", 1)


def write_results(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def junit_xml(passed: int, failed: int = 0, errored: int = 0, skipped: int = 0) -> bytes:
    """One <testsuite name="s"> of class `c`: passing cases p0…, failing f0… ("boom N"), erroring e0…, skipped s0…."""
    cases = [f'<testcase classname="c" name="p{i}"/>' for i in range(passed)]
    cases += [f'<testcase classname="c" name="f{i}"><failure message="boom {i}"/></testcase>' for i in range(failed)]
    cases += [f'<testcase classname="c" name="e{i}"><error message="crash {i}"/></testcase>' for i in range(errored)]
    cases += [f'<testcase classname="c" name="s{i}"><skipped/></testcase>' for i in range(skipped)]
    return ('<testsuite name="s">' + "".join(cases) + "</testsuite>").encode()
