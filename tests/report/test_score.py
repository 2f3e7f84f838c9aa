"""report.score: the rubric arithmetic, with every expected number worked out by hand."""

from __future__ import annotations

import pytest

from core.model import CheckResult, NotMeasured, Outcome, Status, Verdict, cannot_measure
from report.score import check_score, score

WEIGHTS = {"Deployment": 20.0, "Migration": 25.0, "Stability": 20.0, "Business": 20.0, "Testing": 15.0}
PASS, WARN, FAIL, ERROR, SKIPPED = Status.PASS, Status.WARN, Status.FAIL, Status.ERROR, Status.SKIPPED


def check(name: str, category: str, status: Status, fraction: float | None = None, critical: bool = False) -> Outcome:
    return Outcome(name, category, critical, CheckResult(status, f"{name} said {status.value}", score=fraction), 12)


def all_categories(status: Status = PASS) -> list[Outcome]:
    return [check(c.lower(), c, status) for c in WEIGHTS]


@pytest.mark.parametrize(
    ("outcomes", "expected_score", "expected_verdict"),
    [
        pytest.param(all_categories(), 100.0, Verdict.PASS, id="all-pass"),
        # WARN without a grade sits at 0.65: Deployment 20 × 1 + Migration 25 × 0.65 = 36.25 of 45 → 80.6
        pytest.param([check("d", "Deployment", PASS), check("m", "Migration", WARN)], 80.6, Verdict.WARN,
                     id="warn-without-a-grade-sits-mid-band"),
        # WARN grade 0.8 → 0.5 + 0.3 × 0.8 = 0.74: 20 + 18.5 = 38.5 of 45 → 85.6
        pytest.param([check("d", "Deployment", PASS), check("m", "Migration", WARN, 0.8)], 85.6, Verdict.WARN,
                     id="warn-grade-places-it-in-its-band"),
        # PASS grade 0.6 → 0.9 + 0.1 × 0.6 = 0.96 → 96
        pytest.param([check("d", "Deployment", PASS, 0.6)], 96.0, Verdict.PASS, id="pass-grade-stays-in-the-pass-band"),
        # FAIL grade 0.5 → 0.4 × 0.5 = 0.2; Deployment mean(1, 0.2) × 20 = 12 of 20 → 60
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", FAIL, 0.5)], 60.0, Verdict.FAIL,
                     id="fail-grade-stays-in-the-fail-band"),
        # ERROR is not measured: it leaves the arithmetic (never a 0); half of Deployment missing is not over half
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", ERROR)], 100.0, Verdict.PASS,
                     id="error-is-not-scored"),
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", ERROR, 0.7)], 100.0, Verdict.PASS,
                     id="error-is-not-scored-even-with-a-grade"),
        pytest.param([*all_categories(), check("d2", "Deployment", ERROR)], 100.0, Verdict.PASS,
                     id="a-healthy-revision-keeps-its-pass-when-postdeploy-errs"),
        # grades are clamped to 0–1: mean(1, 1) → 100
        pytest.param([check("d1", "Deployment", PASS, 1.7), check("d2", "Deployment", PASS)], 100.0, Verdict.PASS,
                     id="grade-above-one-clamped"),
        pytest.param([check("d1", "Deployment", WARN, -0.5)], 50.0, Verdict.FAIL, id="grade-below-zero-clamped"),
        # Deployment 20 + Testing 0 of 35 → 57.1
        pytest.param([check("d", "Deployment", PASS), check("t", "Testing", FAIL)], 57.1, Verdict.FAIL,
                     id="missing-categories-renormalised"),
        # Deployment mean(1, 0) = 10, others full: 10 + 25 + 20 + 20 + 15 = 90 → PASS by score, capped at WARN
        pytest.param([*all_categories(), check("d2", "Deployment", FAIL)], 90.0, Verdict.WARN,
                     id="non-critical-fail-caps-at-warn"),
        pytest.param([*all_categories(), check("s2", "Stability", FAIL, 1.0)], 94.0, Verdict.WARN,
                     id="a-high-graded-fail-still-caps-at-warn"),
        pytest.param([*all_categories(), check("d2", "Deployment", FAIL, critical=True)], 90.0, Verdict.FAIL,
                     id="critical-fail-is-fail-whatever-the-score"),
        # A critical check that could not measure cannot vouch for the deploy, nor blame it
        pytest.param([*all_categories(), check("d2", "Deployment", ERROR, critical=True)], 100.0, Verdict.INCONCLUSIVE,
                     id="critical-error-is-inconclusive"),
        pytest.param([*all_categories(), check("d2", "Deployment", ERROR, critical=True),
                      check("d3", "Deployment", FAIL, critical=True)], 90.0, Verdict.FAIL,
                     id="critical-fail-beats-critical-error"),
        # mean(1, 0.65) × 20 = 16.5 → 96.5
        pytest.param([*all_categories(), check("d2", "Deployment", WARN, critical=True)], 96.5, Verdict.PASS,
                     id="critical-warn-is-not-fail"),
        # Deployment mean(1) = 20 of 20; the SKIPPED one leaves the denominator
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED, critical=True)], 100.0,
                     Verdict.INCONCLUSIVE, id="critical-skipped-is-inconclusive"),
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED)], 100.0, Verdict.PASS,
                     id="non-critical-skipped-leaves-the-denominator"),
        # Business FAIL 0 and WARN: the score says FAIL before any cap: (20 + 25 + 20 + 0 + 15 × 0.65) / 100 = 74.75
        pytest.param([*all_categories()[:3], check("b", "Business", FAIL), check("t", "Testing", WARN)], 74.8, Verdict.FAIL,
                     id="score-below-warn-is-fail-without-a-critical-check"),
    ],
)
def test_score_and_verdict(outcomes: list[Outcome], expected_score: float, expected_verdict: Verdict) -> None:
    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert (scored.score, scored.verdict) == (expected_score, expected_verdict)


