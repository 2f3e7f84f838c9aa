"""tests: JUnit results from the storage emulator and from a local folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import defusedxml
import pydantic
import pytest

from checks import tests as junit
from core.errors import AccessDenied, NoCredentials, StorageUnavailable
from core.model import ArtifactSource, Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Target, Verdict
from report.score import score
from sources.artifacts import GcsArtifacts, LocalArtifacts
from sources.gcp import storage_client
from tests.checks.helpers import run_check
from tests.servers.data import DATA
from tests.servers.gcs_proxy import PreconditionProxy

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


@pytest.mark.parametrize(
    ("files", "settings", "status", "summary", "fixes"),
    [
        ({"junit.xml": fixture(MIXED)}, {"critical": True}, Status.FAIL,
         "1/6 tests passed (16.7%, minimum 100%): e2e.test_checkout.test_create_order_returns_201 failed: "
         "AssertionError: expected 201 (+4 more)", []),
        ({"junit.xml": fixture(MIXED)}, {}, Status.FAIL, "1/6 tests passed (16.7%, minimum 100%)", []),
        ({"junit.xml": fixture("all_passed.xml")}, {}, Status.PASS, "3/3 tests passed (100%, minimum 100%)", []),
        ({SUREFIRE: fixture(SUREFIRE), "go.xml": fixture(GO)}, {"min_pass_rate": 0.8}, Status.FAIL,
         "5/8 tests passed (62.5%, minimum 80%) (2 skipped): com.acme.orders.CheckoutIT.rejectsEmptyCart failed: "
         "expected: <400> but was: <500> (+2 more)", []),
        ({SUREFIRE: fixture(SUREFIRE), "go.xml": fixture(GO)}, {"min_pass_rate": 0.6, "critical": True}, Status.PASS,
         "5/8 tests passed (62.5%, minimum 60%) (2 skipped)", []),
        ({"junit.xml": fixture("all_passed.xml"), "broken.xml": fixture("malformed.xml")}, {}, Status.PASS,
         "3/3 tests passed (100%, minimum 100%)", [junit.FIX_MALFORMED]),
        ({"broken.xml": fixture("malformed.xml")}, {}, Status.ERROR,
         "no readable test results: gs://BUCKET/results/BUILD/broken.xml: unreadable: malformed XML (no element found: line 2, column 0)",
         [junit.FIX_MALFORMED]),
        ({"lol.xml": fixture("billion_laughs.xml")}, {}, Status.ERROR,
         "no readable test results: gs://BUCKET/results/BUILD/lol.xml: refused: unsafe XML (entity declarations)", [junit.FIX_UNSAFE]),
        ({"xxe.xml": fixture("xxe.xml")}, {}, Status.ERROR,
         "no readable test results: gs://BUCKET/results/BUILD/xxe.xml: refused: unsafe XML (entity declarations)", [junit.FIX_UNSAFE]),
        ({"broken.xml": fixture("malformed.xml"), "coverage.xml": fixture("coverage.xml")}, {}, Status.ERROR,
         "no readable test results: gs://BUCKET/results/BUILD/broken.xml: unreadable: malformed XML", [junit.FIX_MALFORMED]),
        ({"coverage.xml": fixture("coverage.xml")}, {}, Status.SKIPPED, "no JUnit XML among the 1 XML files found", []),
        ({"coverage.xml": fixture("coverage.xml"), "junit.xml": fixture("all_passed.xml")}, {}, Status.PASS, "3/3 tests passed", []),
        ({"junit.xml": fixture(BARE)}, {}, Status.PASS, "3/3 tests passed (100%, minimum 100%) (2 skipped)", []),
        ({"junit.xml": fixture(BARE)}, {"skipped_count_as_failed": True}, Status.FAIL,
         "3/5 tests passed (60%, minimum 100%): 2 skipped, counted as not passed", []),
        ({}, {}, Status.SKIPPED, "no JUnit XML found at gs://BUCKET/results/BUILD/*.xml", [junit.FIX_NONE_FOUND]),
    ],
    ids=["5-of-6-failed-critical-fails", "5-of-6-failed-not-critical-fails-too", "all-passed", "surefire-and-go-below-minimum",
         "surefire-and-go-above-minimum", "malformed-beside-good-is-not-measured-the-rest-judged", "malformed-only-not-measured",
         "billion-laughs-refused", "xxe-refused", "malformed-beside-coverage-not-measured", "coverage-xml-is-not-junit",
         "coverage-xml-ignored-beside-junit", "bare-testsuite-skips-not-failures", "skipped-counted-when-asked", "none-found"],
)
def test_results_uploaded_by_the_build(bucket: str, files: dict[str, bytes], settings: dict[str, Any], status: Status,
                                       summary: str, fixes: list[str]) -> None:
    build = uploaded_build(bucket, files)
    result = check(junit.Config(**settings), build, GcsArtifacts())
    expected = summary.replace("BUCKET", bucket).replace("BUILD", BUILD_ID)
    assert result.status is status, result.summary
    assert result.summary.startswith(expected), (result.summary, expected)
    assert evidence(result)["where it looked"] == f"gs://{bucket}/results/{BUILD_ID}/*.xml"
    assert [n.fix for n in result.not_measured] == fixes
    assert result.critical is None  # no item of its own is critical: the check's setting decides
    assert (result.score is None) is (status in (Status.ERROR, Status.SKIPPED))


def test_failing_tests_are_listed_with_first_line_messages(bucket: str) -> None:
    result = check(junit.Config(), uploaded_build(bucket, {SUREFIRE: fixture(SUREFIRE), "go.xml": fixture(GO)}), GcsArtifacts())
    found = evidence(result)
    assert found["com.acme.orders.CheckoutIT.rejectsEmptyCart failed"] == "expected: <400> but was: <500>"
    assert found["com.acme.orders.CheckoutIT.appliesCoupon errored"] == "Connection refused: localhost/127.0.0.1:5432"
    # go-junit-report says only "Failed" in message=; the reason is the first line of the body.
    assert found["github.com/acme/orders/api.TestCheckout failed"] == "checkout_test.go:42: expected status 201, got 500"
    surefire = f"suite com.acme.orders.CheckoutIT (gs://{bucket}/results/{BUILD_ID}/{SUREFIRE})"
    assert found[surefire] == "2 passed, 1 failed, 1 errored, 1 skipped (1 flaky, passed on rerun)"
    store = f"suite github.com/acme/orders/store (gs://{bucket}/results/{BUILD_ID}/go.xml)"
    assert found[store] == "2 passed, 0 failed, 0 errored, 0 skipped"
    assert found["pass rate"] == "62.5% (5/8)"
    assert result.score == pytest.approx(5 / 8)


def test_the_hand_made_passed_report_comes_out_fail(bucket: str) -> None:
    """5 of 6 end-to-end tests failed while a hand-made report said PASSED: critical, it decides the verdict."""
    result = check(junit.Config(critical=True), uploaded_build(bucket, {"e2e.xml": fixture(MIXED)}), GcsArtifacts())
    perfect = [Outcome(name, category, False, CheckResult(Status.PASS, "ok", score=1.0), 1)
               for name, category in [("deployment", "Deployment"), ("imports", "Migration"), ("logs", "Stability"),
                                      ("smoke", "Business")]]
    scored = score([*perfect, Outcome("tests", "Testing", True, result, 1)],
                   {"Deployment": 20, "Migration": 25, "Stability": 20, "Business": 20, "Testing": 15}, 90, 75)
    assert scored.verdict is Verdict.FAIL
    assert scored.reasons[0].startswith("tests: 1/6 tests passed (16.7%, minimum 100%)")
    assert scored.score == pytest.approx(85 + 15 * 0.4 / 6, abs=0.1)  # 1/6 inside the FAIL band: the score alone says WARN


def test_unsafe_xml_is_never_expanded_and_the_rest_is_judged(bucket: str) -> None:
    result = check(junit.Config(), uploaded_build(bucket, {"lol.xml": fixture("billion_laughs.xml"), "xxe.xml": fixture("xxe.xml"),
                                                            "ok.xml": fixture("all_passed.xml")}), GcsArtifacts())
    assert (result.status, result.summary) == (Status.PASS, "3/3 tests passed (100%, minimum 100%)")
    text = repr(result)
    assert "lollol" not in text and "root:" not in text
    found = evidence(result)
    where = f"gs://{bucket}/results/{BUILD_ID}"
    for name in ("lol.xml", "xxe.xml"):
        assert found[f"file {where}/{name}"] == "refused: unsafe XML (entity declarations)"
    assert result.not_measured == [NotMeasured(f"file {where}/{name}", "refused: unsafe XML (entity declarations)", junit.FIX_UNSAFE)
                                   for name in ("lol.xml", "xxe.xml")]
    assert found["files read"] == "1 of 3"


def test_build_id_is_substituted_into_configured_patterns(bucket: str) -> None:
    uploaded_build(bucket, {"e2e.xml": fixture(MIXED)}, build_id=OTHER_BUILD)
    build = uploaded_build(bucket, {"e2e.xml": fixture("all_passed.xml")})
    for pattern in (f"gs://{bucket}/results/${{BUILD_ID}}/*.xml", f"gs://{bucket}/results/$BUILD_ID/*.xml"):
        result = check(junit.Config(patterns=[pattern]), build, GcsArtifacts())
        assert result.status is Status.PASS, result.summary
        assert evidence(result)["where it looked"] == f"gs://{bucket}/results/{BUILD_ID}/*.xml"


def test_unknown_variables_are_named_with_the_known_ones(bucket: str) -> None:
    build = uploaded_build(bucket, {"e2e.xml": fixture("all_passed.xml")})
    result = check(junit.Config(patterns=[f"gs://{bucket}/results/${{BUILD_NUMBER}}/*.xml"]), build, GcsArtifacts())
    assert (result.status, result.score) == (Status.ERROR, None)
    assert result.summary == (f"pattern gs://{bucket}/results/${{BUILD_NUMBER}}/*.xml names ${{BUILD_NUMBER}}, which has no value "
                              f"(known: BUILD_ID, PROJECT_ID)")
    assert result.not_measured == [NotMeasured(f"pattern gs://{bucket}/results/${{BUILD_NUMBER}}/*.xml", result.summary,
                                               junit.FIX_VARIABLES)]


def test_without_artifacts_or_patterns_nothing_is_looked_up() -> None:
    class Refuses:
        def find(self, pattern: str) -> list[str]:
            raise AssertionError(f"looked for {pattern}")

        def read(self, name: str, max_bytes: int) -> bytes:
            raise AssertionError(f"read {name}")

    for build in (Build(id=BUILD_ID, status="SUCCESS"), None):
        result = check(junit.Config(), build, Refuses())
        assert result.status is Status.SKIPPED
        assert result.summary == "the build uploaded no test results (no artifacts.objects) and no tests.patterns configured"
    only_binaries = Build(id=BUILD_ID, status="SUCCESS", artifacts={"objects": {"location": "gs://acme/b/", "paths": ["dist/*.tar.gz"]}})
    result = check(junit.Config(), only_binaries, Refuses())
    assert result.status is Status.SKIPPED
    assert result.summary == "the build's artifacts.objects paths hold no .xml file (dist/*.tar.gz) and no tests.patterns configured"


def test_a_refused_listing_is_not_measured_naming_the_role(gcs: tuple[PreconditionProxy, str]) -> None:
    proxy, bucket = gcs
    build = uploaded_build(bucket, {"e2e.xml": fixture("all_passed.xml")})
    proxy.fail_next(5, status=403)
    result = check(junit.Config(), build, GcsArtifacts(retry_deadline_s=0.5))
    assert (result.status, result.score) == (Status.ERROR, None)
    assert result.summary.startswith(f"looking for gs://{bucket}/results/{BUILD_ID}/*.xml: permission denied listing")
    (gap,) = result.not_measured
    assert gap.fix == f"grant roles/storage.objectViewer on gs://{bucket} to the function's service account"


def test_a_missing_bucket_is_not_measured(bucket: str) -> None:
    result = check(junit.Config(patterns=[f"gs://{bucket}-gone/results/*.xml"]), None, GcsArtifacts(retry_deadline_s=0.5))
    assert (result.status, result.score) == (Status.ERROR, None)
    assert result.summary.startswith(f"looking for gs://{bucket}-gone/results/*.xml: expected gs://{bucket}-gone/results/*.xml to exist")
    assert [n.fix for n in result.not_measured] == [junit.FIX_PATTERNS]


def padded(data: bytes, size: int) -> bytes:
    """`data` grown to exactly `size` bytes with an XML comment before its <testsuites> root."""
    filler = size - len(data) - len(b"<!--  -->")
    assert filler >= 0
    return data.replace(b"<testsuites", b"<!-- " + b"x" * filler + b" --><testsuites", 1)


@pytest.mark.parametrize(("size", "read"), [(2047, True), (2048, True), (2049, False)],
                         ids=["below-the-cap", "exactly-the-cap", "one-byte-over"])
def test_byte_cap_per_file(tmp_path: Path, size: int, read: bool) -> None:
    write_results(tmp_path, {"r/big.xml": padded(fixture("all_passed.xml"), size), "r/small.xml": fixture(BARE)})
    result = check(junit.Config(patterns=["r/*.xml"], max_bytes_per_file=2048), None, LocalArtifacts(str(tmp_path)))
    assert result.status is Status.PASS
    assert result.summary.startswith("6/6 tests passed" if read else "3/3 tests passed")  # the small file is read either way
    gaps = [NotMeasured("file r/big.xml", "unreadable: larger than 2048 bytes (max_bytes_per_file), not parsed", junit.FIX_TOO_LARGE)]
    assert result.not_measured == ([] if read else gaps)


def write_results(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_local_folder_mode(tmp_path: Path) -> None:
    write_results(tmp_path, {"results/unit.xml": fixture(BARE), "results/e2e/junit.xml": fixture(MIXED),
                             "results/notes.txt": b"not xml"})
    local = LocalArtifacts(str(tmp_path))
    result = check(junit.Config(patterns=["results/*.xml"]), None, local)
    assert (result.status, result.summary) == (Status.PASS, "3/3 tests passed (100%, minimum 100%) (2 skipped)")
    result = check(junit.Config(patterns=["results/**/*.xml"], critical=True), None, local)
    assert result.status is Status.FAIL
    assert result.summary.startswith("4/9 tests passed (44.4%, minimum 100%) (2 skipped): e2e.test_checkout")
    result = check(junit.Config(patterns=["../*.xml"]), None, local)
    assert (result.status, result.score) == (Status.ERROR, None)
    assert result.summary.startswith("looking for ../*.xml: expected a pattern inside")
    assert [n.fix for n in result.not_measured] == [junit.FIX_PATTERNS]


def test_without_an_artifact_source_local_paths_are_read_from_the_working_folder(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_results(tmp_path, {"out/junit.xml": fixture("all_passed.xml")})
    monkeypatch.chdir(tmp_path)
    result = check(junit.Config(patterns=["out/*.xml"]), None, None)
    assert (result.status, result.summary) == (Status.PASS, "3/3 tests passed (100%, minimum 100%)")


@pytest.mark.parametrize(
    ("pattern", "names"),
    [("results/${BUILD_ID}/*.xml", "${BUILD_ID}"), ("results/${BUILD_ID}/$SHORT_SHA/*.xml", "${BUILD_ID}, ${SHORT_SHA}")],
    ids=["one-variable", "two-variables"],
)
def test_build_id_without_a_build_skips(tmp_path: Path, pattern: str, names: str) -> None:
    result = check(junit.Config(patterns=[pattern]), None, LocalArtifacts(str(tmp_path)))
    why = f"pattern {pattern} names {names}, which has no value (known: none: there is no build)"
    assert result == CheckResult(Status.SKIPPED, f"nothing to look at: {why}",
                                 [Evidence("where it looked", "nowhere"), Evidence("lookup problem", why, ok=False)],
                                 reasons=[why], not_measured=[NotMeasured(f"pattern {pattern}", why, junit.FIX_VARIABLES)])


@pytest.mark.parametrize(("max_files", "read", "more"), [(2, "2 of 3", 1), (3, "3 of 3", 0)],
                         ids=["one-file-over", "exactly-max-files"])
def test_cap_on_files(tmp_path: Path, max_files: int, read: str, more: int) -> None:
    write_results(tmp_path, {"r/a.xml": fixture(MIXED), "r/b.xml": fixture("all_passed.xml"), "r/c.xml": fixture(MIXED)})
    result = check(junit.Config(patterns=["r/*.xml"], max_files=max_files), None, LocalArtifacts(str(tmp_path)))
    files_read = (Evidence("files read", read, f"≤ {max_files} (max_files)", ok=False) if more
                  else Evidence("files read", read, ok=True))
    assert next(e for e in result.evidence if e.what == "files read") == files_read
    gaps = [NotMeasured("1 more result files", "1 more result files not read (max_files 2)", junit.FIX_MAX_FILES)]
    assert result.not_measured == (gaps if more else [])
    assert result.status is Status.FAIL


@pytest.mark.parametrize(("max_failures_listed", "listed", "not_listed"), [(3, 3, "2 more"), (5, 5, None), (4, 4, "1 more")],
                         ids=["three-of-five", "exactly-all-five", "four-of-five"])
def test_cap_on_listed_failures(tmp_path: Path, max_failures_listed: int, listed: int, not_listed: str | None) -> None:
    write_results(tmp_path, {"r/a.xml": fixture(MIXED)})
    result = check(junit.Config(patterns=["r/*.xml"], max_failures_listed=max_failures_listed), None, LocalArtifacts(str(tmp_path)))
    assert sum(1 for e in result.evidence if e.what.endswith((" failed", " errored"))) == listed
    unlisted = next((e for e in result.evidence if e.what == "failing tests not listed"), None)
    assert unlisted == (Evidence("failing tests not listed", not_listed, f"max_failures_listed {max_failures_listed}", ok=False)
                        if not_listed else None)
    assert all(e.ok is False for e in result.evidence if e.what.endswith((" failed", " errored")))
    assert len(result.reasons) == 5  # every failure is a reason, listed in the evidence or not


def test_long_messages_are_capped_to_one_line(tmp_path: Path) -> None:
    long = "AssertionError: " + "x" * 500
    xml = (f'<testsuite name="s"><testcase classname="c" name="t"><failure message="{long}&#10;second line"/></testcase>'
           f'</testsuite>').encode()
    write_results(tmp_path, {"r.xml": xml})
    result = check(junit.Config(patterns=["r.xml"]), None, LocalArtifacts(str(tmp_path)))
    message = evidence(result)["c.t failed"]
    assert len(message) == junit.MESSAGE_CHARS and message.endswith("…") and "second line" not in message


@pytest.mark.parametrize(
    ("xml", "suites"),
    [
        (b'<testsuite name="only"><testcase name="a"/><testcase name="b"><skipped/></testcase></testsuite>',
         [("only", "1 passed, 0 failed, 0 errored, 1 skipped")]),
        (b'<testsuites><testsuite name="one"><testcase name="a"/></testsuite><testsuite name="two"><testcase name="b">'
         b'<error message="boom"/></testcase></testsuite></testsuites>',
         [("one", "1 passed, 0 failed, 0 errored, 0 skipped"), ("two", "0 passed, 0 failed, 1 errored, 0 skipped")]),
        (b'<testsuites><testsuite name="outer"><testsuite name="inner"><testcase name="a"><failure/></testcase></testsuite>'
         b'</testsuite></testsuites>',
         [("outer", "0 passed, 0 failed, 0 errored, 0 skipped"), ("inner", "0 passed, 1 failed, 0 errored, 0 skipped")]),
        (b'<testsuites name="flat"><testcase name="a"/></testsuites>', [("flat", "1 passed, 0 failed, 0 errored, 0 skipped")]),
        (b'<j:testsuite xmlns:j="urn:x" name="ns"><j:testcase name="a"><j:failure message="m"/></j:testcase></j:testsuite>',
         [("ns", "0 passed, 1 failed, 0 errored, 0 skipped")]),
        (b"<testsuites/>", []),
    ],
    ids=["bare-testsuite", "testsuites", "nested-suites", "cases-under-testsuites", "namespaced", "empty-run"],
)
def test_parse_junit_shapes(xml: bytes, suites: list[tuple[str, str]]) -> None:
    assert [(s.name, s.counts) for s in junit.parse_junit(xml, "r.xml")] == suites


def test_a_run_with_no_tests_is_skipped(tmp_path: Path) -> None:
    write_results(tmp_path, {"r.xml": b'<testsuites><testsuite name="s" tests="0"/></testsuites>'})
    result = check(junit.Config(patterns=["r.xml"]), None, LocalArtifacts(str(tmp_path)))
    assert (result.status, result.summary) == (Status.SKIPPED, "no test ran: 1 suites in 1 files, 0 skipped")


def test_a_run_with_no_tests_beside_an_unreadable_file_lists_the_file(tmp_path: Path) -> None:
    write_results(tmp_path, {"r/empty.xml": b'<testsuite name="s" tests="0"/>', "r/broken.xml": b"<testsuite"})
    result = check(junit.Config(patterns=["r/*.xml"]), None, LocalArtifacts(str(tmp_path)))
    why = "unreadable: malformed XML (unclosed token: line 1, column 0)"
    assert result == CheckResult(
        Status.SKIPPED, "no test ran: 1 suites in 2 files, 0 skipped",
        [Evidence("where it looked", "r/*.xml"), Evidence("file r/broken.xml", why, "a JUnit XML file", ok=False),
         Evidence("files read", "1 of 2", ok=False),
         Evidence("suite s (r/empty.xml)", "0 passed, 0 failed, 0 errored, 0 skipped", ok=True)],
        not_measured=[NotMeasured("file r/broken.xml", why, junit.FIX_MALFORMED)])


@pytest.mark.parametrize(
    ("settings", "error"),
    [({"min_pass_rate": 1.5}, "less than or equal to 1"), ({"patterns": ["  "]}, "empty pattern at [0]"),
     ({"pattern": ["x"]}, "Extra inputs are not permitted"), ({"max_files": 0}, "greater than or equal to 1")],
    ids=["rate-above-one", "blank-pattern", "unknown-key", "no-files"],
)
def test_config_is_validated(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(error)):
        junit.Config(**settings)


def test_results_in_a_location_shared_by_every_build_cannot_pass(tmp_path: Path) -> None:
    write_results(tmp_path, {"test-results/junit.xml": fixture("all_passed.xml")})
    build = Build(id=BUILD_ID, status="SUCCESS",
                  artifacts={"objects": {"location": "test-results/", "paths": ["reports/junit.xml"]}})
    result = check(junit.Config(), build, LocalArtifacts(str(tmp_path)))
    assert result.status is Status.WARN
    assert "a location every build writes to: they may be another build's" in result.summary
    attributable = next(e for e in result.evidence if e.what == "results attributable to this build")
    assert attributable == Evidence("results attributable to this build", "no: the location has no build id",
                                    "a path with ${BUILD_ID} in it", ok=False)


def test_every_shared_location_is_named_and_failures_stay_reasons(tmp_path: Path) -> None:
    write_results(tmp_path, {"unit/junit.xml": junit_xml(3, 1), "e2e/junit.xml": junit_xml(4)})
    build = Build(id=BUILD_ID, status="SUCCESS")
    result = check(junit.Config(patterns=["unit/*.xml", "e2e/*.xml"], min_pass_rate=0.8), build, LocalArtifacts(str(tmp_path)))
    why = ("results read from unit/*.xml, e2e/*.xml, a location every build writes to: they may be another build's; "
           "put ${BUILD_ID} in artifacts.objects.location or set tests.patterns")
    assert (result.status, result.summary) == (Status.WARN, f"7/8 tests passed (87.5%, minimum 80%): c.f0 failed: boom 0; {why}")
    assert result.reasons == [why, "c.f0 failed: boom 0"]
    assert evidence(result)["where it looked"] == "unit/*.xml, e2e/*.xml"


def junit_xml(passed: int, failed: int = 0, errored: int = 0, skipped: int = 0) -> bytes:
    """One <testsuite name="s"> of class `c`: passing cases p0…, failing f0… ("boom N"), erroring e0…, skipped s0…."""
    cases = [f'<testcase classname="c" name="p{i}"/>' for i in range(passed)]
    cases += [f'<testcase classname="c" name="f{i}"><failure message="boom {i}"/></testcase>' for i in range(failed)]
    cases += [f'<testcase classname="c" name="e{i}"><error message="crash {i}"/></testcase>' for i in range(errored)]
    cases += [f'<testcase classname="c" name="s{i}"><skipped/></testcase>' for i in range(skipped)]
    return ('<testsuite name="s">' + "".join(cases) + "</testsuite>").encode()


@pytest.mark.parametrize(
    ("xml", "settings", "status", "summary", "rate"),
    [
        (junit_xml(200), {}, Status.PASS, "200/200 tests passed (100%, minimum 100%)", 1.0),
        (junit_xml(199, 1), {}, Status.FAIL, "199/200 tests passed (99.5%, minimum 100%): c.f0 failed: boom 0", 0.995),
        (junit_xml(199, 1), {"critical": True}, Status.FAIL, "199/200 tests passed (99.5%, minimum 100%): c.f0 failed: boom 0",
         0.995),
        (junit_xml(199, 1), {"min_pass_rate": 0.995}, Status.PASS, "199/200 tests passed (99.5%, minimum 99.5%): c.f0 failed: boom 0",
         0.995),
        (junit_xml(199, 1), {"min_pass_rate": 0.996}, Status.FAIL, "199/200 tests passed (99.5%, minimum 99.6%): c.f0 failed: boom 0",
         0.995),
        (junit_xml(0, 1), {"min_pass_rate": 0.0}, Status.PASS, "0/1 tests passed (0%, minimum 0%): c.f0 failed: boom 0", 0.0),
        (junit_xml(3, 1, 1), {"min_pass_rate": 0.6}, Status.PASS,
         "3/5 tests passed (60%, minimum 60%): c.f0 failed: boom 0 (+1 more)", 0.6),
        (junit_xml(3, 0, 0, 2), {"min_pass_rate": 0.6, "skipped_count_as_failed": True}, Status.PASS,
         "3/5 tests passed (60%, minimum 60%): 2 skipped, counted as not passed", 0.6),
        (junit_xml(3, 0, 0, 2), {"min_pass_rate": 0.61, "skipped_count_as_failed": True}, Status.FAIL,
         "3/5 tests passed (60%, minimum 61%): 2 skipped, counted as not passed", 0.6),
        (junit_xml(3, 0, 0, 2), {}, Status.PASS, "3/3 tests passed (100%, minimum 100%) (2 skipped)", 1.0),
        (junit_xml(3), {"skipped_count_as_failed": True}, Status.PASS, "3/3 tests passed (100%, minimum 100%)", 1.0),
        (junit_xml(3, 0, 1, 0), {}, Status.FAIL, "3/4 tests passed (75%, minimum 100%): c.e0 errored: crash 0", 0.75),
    ],
    ids=["200-of-200-at-1.0", "199-of-200-at-1.0-fails", "199-of-200-critical-fails", "exactly-at-0.995-passes",
         "just-below-0.996-fails", "zero-minimum-passes-anything", "failed-and-errored-count-at-the-rate",
         "skipped-counted-at-the-rate", "skipped-counted-below-the-rate", "skipped-not-counted-by-default",
         "nothing-skipped-to-count", "errored-counts-as-not-passed"],
)
def test_the_pass_rate_against_the_minimum(tmp_path: Path, xml: bytes, settings: dict[str, Any], status: Status, summary: str,
                                           rate: float) -> None:
    write_results(tmp_path, {"r.xml": xml})
    result = check(junit.Config(patterns=["r.xml"], **settings), None, LocalArtifacts(str(tmp_path)))
    assert (result.status, result.summary, result.score, result.critical) == (status, summary, rate, None)
    assert result.evidence[0].what == "pass rate" and result.evidence[0].ok is (status is Status.PASS)
    assert next(e for e in result.evidence if e.what == "files read") == Evidence("files read", "1 of 1", ok=True)
    assert result.next_steps == (["read the failing tests' output in the build log"] if status is Status.FAIL else [])


@dataclass
class Refusing:
    """An ArtifactSource over `files` that raises `error` for every name or pattern with "bad" in it."""

    files: dict[str, bytes]
    error: Exception
    on: str  # "find" or "read"

    def find(self, pattern: str) -> list[str]:
        if self.on == "find" and "bad" in pattern:
            raise self.error
        prefix = pattern.rsplit("/", 1)[0] + "/"
        return sorted(n for n in self.files if n.startswith(prefix))

    def read(self, name: str, max_bytes: int) -> bytes:
        if self.on == "read" and "bad" in name:
            raise self.error
        return self.files[name][:max_bytes]


BAD, GOOD = "gs://acme-results/b1/bad.xml", "gs://acme-results/b1/good.xml"
ERRORS = [
    (AccessDenied(f"permission denied reading {BAD}; grant roles/storage.objectViewer"),
     "grant roles/storage.objectViewer on gs://acme-results to the function's service account"),
    (AccessDenied("permission denied", fix="grant roles/storage.objectViewer on the results bucket"),
     "grant roles/storage.objectViewer on the results bucket"),
    (StorageUnavailable(f"reading {BAD}: 503 Service Unavailable"), "validate again: Cloud Storage was unavailable"),
    (NoCredentials("no Google credentials to read Cloud Storage"), NoCredentials.fix),
    (PermissionError(13, "Permission denied", "results/bad.xml"), "make results/bad.xml readable by the user postdeploy runs as"),
    (FileNotFoundError(f"expected {BAD} to exist, found nothing"), junit.FIX_PATTERNS),
    (ValueError("expected a pattern inside /srv, found '../bad.xml'"), junit.FIX_PATTERNS),
    (RuntimeError("boom"), junit.FIX_BUG),
]
ERROR_IDS = ["403", "403-with-its-fix", "storage-outage", "no-credentials", "local-permission", "missing", "outside-the-folder",
             "postdeploy-bug"]


@pytest.mark.parametrize("beside_good", [False, True], ids=["alone", "beside-a-readable-file"])
@pytest.mark.parametrize(("error", "fix"), ERRORS, ids=ERROR_IDS)
def test_a_file_postdeploy_cannot_read_is_not_measured(error: Exception, fix: str, beside_good: bool) -> None:
    files = {BAD: b"", **({GOOD: junit_xml(2)} if beside_good else {})}
    result = check(junit.Config(patterns=["gs://acme-results/b1/*.xml"]), None, Refusing(files, error, "read"))
    why = f"unreadable: {type(error).__name__}: {error}"
    assert result.not_measured == [NotMeasured(f"file {BAD}", why, fix)]
    if beside_good:
        assert (result.status, result.summary, result.score) == (Status.PASS, "2/2 tests passed (100%, minimum 100%)", 1.0)
    else:
        assert (result.status, result.summary, result.score) == (Status.ERROR, f"no readable test results: {BAD}: {why}", None)
        assert result.reasons == [result.summary]
    assert next(e for e in result.evidence if e.what == f"file {BAD}") == Evidence(f"file {BAD}", why, "a JUnit XML file", ok=False)
    read = "1 of 2" if beside_good else "0 of 1"
    assert next(e for e in result.evidence if e.what == "files read") == Evidence("files read", read, ok=False)


@pytest.mark.parametrize("beside_good", [False, True], ids=["alone", "beside-a-readable-pattern"])
@pytest.mark.parametrize(("error", "fix"), ERRORS, ids=ERROR_IDS)
def test_a_pattern_postdeploy_cannot_list_is_not_measured(error: Exception, fix: str, beside_good: bool) -> None:
    patterns = ["gs://acme-results/bad/*.xml", *(["gs://acme-results/b1/*.xml"] if beside_good else [])]
    result = check(junit.Config(patterns=patterns), None, Refusing({GOOD: junit_xml(2)}, error, "find"))
    why = f"looking for gs://acme-results/bad/*.xml: {error}"
    assert result.not_measured == [NotMeasured("pattern gs://acme-results/bad/*.xml", why, fix)]
    if beside_good:
        assert (result.status, result.summary) == (Status.PASS, "2/2 tests passed (100%, minimum 100%)")
    else:
        assert (result.status, result.summary, result.score, result.reasons) == (Status.ERROR, why, None, [why])
    assert next(e for e in result.evidence if e.what == "lookup problem") == Evidence("lookup problem", why, ok=False)


@pytest.mark.parametrize(
    ("xml", "status", "gaps"),
    [(fixture("all_passed.xml"), Status.WARN, 0), (fixture(MIXED), Status.FAIL, 0), (fixture("all_passed.xml"), Status.WARN, 1)],
    ids=["passing-results-warn", "failing-results-still-fail", "not-measured-files-stay-listed"],
)
def test_results_without_the_build_id_in_their_location_cannot_pass(tmp_path: Path, xml: bytes, status: Status, gaps: int) -> None:
    write_results(tmp_path, {"test-results/junit.xml": xml, **({"test-results/broken.xml": b"<testsuite"} if gaps else {})})
    build = Build(id=BUILD_ID, status="SUCCESS", artifacts={"objects": {"location": "test-results/", "paths": ["reports/*.xml"]}})
    result = check(junit.Config(patterns=["test-results/*.xml"]), build, LocalArtifacts(str(tmp_path)))
    assert result.status is status, result.summary
    assert ("a location every build writes to" in result.summary) is (status is Status.WARN)
    assert len(result.not_measured) == gaps
    assert result.score == (1.0 if status is Status.WARN else pytest.approx(1 / 6))


@pytest.mark.parametrize(("length", "capped"), [(199, False), (200, False), (201, True)],
                         ids=["below-the-cap", "exactly-the-cap", "one-over"])
def test_message_cap_boundary(tmp_path: Path, length: int, capped: bool) -> None:
    message = "m" * length
    write_results(tmp_path, {"r.xml": f'<testsuite><testcase classname="c" name="t"><failure message="{message}"/></testcase>'
                                      f'</testsuite>'.encode()})
    result = check(junit.Config(patterns=["r.xml"]), None, LocalArtifacts(str(tmp_path)))
    assert evidence(result)["c.t failed"] == ("m" * (junit.MESSAGE_CHARS - 1) + "…" if capped else message)


@pytest.mark.parametrize(
    ("xml", "ok"),
    [(junit_xml(2), True), (junit_xml(2, 1), False), (junit_xml(2, 0, 1), False), (junit_xml(2, 0, 0, 1), True),
     (junit_xml(2, 1, 1), False)],
    ids=["passing", "a-failure", "an-error", "a-skip", "a-failure-and-an-error"],
)
def test_a_suite_is_ok_without_failures_or_errors(tmp_path: Path, xml: bytes, ok: bool) -> None:
    write_results(tmp_path, {"r.xml": xml})
    result = check(junit.Config(patterns=["r.xml"]), None, LocalArtifacts(str(tmp_path)))
    assert next(e for e in result.evidence if e.what == "suite s (r.xml)").ok is ok


@pytest.mark.parametrize(
    ("case", "failure", "flaky"),
    [
        ('<failure message="first"/><failure message="second"/>', ("failed", "first"), 0),
        ('<error message="crashed"/><failure message="asserted"/>', ("failed", "asserted"), 0),
        ('<failure type="AssertionError"/>', ("failed", "AssertionError"), 0),
        ("<failure/>", ("failed", "no message"), 0),
        ('<failure message="failed">expected 2, got 3\nmore</failure>', ("failed", "expected 2, got 3"), 0),
        ('<flakyFailure message="once"/>', None, 1),
        ('<flakyError message="once"/>', None, 1),
    ],
    ids=["first-of-a-kind-wins", "a-failure-outranks-an-error", "type-when-no-message", "nothing-said", "generic-message-reads-the-body",
         "flaky-failure-passed-on-rerun", "flaky-error-passed-on-rerun"],
)
def test_one_testcase(case: str, failure: tuple[str, str] | None, flaky: int) -> None:
    (suite,) = junit.parse_junit(f'<testsuite name="s"><testcase classname="c" name="t">{case}</testcase></testsuite>'.encode(), "r.xml")
    assert [(f.outcome, f.message) for f in suite.failures] == ([failure] if failure else [])
    assert suite.flaky == flaky


def test_overlapping_patterns_read_each_file_once(tmp_path: Path) -> None:
    write_results(tmp_path, {"r/unit.xml": junit_xml(2, 1)})
    result = check(junit.Config(patterns=["r/*.xml", "r/unit.xml"]), None, LocalArtifacts(str(tmp_path)))
    assert result.summary.startswith("2/3 tests passed")
    assert evidence(result)["files read"] == "1 of 1"


@pytest.mark.parametrize(
    ("objects", "patterns", "why"),
    [
        ({"location": "gs://b/r/", "paths": ["reports/JUNIT.XML", "dist/app.tar.gz"]}, ["gs://b/r/JUNIT.XML"], ""),
        ({"location": "gs://b/r", "paths": ["unit/junit.xml", "e2e/junit.xml"]}, ["gs://b/r/junit.xml"], ""),
        ({"location": "gs://b/r/", "paths": ["dist/app.tar.gz"]}, [],
         "the build's artifacts.objects paths hold no .xml file (dist/app.tar.gz) and no tests.patterns configured"),
        ({"location": "gs://b/r/", "paths": ["dist/app.tar.gz", "dist/app.whl"]}, [],
         "the build's artifacts.objects paths hold no .xml file (dist/app.tar.gz, dist/app.whl) and no tests.patterns configured"),
        ({"location": "gs://b/r/", "paths": "reports/junit.xml"}, [],
         "the build's artifacts.objects paths hold no .xml file (none) and no tests.patterns configured"),
        ({"location": "gs://b/r/", "paths": [7, "reports/junit.xml"]}, ["gs://b/r/junit.xml"], ""),
        ({"location": "gs://b/INBOX//", "paths": ["junit.xml"]}, ["gs://b/INBOX/junit.xml"], ""),
        ({"paths": ["junit.xml"]}, [], junit.NO_RESULTS),
        ({"location": "", "paths": ["junit.xml"]}, [], junit.NO_RESULTS),
        ({"location": ["gs://b/r/"], "paths": ["junit.xml"]}, [], junit.NO_RESULTS),
        ("gs://b/r/", [], junit.NO_RESULTS),
    ],
    ids=["extension-in-any-case", "same-base-name-once", "no-xml", "two-without-xml", "paths-not-a-list", "paths-not-strings-left-out",
         "only-trailing-slashes-stripped", "no-location", "empty-location", "location-not-a-string", "objects-not-a-mapping"],
)
def test_artifact_patterns(objects: Any, patterns: list[str], why: str) -> None:
    assert junit.artifact_patterns(Build(id=BUILD_ID, status="SUCCESS", artifacts={"objects": objects})) == (patterns, why)


@pytest.mark.parametrize(
    ("pattern", "variables", "filled", "unknown"),
    [
        ("r/${A}/$B/*.xml", {"A": "x", "B": "y"}, "r/x/y/*.xml", []),
        ("r/${A}/$B/*.xml", {"A": "x", "B": ""}, "r/x/$B/*.xml", ["B"]),
        ("r/$C/*.xml", {}, "r/$C/*.xml", ["C"]),
    ],
    ids=["both-known", "empty-value-is-unknown", "unknown"],
)
def test_substitute(pattern: str, variables: dict[str, str], filled: str, unknown: list[str]) -> None:
    assert junit.substitute(pattern, variables) == (filled, unknown)


def test_build_variables_leave_out_empty_values() -> None:
    build = Build(id=BUILD_ID, status="SUCCESS", substitutions={"BRANCH_NAME": "main", "TAG_NAME": ""})
    assert junit.build_variables(build) == {"BRANCH_NAME": "main", "BUILD_ID": BUILD_ID}
    assert junit.build_variables(None) == {}


def test_a_pass_with_a_failure_lists_it(tmp_path: Path) -> None:
    write_results(tmp_path, {"r.xml": junit_xml(3, 1)})
    result = check(junit.Config(patterns=["r.xml"], min_pass_rate=0.75), None, LocalArtifacts(str(tmp_path)))
    assert result == CheckResult(
        Status.PASS, "3/4 tests passed (75%, minimum 75%): c.f0 failed: boom 0",
        [Evidence("pass rate", "75% (3/4)", "≥ 75%", ok=True), Evidence("where it looked", "r.xml"),
         Evidence("files read", "1 of 1", ok=True), Evidence("suite s (r.xml)", "3 passed, 1 failed, 0 errored, 0 skipped", ok=False),
         Evidence("c.f0 failed", "boom 0", ok=False)],
        0.75, reasons=["c.f0 failed: boom 0"])


def test_nothing_found_names_every_pattern(tmp_path: Path) -> None:
    write_results(tmp_path, {"unit/notes.txt": b"", "e2e/notes.txt": b""})
    result = check(junit.Config(patterns=["unit/*.xml", "e2e/*.xml"]), None, LocalArtifacts(str(tmp_path)))
    why = "no JUnit XML found at unit/*.xml, e2e/*.xml"
    assert result == CheckResult(Status.SKIPPED, why, [Evidence("where it looked", "unit/*.xml, e2e/*.xml")],
                                 not_measured=[NotMeasured("test results", why, junit.FIX_NONE_FOUND)])


def test_xml_files_that_are_not_junit_are_each_named(tmp_path: Path) -> None:
    write_results(tmp_path, {"r/a.xml": b"<coverage/>", "r/b.xml": b'<project name="orders"/>', "r/c.xml": junit_xml(1)})
    result = check(junit.Config(patterns=["r/*.xml"], max_files=2), None, LocalArtifacts(str(tmp_path)))
    a = "ignored: expected a <testsuites> or <testsuite> root, found <coverage>"
    b = "ignored: expected a <testsuites> or <testsuite> root, found <project>"
    assert result == CheckResult(
        Status.SKIPPED, f"no JUnit XML among the 2 XML files found: r/a.xml: {a}; r/b.xml: {b}",
        [Evidence("where it looked", "r/*.xml"), Evidence("file r/a.xml", a, "a JUnit XML file"),
         Evidence("file r/b.xml", b, "a JUnit XML file"), Evidence("files read", "2 of 3", "≤ 2 (max_files)", ok=False)],
        not_measured=[NotMeasured("1 more result files", "1 more result files not read (max_files 2)", junit.FIX_MAX_FILES)])


@pytest.mark.parametrize(
    ("error", "label"),
    [(defusedxml.DTDForbidden("r", None, None), "DTD"), (defusedxml.EntitiesForbidden("e", None, None, None, None, None),
                                                        "entity declarations"),
     (defusedxml.ExternalReferenceForbidden(None, None, "file:///etc/passwd", None), "external reference"),
     (defusedxml.NotSupportedError("iterparse is not supported"), "iterparse is not supported")],
    ids=["dtd", "entities", "external-reference", "another-refusal-in-its-own-words"],
)
def test_each_unsafe_xml_refusal_is_named(error: Exception, label: str) -> None:
    files = {BAD: b"", GOOD: junit_xml(2)}
    result = check(junit.Config(patterns=["gs://acme-results/b1/*.xml"]), None, Refusing(files, error, "read"))
    assert result.not_measured == [NotMeasured(f"file {BAD}", f"refused: unsafe XML ({label})", junit.FIX_UNSAFE)]


@dataclass
class Recording:
    """An ArtifactSource of one file, `r.xml`, that notes how many bytes each read asked for."""

    data: bytes
    asked: list[int]

    def find(self, pattern: str) -> list[str]:
        return ["r.xml"]

    def read(self, name: str, max_bytes: int) -> bytes:
        self.asked.append(max_bytes)
        return self.data[:max_bytes]


def test_a_file_is_read_to_one_byte_past_the_cap() -> None:
    """One byte more than max_bytes_per_file tells a file over the cap from one at it; nothing more is downloaded."""
    source = Recording(padded(fixture("all_passed.xml"), 4096), [])
    result = check(junit.Config(patterns=["r.xml"], max_bytes_per_file=2048), None, source)
    assert source.asked == [2049]
    assert [n.why for n in result.not_measured] == ["unreadable: larger than 2048 bytes (max_bytes_per_file), not parsed"]


def test_suites_without_a_name_are_named_after_their_file() -> None:
    xml = (b'<testsuites><testcase name="a"/><testsuite><testcase name="b"><failure/></testcase></testsuite>'
           b'<testsuite name="named"><testcase name="c"><error/></testcase><testcase name="d"><error/></testcase></testsuite>'
           b'</testsuites>')
    suites = junit.parse_junit(xml, "gs://acme/results/junit.xml")
    assert [(s.name, s.file, s.counts) for s in suites] == [
        ("junit.xml", "gs://acme/results/junit.xml", "1 passed, 0 failed, 0 errored, 0 skipped"),
        ("junit.xml", "gs://acme/results/junit.xml", "0 passed, 1 failed, 0 errored, 0 skipped"),
        ("named", "gs://acme/results/junit.xml", "0 passed, 0 failed, 2 errored, 0 skipped"),
    ]


@pytest.mark.parametrize(
    ("attributes", "test"),
    [('classname="c" name="t"', "c.t"), ('name="t"', "t"), ('classname="" name="t"', "t"), ('classname="c"', "c.(unnamed)"),
     ('classname="c" name=""', "c.(unnamed)"), ("", "(unnamed)")],
    ids=["class-and-name", "no-class", "empty-class", "no-name", "empty-name", "neither"],
)
def test_a_failing_test_is_named_class_dot_name(attributes: str, test: str) -> None:
    (suite,) = junit.parse_junit(f'<testsuite name="s"><testcase {attributes}><failure/></testcase></testsuite>'.encode(), "r.xml")
    assert [f.test for f in suite.failures] == [test]
