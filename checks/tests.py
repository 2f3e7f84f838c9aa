"""tests: the JUnit XML results the build uploaded, scored by pass rate.

Scoring. The pass rate is passed / (passed + failed + errored), skipped tests counted as not passed only with
``skipped_count_as_failed``. Below ``min_pass_rate`` the check FAILs (critical or not: ``critical`` decides whether
that fails the deploy or caps the verdict at WARN); at or above it the check PASSes, except that results read from
a location without the build's id cannot PASS (WARN: another build may have written them). The score is the pass rate.

Not measured. Results postdeploy cannot list or read (permission denied, a missing bucket or folder, a pattern
naming a variable without a value, malformed or unsafe XML, a file over ``max_bytes_per_file``, files beyond
``max_files``) are listed with the fix and never scored. When nothing could be read the check is ERROR; when some
files were read, those are judged and the rest are listed as not measured.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET
from pydantic import Field, field_validator

from core.errors import AccessDenied, PostdeployError, Transient
from core.model import ArtifactSource, Build, CheckContext, CheckResult, Evidence, NotMeasured, Status, Target, not_configured
from core.schema import CheckSettings

NAME = "tests"
CATEGORY = "Testing"
MESSAGE_CHARS = 200
NO_RESULTS = "the build uploaded no test results (no artifacts.objects) and no tests.patterns configured"
_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)\}|\$(?P<bare>[A-Za-z_]\w*)")
# Go's go-junit-report and some runners put a bare word in message= and the real reason in the text.
_GENERIC_MESSAGES = {"", "failed", "failure", "error", "errored"}
_UNSAFE = ((defusedxml.EntitiesForbidden, "entity declarations"), (defusedxml.ExternalReferenceForbidden, "external reference"),
           (defusedxml.DTDForbidden, "DTD"))
# What would let postdeploy read the results, by what stopped it.
FIX_PATTERNS = "check checks.tests.patterns (or the build's artifacts.objects.location): nothing can be listed there"
FIX_VARIABLES = "name only ${BUILD_ID}, ${PROJECT_ID} or one of the build's substitutions in checks.tests.patterns"
FIX_UNSAFE = "write the results without a DTD or entity declarations (JUnit XML needs neither)"
FIX_MALFORMED = ("check that the build writes the file completely before the artifacts are uploaded "
                 "(a test run killed mid-write leaves it cut off)")
FIX_TOO_LARGE = "raise checks.tests.max_bytes_per_file (at most 64 MiB), or split the results into several files"
FIX_MAX_FILES = "raise checks.tests.max_files (at most 1000), or narrow checks.tests.patterns"
FIX_NONE_FOUND = "check that the build writes JUnit XML where checks.tests.patterns (or artifacts.objects) points"
FIX_BUG = "a postdeploy bug: report it with this report"


class Config(CheckSettings):
    """Where the JUnit files are and how good the pass rate must be."""

    patterns: list[str] = Field(default_factory=list)
    min_pass_rate: float = Field(1.0, ge=0.0, le=1.0)
    skipped_count_as_failed: bool = False
    max_files: int = Field(100, ge=1, le=1000)
    max_bytes_per_file: int = Field(5 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_failures_listed: int = Field(20, ge=0, le=500)

    @field_validator("patterns")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        blank = [str(i) for i, p in enumerate(value) if not p.strip()]
        if blank:
            raise ValueError(f"expected a path or gs:// glob, found an empty pattern at [{', '.join(blank)}]")
        return value


@dataclass(frozen=True)
class Failure:
    """One test that did not pass."""

    test: str  # classname.name
    outcome: str  # "failed" or "errored"
    message: str


@dataclass
class Suite:
    """Counts of one <testsuite> in one file."""

    name: str
    file: str
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    flaky: int = 0  # passed on a rerun (Surefire flakyFailure / flakyError)
    failures: list[Failure] = field(default_factory=list)

    @property
    def counts(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed, {self.errored} errored, {self.skipped} skipped"
        return text + (f" ({self.flaky} flaky, passed on rerun)" if self.flaky else "")


class NotJUnit(ValueError):
    """Well-formed XML that is not a JUnit report."""


def _tag(element: Element) -> str:
    # The parser keeps no comments or processing instructions, so every tag is a name, "{uri}local" when namespaced.
    return element.tag.rpartition("}")[2]


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _cap(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(element: Element) -> str:
    """First line of the message attribute, or of the body when the attribute says nothing."""
    attribute = _first_line(element.get("message"))
    body = _first_line(element.text)
    if attribute.lower() in _GENERIC_MESSAGES and body:
        return _cap(body)
    if attribute:
        return _cap(attribute)
    return _cap(element.get("type") or "no message")


def _suite(element: Element, file: str, default_name: str) -> Suite:
    suite = Suite(name=element.get("name") or default_name, file=file)
    for case in element:
        if _tag(case) != "testcase":
            continue
        children = {_tag(c): c for c in reversed(list(case))}  # the first of each kind wins
        classname, name = case.get("classname"), case.get("name") or "(unnamed)"
        test = f"{classname}.{name}" if classname else name
        if "failure" in children:
            suite.failed += 1
            suite.failures.append(Failure(test, "failed", _message(children["failure"])))
        elif "error" in children:
            suite.errored += 1
            suite.failures.append(Failure(test, "errored", _message(children["error"])))
        elif "skipped" in children:
            suite.skipped += 1
        else:
            suite.passed += 1
            suite.flaky += "flakyFailure" in children or "flakyError" in children
    return suite


def parse_junit(data: bytes, file: str) -> list[Suite]:
    """Suites of a JUnit XML document (``<testsuites>`` or a bare ``<testsuite>`` root, nesting allowed).

    Parsed with defusedxml: DTD entity declarations and external references raise instead of expanding.
    """
    root = SafeET.fromstring(data)
    kind = _tag(root)
    if kind not in ("testsuites", "testsuite"):
        raise NotJUnit(f"expected a <testsuites> or <testsuite> root, found <{kind}>")
    default = posixpath.basename(file)
    suites = [_suite(e, file, default) for e in root.iter() if _tag(e) == "testsuite"]
    if kind == "testsuites" and any(_tag(c) == "testcase" for c in root):
        suites.insert(0, _suite(root, file, default))
    return suites


def _unreadable(exc: Exception, name: str) -> NotMeasured:
    """Why a file gave no results, in the words the report uses, and what would let postdeploy read it."""
    what = f"file {name}"
    if isinstance(exc, defusedxml.DefusedXmlException):
        label = next((text for unsafe, text in _UNSAFE if isinstance(exc, unsafe)), str(exc))
        return NotMeasured(what, f"refused: unsafe XML ({label})", FIX_UNSAFE)
    if isinstance(exc, ParseError):
        return NotMeasured(what, f"unreadable: malformed XML ({exc})", FIX_MALFORMED)
    return NotMeasured(what, f"unreadable: {type(exc).__name__}: {exc}", _fix_for(exc, name))


def _fix_for(exc: Exception, where: str) -> str:
    """What would let postdeploy list or read ``where`` after ``exc``, by the kind of error (never its text)."""
    if isinstance(exc, PostdeployError) and exc.fix:
        return exc.fix
    if isinstance(exc, AccessDenied):
        bucket = where.removeprefix("gs://").partition("/")[0]
        return f"grant roles/storage.objectViewer on gs://{bucket} to the function's service account"
    if isinstance(exc, Transient):
        return "validate again: Cloud Storage was unavailable"
    if isinstance(exc, PermissionError):
        return f"make {exc.filename or where} readable by the user postdeploy runs as"
    if isinstance(exc, FileNotFoundError | NotADirectoryError | ValueError):
        return FIX_PATTERNS
    return FIX_BUG


def substitute(pattern: str, variables: dict[str, str]) -> tuple[str, list[str]]:
    """``${BUILD_ID}`` / ``$BUILD_ID`` filled in; the names that had no value come back as the second item."""
    unknown: list[str] = []

    def fill(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bare")
        if variables.get(name):
            return variables[name]
        unknown.append(name)
        return m.group(0)

    return _VARIABLE.sub(fill, pattern), unknown


def build_variables(build: Build | None) -> dict[str, str]:
    """What a pattern may name: BUILD_ID, PROJECT_ID and the build's substitutions."""
    if build is None:
        return {}
    return {k: v for k, v in {**build.substitutions, "BUILD_ID": build.id, "PROJECT_ID": build.project_id}.items() if v}