GRADES = [None, -1.0, 0.0, 0.3, 0.5, 0.99, 1.0, 2.0]


@pytest.mark.parametrize("grade", GRADES)
@pytest.mark.parametrize("other", GRADES)
def test_every_fail_scores_below_every_warn_and_every_warn_below_every_pass(grade: float | None, other: float | None) -> None:
    fail = check_score(CheckResult(FAIL, "", score=grade))
    warn = check_score(CheckResult(WARN, "", score=other))
    passed = check_score(CheckResult(PASS, "", score=grade))
    assert fail is not None and warn is not None and passed is not None
    assert 0.0 <= fail <= 0.4 < 0.5 <= warn <= 0.8 < 0.9 <= passed <= 1.0


@pytest.mark.parametrize(
    ("status", "grade", "expected"),
    [
        pytest.param(PASS, None, 1.0, id="pass-default"), pytest.param(PASS, 0.0, 0.9, id="pass-floor"),
        pytest.param(PASS, 0.5, 0.95, id="pass-mid"), pytest.param(WARN, None, 0.65, id="warn-default"),
        pytest.param(WARN, 0.0, 0.5, id="warn-floor"), pytest.param(WARN, 1.0, 0.8, id="warn-ceiling"),
        pytest.param(FAIL, None, 0.0, id="fail-default"), pytest.param(FAIL, 1.0, 0.4, id="fail-ceiling"),
        pytest.param(FAIL, 0.25, 0.1, id="fail-quarter"), pytest.param(PASS, 1 / 3, 0.9333, id="four-decimals"),
        pytest.param(ERROR, 1.0, None, id="error-unscored"),
        pytest.param(SKIPPED, 1.0, None, id="skipped-unscored"),
    ],
)
def test_band_placement(status: Status, grade: float | None, expected: float | None) -> None:
    assert check_score(CheckResult(status, "", score=grade)) == expected


def test_category_points_and_what_was_not_assessed() -> None:
    scored = score([check("d", "Deployment", PASS), check("m1", "Migration", WARN), check("m2", "Migration", PASS)],
                   WEIGHTS, 90.0, 75.0)

    # Migration: 25 × mean(0.65, 1) = 20.625; total (20 + 20.625) / 45 = 90.3
    assert [(c.name, c.weight, c.score, c.checks) for c in scored.categories] == [
        ("Deployment", 20.0, 20.0, ["d"]), ("Migration", 25.0, 20.625, ["m1", "m2"]),
    ]
    assert scored.not_assessed == ["Stability", "Business", "Testing"]
    assert scored.score == 90.3


def test_zero_weight_category_is_not_assessed() -> None:
    scored = score([check("d", "Deployment", PASS), check("t", "Testing", FAIL)], {**WEIGHTS, "Testing": 0.0}, 90.0, 75.0)

    assert [c.name for c in scored.categories] == ["Deployment"]
    assert "Testing" in scored.not_assessed
    assert (scored.score, scored.verdict) == (100.0, Verdict.PASS)


