"""The rubric: check scores → category scores → 0–100 → verdict. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.model import CheckResult, Outcome, Status, Verdict

# A SKIPPED check has no data; more than this share of assessed weight without data is INCONCLUSIVE.
MAX_MISSING_SHARE = 0.5


def check_score(result: CheckResult) -> float | None:
    """0–1: the check's own fraction when it computed one, else PASS 1, WARN 0.5, FAIL 0; ERROR 0; SKIPPED None."""
    if result.status is Status.SKIPPED:
        return None
    if result.status is Status.ERROR:
        return 0.0
    if result.score is not None:
        return min(max(result.score, 0.0), 1.0)
    return {Status.PASS: 1.0, Status.WARN: 0.5}.get(result.status, 0.0)


@dataclass
class CategoryScore:
    """One rubric line."""

    name: str
    weight: float
    score: float | None  # weight × mean of judged checks; None when none was judged
    checks: list[str]
    missing_share: float = 0.0  # fraction of this category's checks that were SKIPPED


@dataclass
class Scored:
    """The rubric applied to a set of outcomes."""

    score: float
    verdict: Verdict
    categories: list[CategoryScore]
    not_assessed: list[str]
    reasons: list[str] = field(default_factory=list)
    missing_weight_share: float = 0.0


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

    def said(o: Outcome) -> str:
        return f"{o.name}: {o.result.summary}"

    failed = [said(o) for o in outcomes if o.critical and o.result.status is Status.FAIL]
    # A critical check that crashed, timed out or had nothing to measure cannot vouch for the deploy,
    # and it is no reason to roll back either.
    unknown = [said(o) for o in assessed if o.critical and o.result.status in (Status.ERROR, Status.SKIPPED)]
    reasons: list[str] = []
    if failed:
        verdict, reasons = Verdict.FAIL, failed
    elif unknown:
        verdict, reasons = Verdict.INCONCLUSIVE, [f"critical check without a verdict: {u}" for u in unknown]
    elif missing > MAX_MISSING_SHARE:
        verdict = Verdict.INCONCLUSIVE
        reasons = [f"{missing:.0%} of the assessed weight has no data (limit {MAX_MISSING_SHARE:.0%})"]
    elif total >= pass_at:
        verdict = Verdict.PASS
    elif total >= warn_at:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.FAIL
    ranked = sorted(
        (o for o in outcomes if o.result.status in (Status.FAIL, Status.ERROR, Status.WARN)),
        key=lambda o: (not o.critical, o.result.status is Status.WARN),
    )
    reasons += [said(o) for o in ranked if said(o) not in failed]
    if verdict is not Verdict.INCONCLUSIVE and missing > 0:
        skipped = [o.name for o in assessed if o.result.status is Status.SKIPPED]
        reasons.append(f"not measured: {', '.join(skipped)}")
    return Scored(total, verdict, categories, not_assessed, reasons, round(missing, 3))
