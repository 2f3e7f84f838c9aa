"""tests: JUnit results from the storage emulator and from a local folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pydantic
import pytest

from checks import tests as junit
from core.model import Build, CheckResult, Evidence, NotMeasured, Outcome, Status, Verdict
from report.score import score
from sources.artifacts import GcsArtifacts, LocalArtifacts
from tests.checks.junit_files import (
    BARE,
    BUILD_ID,
    GO,
    MIXED,
    OTHER_BUILD,
    SUREFIRE,
    check,
    evidence,
    fixture,
    junit_xml,
    padded,
    uploaded_build,
    write_results,
)
from tests.servers.gcs_proxy import PreconditionProxy


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


@pytest.mark.parametrize(("size", "read"), [(2047, True), (2048, True), (2049, False)],
                         ids=["below-the-cap", "exactly-the-cap", "one-byte-over"])
def test_byte_cap_per_file(tmp_path: Path, size: int, read: bool) -> None:
    write_results(tmp_path, {"r/big.xml": padded(fixture("all_passed.xml"), size), "r/small.xml": fixture(BARE)})
    result = check(junit.Config(patterns=["r/*.xml"], max_bytes_per_file=2048), None, LocalArtifacts(str(tmp_path)))
    assert result.status is Status.PASS
    assert result.summary.startswith("6/6 tests passed" if read else "3/3 tests passed")  # the small file is read either way
    gaps = [NotMeasured("file r/big.xml", "unreadable: larger than 2048 bytes (max_bytes_per_file), not parsed", junit.FIX_TOO_LARGE)]
    assert result.not_measured == ([] if read else gaps)


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