def test_skipped_checks_leave_the_denominator_and_are_listed() -> None:
    scored = score([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED), check("m", "Migration", WARN)],
                   WEIGHTS, 90.0, 75.0)

    # Deployment: 20 × mean(1) = 20; Migration 25 × 0.65 = 16.25; (20 + 16.25) / 45 = 80.6; missing 10 of 45 = 0.222
    assert scored.categories[0].score == 20.0
    assert scored.score == 80.6
    assert scored.missing_weight_share == 0.222
    assert scored.reasons[-1] == "not measured: d2"


@pytest.mark.parametrize(
    ("outcomes", "expected_verdict", "expected_missing"),
    [
        # Migration 25 of 45 missing = 0.556 > 0.5
        pytest.param([check("d", "Deployment", PASS), check("m", "Migration", SKIPPED)], Verdict.INCONCLUSIVE, 0.556,
                     id="more-than-half-missing"),
        # Stability 20 of 40 missing = exactly 0.5
        pytest.param([check("d", "Deployment", PASS), check("s", "Stability", SKIPPED)], Verdict.PASS, 0.5,
                     id="exactly-half-missing"),
        # half of Deployment's checks: 10 of 20 missing = 0.5
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED)], Verdict.PASS, 0.5,
                     id="exactly-half-within-one-category"),
        pytest.param([check("d", "Deployment", SKIPPED)], Verdict.INCONCLUSIVE, 1.0, id="everything-skipped"),
        pytest.param([check("d", "Deployment", FAIL, critical=True), check("m", "Migration", SKIPPED)], Verdict.FAIL, 0.556,
                     id="critical-fail-beats-inconclusive"),
    ],
)
def test_missing_weight(outcomes: list[Outcome], expected_verdict: Verdict, expected_missing: float) -> None:
    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert scored.verdict == expected_verdict
    assert scored.missing_weight_share == expected_missing


def test_exactly_half_missing_with_thirds_is_not_inconclusive() -> None:
    outcomes = [check("d1", "Deployment", PASS), check("d2", "Deployment", PASS), check("d3", "Deployment", SKIPPED),
                check("s1", "Stability", PASS), check("s2", "Stability", SKIPPED), check("s3", "Stability", SKIPPED)]

    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert scored.verdict is Verdict.PASS


def test_zero_outcomes_is_inconclusive() -> None:
    scored = score([], WEIGHTS, 90.0, 75.0)

    assert (scored.score, scored.verdict, scored.missing_weight_share) == (0.0, Verdict.INCONCLUSIVE, 1.0)
    assert scored.categories == []
    assert scored.not_assessed == list(WEIGHTS)


@pytest.mark.parametrize(
    ("status", "grade", "pass_at", "warn_at", "expected_score", "expected_verdict"),
    [
        # one Deployment check: the total is 100 × its banded score
        pytest.param(PASS, 0.0, 90.0, 75.0, 90.0, Verdict.PASS, id="90.0-at-pass-is-pass"),
        pytest.param(PASS, 0.0, 90.1, 75.0, 90.0, Verdict.WARN, id="90.0-below-90.1-is-warn"),
        pytest.param(WARN, 0.5, 90.0, 65.0, 65.0, Verdict.WARN, id="65.0-at-warn-is-warn"),
        pytest.param(WARN, 0.5, 90.0, 65.1, 65.0, Verdict.FAIL, id="65.0-below-65.1-is-fail"),
        pytest.param(PASS, 0.5, 95.0, 75.0, 95.0, Verdict.PASS, id="custom-95-pass"),
        pytest.param(PASS, 0.5, 95.1, 75.0, 95.0, Verdict.WARN, id="custom-95-below-95.1-warn"),
        pytest.param(WARN, 1.0, 80.0, 60.0, 80.0, Verdict.PASS, id="a-warn-check-can-still-pass-the-deploy"),
        pytest.param(WARN, 0.5, 50.0, 50.0, 65.0, Verdict.PASS, id="warn-equals-pass"),
    ],
)
def test_thresholds(status: Status, grade: float, pass_at: float, warn_at: float, expected_score: float,
                    expected_verdict: Verdict) -> None:
    scored = score([check("d", "Deployment", status, grade)], WEIGHTS, pass_at, warn_at)

    assert (scored.score, scored.verdict) == (expected_score, expected_verdict)


def test_the_verdict_reads_the_rounded_score_it_shows() -> None:
    # Deployment PASS floor 0.9 × 20 = 18 and Testing WARN ceiling 0.8 × 15 = 12: 30 of 35 = 85.714… shown as 85.7
    outcomes = [check("d", "Deployment", PASS, 0.0), check("t", "Testing", WARN, 1.0)]
    assert score(outcomes, WEIGHTS, 85.71, 75.0).verdict is Verdict.WARN
    assert score(outcomes, WEIGHTS, 85.7, 75.0).verdict is Verdict.PASS