def artifact_patterns(build: Build | None) -> tuple[list[str], str]:
    """Globs for the .xml files of the build's ``artifacts.objects``, or none and why."""
    objects = (build.artifacts if build else {}).get("objects")
    objects = objects if isinstance(objects, dict) else {}
    location = objects.get("location")
    if not isinstance(location, str) or not location:
        return [], NO_RESULTS
    paths = objects.get("paths")
    paths = [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []
    xml = [p for p in paths if p.lower().endswith(".xml")]
    if not xml:
        return [], (f"the build's artifacts.objects paths hold no .xml file ({', '.join(paths) or 'none'}) "
                    f"and no tests.patterns configured")
    # Cloud Build copies each matching file to the location under its base name (gsutil cp semantics).
    return list(dict.fromkeys(location.rstrip("/") + "/" + posixpath.basename(p) for p in xml)), ""


@dataclass
class _Collected:
    suites: list[Suite] = field(default_factory=list)
    unreadable: dict[str, NotMeasured] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)  # well-formed XML that is no JUnit report


def _collect(source: ArtifactSource, names: list[str], max_bytes: int) -> _Collected:
    """Read and parse every file; one bad file is evidence, not a reason to stop."""
    out = _Collected()
    for name in names:
        try:
            data = source.read(name, max_bytes + 1)
            if len(data) > max_bytes:
                out.unreadable[name] = NotMeasured(f"file {name}", f"unreadable: larger than {max_bytes} bytes "
                                                   "(max_bytes_per_file), not parsed", FIX_TOO_LARGE)
                continue
            out.suites += parse_junit(data, name)
        except NotJUnit as exc:
            # Builds often upload coverage.xml beside the results under the same *.xml path.
            out.ignored[name] = f"ignored: {exc}"
        except Exception as exc:  # storage, permission and parse problems all become this file's evidence
            out.unreadable[name] = _unreadable(exc, name)
    return out


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}".removesuffix(".0") + "%"


