"""The rubric: check scores → category scores → 0–100 → verdict. Pure.

The contract, in order of precedence:

1. A critical check that FAILs makes the verdict FAIL whatever the score.
2. A critical check that could not be measured (ERROR: postdeploy's own problem; SKIPPED: nothing to measure)
   makes the verdict INCONCLUSIVE; so does missing data on more than half of the assessed weight.
3. A verdict is never PASS while an assessed check FAILs: a non-critical FAIL caps it at WARN.
4. Otherwise the score decides: PASS at ``pass_at`` or more, WARN at ``warn_at`` or more, else FAIL.

A check's score sits inside its status band, so every FAIL scores below every WARN and every WARN below every
PASS: FAIL 0–0.4, WARN 0.5–0.8, PASS 0.9–1. The check's own 0–1 grade (the share of items that passed,
availability, …) places it inside the band; without one a check sits at PASS 1, WARN 0.65, FAIL 0. What was
not measured (ERROR, SKIPPED) has no score: it is left out of the arithmetic and counted as missing data,
never as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.model import CheckResult, NotMeasured, Outcome, Status, Verdict

# A SKIPPED or ERROR check has no data; more than this share of assessed weight without data is INCONCLUSIVE.
MAX_MISSING_SHARE = 0.5
BANDS: dict[Status, tuple[float, float]] = {Status.FAIL: (0.0, 0.4), Status.WARN: (0.5, 0.8), Status.PASS: (0.9, 1.0)}
# Where a check without a grade of its own sits in its band.
DEFAULT_GRADE: dict[Status, float] = {Status.FAIL: 0.0, Status.WARN: 0.5, Status.PASS: 1.0}
NOT_MEASURED = (Status.ERROR, Status.SKIPPED)


def check_score(result: CheckResult) -> float | None:
    """0–1 inside the status band (see the module docstring); None when nothing was measured."""
    if result.status in NOT_MEASURED:
        return None
    low, high = BANDS[result.status]
    grade = DEFAULT_GRADE[result.status] if result.score is None else min(max(result.score, 0.0), 1.0)
    return round(low + (high - low) * grade, 4)


@dataclass
class CategoryScore:
    """One rubric line."""

    name: str
    weight: float
    score: float | None  # weight × mean of judged checks; None when none was judged
    checks: list[str]
    missing_share: float = 0.0  # fraction of this category's checks that were not measured


@dataclass
class Unmeasured:
    """One thing a check could not measure, for the report's "not measured, and why" list."""

    check: str
    item: NotMeasured
    critical: bool = False


@dataclass
class Scored:
    """The rubric applied to a set of outcomes."""

    score: float
    verdict: Verdict
    categories: list[CategoryScore]
    not_assessed: list[str]
    reasons: list[str] = field(default_factory=list)
    missing_weight_share: float = 0.0
    not_measured: list[Unmeasured] = field(default_factory=list)


def _said(o: Outcome) -> str:
    return f"{o.name}: {o.result.summary}"


def unmeasured(outcomes: list[Outcome]) -> list[Unmeasured]:
    """What postdeploy could not measure, check by check: ERROR and SKIPPED checks and the items judged checks left out."""
    found: list[Unmeasured] = []
    for o in outcomes:
        items = list(o.result.not_measured)
        if o.result.assessed and o.result.status in NOT_MEASURED and not items:
            items = [NotMeasured(o.name, o.result.summary, o.result.next_steps[0] if o.result.next_steps else "")]
        found += [Unmeasured(o.name, item, o.critical and o.result.status in NOT_MEASURED) for item in items]
    return found


def score(outcomes: list[Outcome], weights: dict[str, float], pass_at: float, warn_at: float) -> Scored:
    """Apply the rubric; categories without an enabled check are dropped and the rest renormalised."""
    categories: list[CategoryScore] = []
    not_assessed: list[str] = []
    assessed = [o for o in outcomes if o.result.assessed]
    for name, weight in weights.items():
        members = [o for o in assessed if o.category == name]
        if not members or weight <= 0:
            not_assessed.append(name)
            continue
        judged = [s for s in (check_score(o.result) for o in members) if s is not None]
        categories.append(CategoryScore(
            name=name, weight=weight,
            score=weight * sum(judged) / len(judged) if judged else None,
            checks=[o.name for o in members],
            missing_share=1 - len(judged) / len(members),
        ))
    assessed_weight = sum(c.weight for c in categories)
    judged_weight = sum(c.weight * (1 - c.missing_share) for c in categories)
    earned = sum(c.score for c in categories if c.score is not None)
    scoring_weight = sum(c.weight for c in categories if c.score is not None)
    total = round(100 * earned / scoring_weight, 1) if scoring_weight else 0.0
    # Rounded so that exactly half (built from thirds) is not 0.5000000000000001.
    missing = round(1 - judged_weight / assessed_weight, 9) if assessed_weight else 1.0

    failed = [o for o in assessed if o.result.status is Status.FAIL]
    critical_failed = [o for o in failed if o.critical]
    scored_names = {n for c in categories for n in c.checks}
    capping = [o for o in failed if o.name in scored_names]  # a category weighted 0 was left out on purpose
    # A critical check that could not measure cannot vouch for the deploy, and it is no reason to roll back either.
    unknown = [o for o in assessed if o.critical and o.result.status in NOT_MEASURED]
    lead: list[Outcome] = []  # the outcomes the verdict names first
    reasons: list[str] = []
    if critical_failed:
        verdict, lead = Verdict.FAIL, critical_failed
        reasons = [_said(o) for o in lead]
    elif unknown:
        verdict = Verdict.INCONCLUSIVE
        reasons = [f"critical check not measured: {_said(o)}" for o in unknown]
    elif missing > MAX_MISSING_SHARE:
        verdict = Verdict.INCONCLUSIVE
        reasons = [f"{missing:.0%} of the assessed weight was not measured (limit {MAX_MISSING_SHARE:.0%})"]
    elif total >= pass_at and capping:
        verdict, lead = Verdict.WARN, capping[:1]
        reasons = [f"capped at WARN, a check failed: {_said(capping[0])}"]
    elif total >= pass_at:
        verdict = Verdict.PASS
    elif total >= warn_at:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.FAIL
    ranked = sorted(
        (o for o in outcomes if o.result.status in (Status.FAIL, Status.WARN) and o not in lead),
        key=lambda o: (not o.critical, o.result.status is Status.WARN),
    )
    reasons += [_said(o) for o in ranked]
    skipped = unmeasured(outcomes)
    if verdict is not Verdict.INCONCLUSIVE and skipped:
        reasons.append(f"not measured: {', '.join(dict.fromkeys(u.check for u in skipped))}")
    return Scored(total, verdict, categories, not_assessed, reasons, round(missing, 3), skipped)