def test_a_capped_verdict_says_which_check_failed_once() -> None:
    scored = score([*all_categories(), check("s2", "Stability", FAIL), check("b2", "Business", WARN)], WEIGHTS, 80.0, 75.0)

    assert scored.verdict is Verdict.WARN
    assert scored.reasons == ["capped at WARN, a check failed: s2: s2 said FAIL", "b2: b2 said WARN"]


def test_not_measured_lists_errors_with_their_fix_and_skipped_checks_with_their_reason() -> None:
    crashed = cannot_measure("Cloud Monitoring", "no Google credentials", "gcloud auth application-default login")
    partial = CheckResult(PASS, "5/5 tests passed", not_measured=[NotMeasured("file a.xml", "unreadable", "fix a")])
    waiting = CheckResult(SKIPPED, "logs said SKIPPED", next_steps=["validate again in a minute", "raise settle_s"])
    outcomes = [check("d", "Deployment", PASS), Outcome("metrics", "Stability", False, crashed, 3),
                Outcome("tests", "Testing", False, partial, 3), Outcome("logs", "Stability", True, waiting, 3)]

    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert [(u.check, u.item.what, u.item.why, u.item.fix, u.critical) for u in scored.not_measured] == [
        ("metrics", "Cloud Monitoring", "no Google credentials", "gcloud auth application-default login", False),
        ("tests", "file a.xml", "unreadable", "fix a", False),
        ("logs", "logs", "logs said SKIPPED", "validate again in a minute", True),
    ]
    assert scored.verdict is Verdict.INCONCLUSIVE
    assert scored.reasons == ["critical check not measured: logs: logs said SKIPPED"]


def test_reasons_put_critical_failures_first() -> None:
    outcomes = [check("w", "Business", WARN), check("f", "Stability", FAIL), check("c", "Deployment", FAIL, critical=True)]

    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert scored.reasons == ["c: c said FAIL", "f: f said FAIL", "w: w said WARN"]


def test_a_check_with_nothing_configured_is_left_out_not_missing() -> None:
    from core.model import not_configured

    idle = Outcome("smoke", "Business", True, not_configured("no golden paths configured"), 0)
    scored = score([check("d", "Deployment", PASS), idle], WEIGHTS, 90, 75)
    # Business has no assessed check: dropped like a disabled one, so Deployment alone scores 20/20 → 100 PASS
    assert (scored.score, scored.verdict, scored.missing_weight_share) == (100.0, Verdict.PASS, 0.0)
    assert "Business" in scored.not_assessed


def test_a_skipped_check_without_next_steps_has_no_fix_and_every_unmeasured_check_is_named() -> None:
    outcomes = [check("d", "Deployment", PASS), check("d2", "Deployment", SKIPPED), check("d3", "Deployment", ERROR),
                *[check(f"x{i}", "Deployment", PASS) for i in range(4)]]
    scored = score(outcomes, WEIGHTS, 90.0, 75.0)
    assert [(u.check, u.item.fix) for u in scored.not_measured] == [("d2", ""), ("d3", "")]
    assert scored.reasons == ["not measured: d2, d3"]


def test_a_category_weighing_less_than_one_still_counts() -> None:
    scored = score([check("d", "Deployment", PASS), check("t", "Testing", FAIL)], {**WEIGHTS, "Testing": 0.5}, 90.0, 75.0)
    assert [c.name for c in scored.categories] == ["Deployment", "Testing"]
    assert scored.score == 97.6  # 20 of 20.5


def test_every_capping_failure_is_named_once() -> None:
    scored = score([*all_categories(), check("s2", "Stability", FAIL, 1.0), check("b2", "Business", FAIL, 1.0)],
                   WEIGHTS, 80.0, 75.0)
    assert scored.verdict is Verdict.WARN
    assert scored.reasons == ["capped at WARN, a check failed: s2: s2 said FAIL", "b2: b2 said FAIL"]


def test_critical_problems_are_listed_before_the_others() -> None:
    # Deployment 20 × 0.65 = 13, Testing 0: 13 of 35 → FAIL by the score, with no critical failure leading
    scored = score([check("t", "Testing", FAIL), check("w", "Deployment", WARN, critical=True)], WEIGHTS, 90.0, 75.0)
    assert scored.verdict is Verdict.FAIL
    assert scored.reasons == ["w: w said WARN", "t: t said FAIL"]
