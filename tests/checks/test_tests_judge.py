"""tests, judged on local files: the pass rate against its minimum, what cannot be read, and each piece at its boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import defusedxml
import pytest

from checks import tests as junit
from core.errors import AccessDenied, NoCredentials, StorageUnavailable
from core.model import Build, CheckResult, Evidence, NotMeasured, Status
from sources.artifacts import LocalArtifacts
from tests.checks.junit_files import BUILD_ID, MIXED, check, evidence, fixture, junit_xml, padded, write_results


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
