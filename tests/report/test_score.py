"""report.score: the rubric arithmetic, with every expected number worked out by hand."""

from __future__ import annotations

import pytest

from core.model import CheckResult, Outcome, Status, Verdict
from report.score import score

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
        # Deployment 20 × 1 + Migration 25 × 0.5 = 32.5 of 45 → 72.2
        pytest.param([check("d", "Deployment", PASS), check("m", "Migration", WARN)], 72.2, Verdict.FAIL,
                     id="warn-without-fraction-counts-half"),
        # Deployment 20 + Migration 25 × 0.8 = 40 of 45 → 88.9
        pytest.param([check("d", "Deployment", PASS), check("m", "Migration", WARN, 0.8)], 88.9, Verdict.WARN,
                     id="warn-uses-its-own-fraction"),
        # PASS with its own fraction 0.6: 20 × 0.6 = 12 of 20 → 60
        pytest.param([check("d", "Deployment", PASS, 0.6)], 60.0, Verdict.FAIL, id="pass-uses-its-own-fraction"),
        # Deployment mean(1, 0) = 0.5 → 10 of 20 → 50
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", ERROR)], 50.0, Verdict.FAIL,
                     id="error-counts-zero"),
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", ERROR, 0.7)], 50.0, Verdict.FAIL,
                     id="error-counts-zero-even-with-a-fraction"),
        # fractions are clamped to 0–1: mean(1, 1) → 100
        pytest.param([check("d1", "Deployment", PASS, 1.7), check("d2", "Deployment", PASS)], 100.0, Verdict.PASS,
                     id="fraction-above-one-clamped"),
        # Deployment 20 + Testing 0 of 35 → 57.1
        pytest.param([check("d", "Deployment", PASS), check("t", "Testing", FAIL)], 57.1, Verdict.FAIL,
                     id="missing-categories-renormalised"),
        # Deployment mean(1, 0) = 10, others full: 10 + 25 + 20 + 20 + 15 = 90 → PASS
        pytest.param([*all_categories(), check("d2", "Deployment", FAIL)], 90.0, Verdict.PASS,
                     id="non-critical-fail-only-lowers-the-score"),
        pytest.param([*all_categories(), check("d2", "Deployment", FAIL, critical=True)], 90.0, Verdict.FAIL,
                     id="critical-fail-is-fail-whatever-the-score"),
        # A critical check that crashed cannot vouch for the deploy, nor blame it
        pytest.param([*all_categories(), check("d2", "Deployment", ERROR, critical=True)], 90.0, Verdict.INCONCLUSIVE,
                     id="critical-error-is-inconclusive"),
        pytest.param([*all_categories(), check("d2", "Deployment", ERROR, critical=True),
                      check("d3", "Deployment", FAIL, critical=True)], 86.7, Verdict.FAIL,
                     id="critical-fail-beats-critical-error"),
        pytest.param([*all_categories(), check("d2", "Deployment", WARN, critical=True)], 95.0, Verdict.PASS,
                     id="critical-warn-is-not-fail"),
        # Deployment mean(1) = 20 of 20; the SKIPPED one leaves the denominator
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED, critical=True)], 100.0,
                     Verdict.INCONCLUSIVE, id="critical-skipped-is-inconclusive"),
        pytest.param([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED)], 100.0, Verdict.PASS,
                     id="non-critical-skipped-leaves-the-denominator"),
    ],
)
def test_score_and_verdict(outcomes: list[Outcome], expected_score: float, expected_verdict: Verdict) -> None:
    scored = score(outcomes, WEIGHTS, 90.0, 75.0)

    assert (scored.score, scored.verdict) == (expected_score, expected_verdict)


def test_category_points_and_what_was_not_assessed() -> None:
    scored = score([check("d", "Deployment", PASS), check("m1", "Migration", WARN), check("m2", "Migration", PASS)],
                   WEIGHTS, 90.0, 75.0)

    # Migration: 25 × mean(0.5, 1) = 18.75; total (20 + 18.75) / 45 = 86.1
    assert [(c.name, c.weight, c.score, c.checks) for c in scored.categories] == [
        ("Deployment", 20.0, 20.0, ["d"]), ("Migration", 25.0, 18.75, ["m1", "m2"]),
    ]
    assert scored.not_assessed == ["Stability", "Business", "Testing"]
    assert scored.score == 86.1


def test_zero_weight_category_is_not_assessed() -> None:
    scored = score([check("d", "Deployment", PASS), check("t", "Testing", FAIL)], {**WEIGHTS, "Testing": 0.0}, 90.0, 75.0)

    assert [c.name for c in scored.categories] == ["Deployment"]
    assert "Testing" in scored.not_assessed
    assert (scored.score, scored.verdict) == (100.0, Verdict.PASS)


def test_skipped_checks_leave_the_denominator_and_are_listed() -> None:
    scored = score([check("d1", "Deployment", PASS), check("d2", "Deployment", SKIPPED), check("m", "Migration", WARN)],
                   WEIGHTS, 90.0, 75.0)

    # Deployment: 20 × mean(1) = 20; Migration 12.5; (20 + 12.5) / 45 = 72.2; missing 10 of 45 = 0.222
    assert scored.categories[0].score == 20.0
    assert scored.score == 72.2
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

    assert (scored.score, scored.verdict) == (0.0, Verdict.INCONCLUSIVE)
    assert scored.categories == []
    assert scored.not_assessed == list(WEIGHTS)


@pytest.mark.parametrize(
    ("fraction", "pass_at", "warn_at", "expected_score", "expected_verdict"),
    [
        # one Deployment check: score = 100 × 20 × fraction / 20
        pytest.param(0.9, 90.0, 75.0, 90.0, Verdict.PASS, id="90.0-pass"),
        pytest.param(0.899, 90.0, 75.0, 89.9, Verdict.WARN, id="89.9-warn"),
        pytest.param(0.75, 90.0, 75.0, 75.0, Verdict.WARN, id="75.0-warn"),
        pytest.param(0.749, 90.0, 75.0, 74.9, Verdict.FAIL, id="74.9-fail"),
        pytest.param(1.0, 90.0, 75.0, 100.0, Verdict.PASS, id="100-pass"),
        pytest.param(0.0, 90.0, 75.0, 0.0, Verdict.FAIL, id="0-fail"),
        pytest.param(0.8, 80.0, 60.0, 80.0, Verdict.PASS, id="custom-80.0-pass"),
        pytest.param(0.799, 80.0, 60.0, 79.9, Verdict.WARN, id="custom-79.9-warn"),
        pytest.param(0.6, 80.0, 60.0, 60.0, Verdict.WARN, id="custom-60.0-warn"),
        pytest.param(0.599, 80.0, 60.0, 59.9, Verdict.FAIL, id="custom-59.9-fail"),
        pytest.param(0.5, 50.0, 50.0, 50.0, Verdict.PASS, id="warn-equals-pass"),
    ],
)
def test_thresholds(fraction: float, pass_at: float, warn_at: float, expected_score: float, expected_verdict: Verdict) -> None:
    scored = score([check("d", "Deployment", WARN, fraction)], WEIGHTS, pass_at, warn_at)

    assert (scored.score, scored.verdict) == (expected_score, expected_verdict)


def test_no_double_rounding_across_a_threshold() -> None:
    scored = score([check("t", "Testing", WARN, 0.8996)], WEIGHTS, 90.0, 75.0)

    assert (scored.score, scored.verdict) == (90.0, Verdict.PASS)


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