def _nothing_read(why: str, gaps: list[NotMeasured], evidence: list[Evidence]) -> CheckResult:
    """ERROR: no result could be read; every gap is listed with its fix, nothing is scored."""
    return CheckResult(Status.ERROR, why, evidence, reasons=[why], not_measured=gaps)


async def run(target: Target, config: Config, ctx: CheckContext) -> CheckResult:
    """Find the build's JUnit files, count results per suite and judge the pass rate."""
    raw = config.patterns
    if not raw:
        raw, why = artifact_patterns(ctx.build)
        if not raw:
            return not_configured(why)
    variables = build_variables(ctx.build)
    patterns: list[str] = []
    gaps: list[NotMeasured] = []
    for pattern in raw:
        filled, unknown = substitute(pattern, variables)
        if unknown:
            known = ", ".join(sorted(variables)) or "none: there is no build"
            gaps.append(NotMeasured(f"pattern {pattern}", f"pattern {pattern} names {', '.join('${' + u + '}' for u in unknown)}, "
                                    f"which has no value (known: {known})", FIX_VARIABLES))
        else:
            patterns.append(filled)
    evidence = [Evidence("where it looked", ", ".join(patterns) or "nowhere")]
    # Results under a path without this build's id may have been written by another build since.
    shared = [p for p in patterns if ctx.build is not None and ctx.build.id not in p]
    if shared:
        evidence.append(Evidence("results attributable to this build", "no: the location has no build id", "a path with "
                                 "${BUILD_ID} in it", ok=False))

    source = ctx.artifacts
    if source is None:
        from sources.artifacts import open_artifacts

        source = open_artifacts()
    found: list[str] = []
    for pattern in patterns:
        try:
            found += [n for n in await asyncio.to_thread(source.find, pattern) if n not in found]
        except Exception as exc:  # a refused listing is this pattern's gap, the others may still work
            gaps.append(NotMeasured(f"pattern {pattern}", f"looking for {pattern}: {exc}", _fix_for(exc, pattern)))
    for gap in gaps:
        evidence.append(Evidence("lookup problem", gap.why, ok=False))
    if not found:
        if not patterns and ctx.build is None:
            return CheckResult(Status.SKIPPED, f"nothing to look at: {gaps[0].why}", evidence, reasons=[g.why for g in gaps],
                               not_measured=gaps)
        if gaps:
            return _nothing_read(gaps[0].why, gaps, evidence)
        why = f"no JUnit XML found at {', '.join(patterns)}"
        return CheckResult(Status.SKIPPED, why, evidence, not_measured=[NotMeasured("test results", why, FIX_NONE_FOUND)])

    names = found[: config.max_files]
    collected = await asyncio.to_thread(_collect, source, names, config.max_bytes_per_file)
    result = _judge(config, names, found, collected, evidence, gaps)
    if shared and result.status is Status.PASS:
        why = (f"results read from {', '.join(shared)}, a location every build writes to: they may be another build's; "
               "put ${BUILD_ID} in artifacts.objects.location or set tests.patterns")
        return CheckResult(Status.WARN, f"{result.summary}; {why}", result.evidence, result.score, reasons=[why, *result.reasons],
                           not_measured=result.not_measured)
    return result


def _judge(config: Config, names: list[str], found: list[str], collected: _Collected, evidence: list[Evidence],
           gaps: list[NotMeasured]) -> CheckResult:
    suites = collected.suites
    gaps = [*gaps, *collected.unreadable.values()]
    for name, why in collected.ignored.items():
        evidence.append(Evidence(f"file {name}", why, "a JUnit XML file"))
    for name, gap in collected.unreadable.items():
        evidence.append(Evidence(f"file {name}", gap.why, "a JUnit XML file", ok=False))
    if len(found) > len(names):
        evidence.append(Evidence("files read", f"{len(names)} of {len(found)}", f"≤ {config.max_files} (max_files)", ok=False))
        gaps.append(NotMeasured(f"{len(found) - len(names)} more result files",
                                f"{len(found) - len(names)} more result files not read (max_files {config.max_files})",
                                FIX_MAX_FILES))
    else:
        evidence.append(Evidence("files read", f"{len(names) - len(collected.unreadable)} of {len(names)}",
                                 ok=not collected.unreadable))
    if collected.unreadable and len(collected.unreadable) + len(collected.ignored) == len(names):
        name, gap = next(iter(collected.unreadable.items()))
        return _nothing_read(f"no readable test results: {name}: {gap.why}", gaps, evidence)
    if len(collected.ignored) == len(names):
        return CheckResult(Status.SKIPPED, f"no JUnit XML among the {len(names)} XML files found: "
                           + "; ".join(f"{n}: {w}" for n, w in collected.ignored.items()), evidence, not_measured=gaps)

    for s in suites:
        evidence.append(Evidence(f"suite {s.name} ({s.file})", s.counts, ok=s.failed + s.errored == 0))
    passed = sum(s.passed for s in suites)
    failed = sum(s.failed for s in suites)
    errored = sum(s.errored for s in suites)
    skipped = sum(s.skipped for s in suites)
    failures = [f for s in suites for f in s.failures]
    for f in failures[: config.max_failures_listed]:
        evidence.append(Evidence(f"{f.test} {f.outcome}", f.message, ok=False))
    if len(failures) > config.max_failures_listed:
        evidence.append(Evidence("failing tests not listed", f"{len(failures) - config.max_failures_listed} more",
                                 f"max_failures_listed {config.max_failures_listed}", ok=False))

    counted = passed + failed + errored + (skipped if config.skipped_count_as_failed else 0)
    skipped_note = f" ({skipped} skipped)" if skipped and not config.skipped_count_as_failed else ""
    if counted == 0:
        return CheckResult(Status.SKIPPED, f"no test ran: {len(suites)} suites in {len(names)} files, {skipped} skipped",
                           evidence, not_measured=gaps)
    rate = passed / counted
    minimum = _percent(config.min_pass_rate)
    evidence.insert(0, Evidence("pass rate", f"{_percent(rate)} ({passed}/{counted})", f"≥ {minimum}",
                                ok=rate >= config.min_pass_rate))
    head = f"{passed}/{counted} tests passed ({_percent(rate)}, minimum {minimum}){skipped_note}"
    if failures:
        first = failures[0]
        head += f": {first.test} {first.outcome}: {first.message}"
        head += f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    elif config.skipped_count_as_failed and skipped:
        head += f": {skipped} skipped, counted as not passed"
    reasons = [f"{f.test} {f.outcome}: {f.message}" for f in failures]
    if rate < config.min_pass_rate:
        return CheckResult(Status.FAIL, head, evidence, rate, reasons=reasons,
                           next_steps=["read the failing tests' output in the build log"], not_measured=gaps)
    return CheckResult(Status.PASS, head, evidence, rate, reasons=reasons, not_measured=gaps)
