"""Promoting on PASS in steps: the split each step sets, the decisions of the first validation and of each step's
check, when the Slack message stays quiet, and the rollout as the report records it; all pure (the traffic updates
against the fake Admin API are in test_rollout_act.py)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from core.model import ServiceInfo, Target, TrafficInfo
from report.rollback import Action, Plan
from report.rollout import Rollout, promote_plan, promoted, resumed_plan, step_plan, why_quiet, worse
from tests.report.test_rollback import latest, rev

P, R, S = "acme-prod", "us-central1", "orders"
NEW, OLD, OTHER = "orders-00042-new", "orders-00041-old", "orders-00040-odd"
STEPS = (10, 50, 100)


def target(traffic: tuple[TrafficInfo, ...], *, previous: str = OLD, latest_ready: str = NEW, revision: str = NEW,
           problem: str = "") -> Target:
    service = ServiceInfo(name=S, project=P, region=R, latest_created_revision=NEW, latest_ready_revision=latest_ready,
                          traffic=traffic)
    return Target(service=S, project=P, region=R, revision=revision, previous_revision=previous, service_info=service,
                  problem=problem)


# --- promoted: the split of a step ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("base", "percent", "latest_ready", "expected"),
    [
        pytest.param((rev(OLD, 100),), 10, NEW, (rev(OLD, 90), rev(NEW, 10)), id="one-revision-first-step"),
        pytest.param((rev(OLD, 100),), 100, NEW, (rev(NEW, 100),), id="all-at-once-drops-the-old-entry"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), 10, NEW, (rev(OLD, 63), rev(OTHER, 27), rev(NEW, 10)),
                     id="70-30-at-10"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), 50, NEW, (rev(OLD, 35), rev(OTHER, 15), rev(NEW, 50)),
                     id="70-30-at-50"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), 100, NEW, (rev(NEW, 100),), id="70-30-at-100"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), 25, NEW, (rev(OLD, 53), rev(OTHER, 22), rev(NEW, 25)),
                     id="70-30-at-25-the-larger-remainder-gets-the-percent"),
        pytest.param((rev(OLD, 33), rev(OTHER, 67)), 10, NEW, (rev(OLD, 30), rev(OTHER, 60), rev(NEW, 10)),
                     id="largest-remainder-first"),
        pytest.param((rev(OLD, 67), rev(OTHER, 33)), 10, NEW, (rev(OLD, 60), rev(OTHER, 30), rev(NEW, 10)),
                     id="largest-remainder-last"),
        pytest.param((rev(OLD, 50), rev(OTHER, 25), rev("c", 25)), 10, NEW,
                     (rev(OLD, 45), rev(OTHER, 23), rev("c", 22), rev(NEW, 10)), id="a-tie-goes-to-the-earlier"),
        pytest.param((rev("c", 25), rev(OLD, 50), rev(OTHER, 25)), 10, NEW,
                     (rev("c", 23), rev(OLD, 45), rev(OTHER, 22), rev(NEW, 10)), id="a-tie-goes-to-the-earlier-reordered"),
        pytest.param((rev(OLD, 34), rev(OTHER, 33), rev("c", 33)), 1, NEW,
                     (rev(OLD, 33), rev(OTHER, 33), rev("c", 33), rev(NEW, 1)),
                     id="thirds-the-larger-entry-has-the-smaller-remainder"),
        pytest.param((rev(OLD, 100), rev(NEW, 0, "canary")), 10, NEW, (rev(OLD, 90), rev(NEW, 10, "canary")),
                     id="the-new-revisions-tag-entry-takes-the-percent-in-place"),
        pytest.param((rev(NEW, 0, "canary"), rev(OLD, 100)), 100, NEW, (rev(NEW, 100, "canary"),),
                     id="all-at-once-through-the-tag-entry"),
        pytest.param((rev(OLD, 100), rev(NEW, 0, "a"), rev(NEW, 0, "b")), 10, NEW,
                     (rev(OLD, 90), rev(NEW, 10, "a"), rev(NEW, 0, "b")), id="only-the-first-entry-of-the-new-revision"),
        pytest.param((rev(OLD, 100), rev(NEW, 0)), 10, NEW, (rev(OLD, 90), rev(NEW, 10)), id="an-untagged-new-entry"),
        pytest.param((rev(OLD, 100), rev(OLD, 0, "green")), 100, NEW, (rev(OLD, 0, "green"), rev(NEW, 100)),
                     id="tags-stay-at-0"),
        pytest.param((rev(OLD, 100), rev(OTHER, 0)), 10, NEW, (rev(OLD, 90), rev(NEW, 10)),
                     id="an-untagged-0-entry-is-dropped"),
        pytest.param((rev(OLD, 99), rev(OTHER, 1, "x")), 50, NEW, (rev(OLD, 50), rev(OTHER, 0, "x"), rev(NEW, 50)),
                     id="a-tagged-entry-rounded-to-0-stays"),
        pytest.param((rev(OLD, 99), rev(OTHER, 1)), 50, NEW, (rev(OLD, 50), rev(NEW, 50)),
                     id="an-untagged-entry-rounded-to-0-goes"),
        pytest.param((latest(60, resolved=OTHER), rev(OLD, 40)), 10, OTHER, (latest(54), rev(OLD, 36), rev(NEW, 10)),
                     id="a-latest-entry-keeps-its-share-and-drops-its-resolved-revision"),
        pytest.param((rev(OLD, 100), latest(0, "tip", resolved=NEW)), 10, NEW,
                     (rev(OLD, 90), latest(0, "tip"), rev(NEW, 10)), id="a-tagged-latest-entry-is-not-the-new-by-name"),
        pytest.param((rev(OLD, 50), latest(50, "tip")), 10, NEW, (rev(OLD, 90), latest(0, "tip"), rev(NEW, 10)),
                     id="a-latest-entry-serving-the-new-revision-gets-no-share"),
        pytest.param((rev(OLD, 50), latest(50)), 10, NEW, (rev(OLD, 90), rev(NEW, 10)),
                     id="an-untagged-latest-entry-serving-the-new-revision-goes"),
        pytest.param((rev(OLD, 50), latest(50)), 10, "", (rev(OLD, 45), latest(45), rev(NEW, 10)),
                     id="latest-serves-nothing-known-without-a-latest-ready-revision"),
    ],
)
def test_promoted_gives_the_new_revision_its_percent_and_the_rest_in_proportion(
        base: tuple[TrafficInfo, ...], percent: int, latest_ready: str, expected: tuple[TrafficInfo, ...]) -> None:
    after = promoted(base, NEW, percent, latest_ready)
    assert after == expected
    assert sum(t.percent for t in after) == 100


def test_promoted_without_other_serving_entries_gives_only_the_new_revision() -> None:
    assert promoted((rev(OLD, 0, "green"),), NEW, 10) == (rev(OLD, 0, "green"), rev(NEW, 10))
    assert promoted((), NEW, 100) == (rev(NEW, 100),)


def test_promoted_without_a_latest_ready_revision_resolves_latest_to_none() -> None:
    assert promoted((latest(50), rev(OLD, 50)), NEW, 20) == (latest(40), rev(OLD, 40), rev(NEW, 20))
    # a LATEST entry then serves "" (as TrafficInfo.serves says): only a revision named "" would be the new one
    assert promoted((latest(50), rev(OLD, 50)), "", 20) == (rev(OLD, 80), rev("", 20))


def random_base(rng: random.Random) -> tuple[TrafficInfo, ...]:
    """1 to 6 entries of distinct revisions (maybe one LATEST, some tagged, some at 0 %) whose percents sum to 100."""
    count = rng.randint(1, 6)
    cuts = sorted(rng.randint(0, 100) for _ in range(count - 1))
    percents = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    entries = [TrafficInfo(revision=f"orders-{i:05d}-r", percent=p, tag=rng.choice(["", "", f"t{i}"]))
               for i, p in enumerate(percents)]
    if rng.random() < 0.3:
        at = rng.randrange(count)
        entries[at] = latest(entries[at].percent, entries[at].tag)
    if rng.random() < 0.3:
        entries.insert(rng.randrange(count + 1), rev(NEW, 0, "canary"))
    return tuple(entries)


def name(t: TrafficInfo) -> str:
    return "LATEST" if t.latest else t.revision


@pytest.mark.parametrize("seed", range(40))
def test_promoted_properties_on_seeded_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        base = random_base(rng)
        percent = rng.randint(1, 100)
        after = promoted(base, NEW, percent, OTHER)
        said = (base, percent, after)
        assert sum(t.percent for t in after) == 100, said
        assert [t.percent for t in after if t.revision == NEW] == [percent], said
        rest, total = 100 - percent, sum(t.percent for t in base)
        others = [t for t in base if t.revision != NEW]
        shares = {name(t): t.percent for t in after if t.revision != NEW}
        assert list(shares) == [name(t) for t in others if name(t) in shares], said  # the order is kept
        got = {i: shares.get(name(t), 0) for i, t in enumerate(others)}
        for i, t in enumerate(others):
            assert (name(t) in shares) is bool(t.tag or got[i]), said  # kept when it serves or has a tag
            assert got[i] in (t.percent * rest // total, -(-t.percent * rest // total)), said  # within 1 of exact
        bumped = [i for i, t in enumerate(others) if got[i] > t.percent * rest // total]
        left = [i for i, t in enumerate(others) if t.percent and i not in bumped]
        for i in bumped:  # the percents left over went to the largest remainders, the earlier first on a tie
            for j in left:
                ri, rj = others[i].percent * rest % total, others[j].percent * rest % total
                assert ri > rj or (ri == rj and i < j), said


# --- promote_plan: what the first validation's verdict starts -------------------------------------------------------

SERVING_OLD = (rev(OLD, 100), rev(NEW, 0, "canary"))


@pytest.mark.parametrize(
    ("verdict", "on_pass", "tgt", "reason"),
    [
        pytest.param("PASS", "report", target(SERVING_OLD),
                     "on_pass is 'report' for orders: postdeploy moves no traffic after a PASS", id="not-opted-in"),
        pytest.param("WARN", "promote", target(SERVING_OLD), "the verdict is WARN: only a PASS promotes", id="warn"),
        pytest.param("FAIL", "promote", target(SERVING_OLD), "the verdict is FAIL: only a PASS promotes", id="fail"),
        pytest.param("INCONCLUSIVE", "promote", target(SERVING_OLD),
                     "the verdict is INCONCLUSIVE: only a PASS promotes", id="inconclusive"),
        pytest.param("WARN", "promote", target(SERVING_OLD, problem="service 'orders' not found"),
                     "the verdict is WARN: only a PASS promotes", id="the-verdict-is-said-first"),
        pytest.param("PASS", "promote", target(SERVING_OLD, problem="service 'orders' not found"),
                     "the deployed revision or its service's traffic is unknown: nothing to promote", id="unresolved"),
        pytest.param("PASS", "promote", target(SERVING_OLD, revision=""),
                     "the deployed revision or its service's traffic is unknown: nothing to promote", id="no-revision"),
        pytest.param("PASS", "promote", replace(target(SERVING_OLD), service_info=None),
                     "the deployed revision or its service's traffic is unknown: nothing to promote",
                     id="service-unknown"),
        pytest.param("PASS", "promote", target((rev(OLD, 90), rev(NEW, 10))),
                     f"{NEW} already serves 10 %: postdeploy promotes only a revision deployed with --no-traffic",
                     id="already-serving-by-name"),
        pytest.param("PASS", "promote", target((latest(100),)),
                     f"{NEW} already serves 100 %: postdeploy promotes only a revision deployed with --no-traffic",
                     id="already-serving-through-latest"),
        pytest.param("PASS", "promote", target((rev(OLD, 99), rev(NEW, 1, "c"))),
                     f"{NEW} already serves 1 %: postdeploy promotes only a revision deployed with --no-traffic",
                     id="already-serving-1"),
    ],
)
def test_no_promotion_says_why(verdict: str, on_pass: str, tgt: Target, reason: str) -> None:
    decided = promote_plan(verdict, tgt, on_pass, STEPS)
    assert (decided.acts, decided.reason, decided.after, decided.moved, decided.kind) == (False, reason, (), 0,
                                                                                          "promote")
    assert (decided.move, decided.did, decided.ready, decided.idle) == ("", "", "", "skipped")
    assert decided.wanted is (on_pass == "promote")
    info = tgt.service_info
    expected = (tgt.revision, tgt.previous_revision, info.traffic if info else ()) if decided.wanted else ("", "", ())
    assert (decided.revision, decided.previous, decided.before) == expected


@pytest.mark.parametrize(
    ("traffic", "latest_ready", "steps", "after"),
    [
        pytest.param((rev(OLD, 100),), NEW, STEPS, (rev(OLD, 90), rev(NEW, 10)), id="first-of-3-steps"),
        pytest.param(SERVING_OLD, NEW, STEPS, (rev(OLD, 90), rev(NEW, 10, "canary")), id="through-the-tag"),
        pytest.param(SERVING_OLD, NEW, (100,), (rev(NEW, 100, "canary"),), id="single-step"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), NEW, STEPS, (rev(OLD, 63), rev(OTHER, 27), rev(NEW, 10)),
                     id="70-30"),
        pytest.param((latest(60, resolved=OTHER), rev(OLD, 40), rev(NEW, 0, "c")), OTHER, [25, 100],
                     (latest(45), rev(OLD, 30), rev(NEW, 25, "c")), id="latest-serving-another-revision"),
        pytest.param((rev(OLD, 100), latest(0, "tip", resolved=NEW)), NEW, [5, 100],
                     (rev(OLD, 95), latest(0, "tip"), rev(NEW, 5)), id="a-0-latest-tag-on-the-new-revision"),
    ],
)
def test_a_pass_moves_the_new_revision_to_the_first_step(traffic: tuple[TrafficInfo, ...], latest_ready: str,
                                                         steps: tuple[int, ...], after: tuple[TrafficInfo, ...]) -> None:
    decided = promote_plan("PASS", target(traffic, latest_ready=latest_ready), "promote", steps)
    first = steps[0]
    assert decided == Plan(True, kind="promote", revision=NEW, previous=OLD, before=traffic, after=after, moved=first,
                           move=f"move {NEW} from 0 % to {first} % of the traffic", did=f"moved {NEW} from 0 % to "
                           f"{first} %", ready=NEW)
    assert decided.acts and decided.after_percent(NEW) == first
    assert sum(t.percent for t in decided.after) == 100


# --- step_plan: what each step's check decides ----------------------------------------------------------------------

def at_step(base: tuple[TrafficInfo, ...], steps: tuple[int, ...], step: int, *, latest_ready: str = NEW,
            live: tuple[TrafficInfo, ...] | None = None, previous: str = OLD) -> tuple[Target, Rollout]:
    """The target as step ``step``'s check finds it (the split that step set, unless ``live``) and its rollout."""
    traffic = promoted(base, NEW, steps[step - 1], latest_ready) if live is None else live
    return target(traffic, latest_ready=latest_ready, previous=previous), Rollout(steps, base, 300.0)


@pytest.mark.parametrize(
    ("base", "steps", "step", "after"),
    [
        pytest.param((rev(OLD, 100),), STEPS, 1, (rev(OLD, 50), rev(NEW, 50)), id="1-of-3"),
        pytest.param((rev(OLD, 100),), STEPS, 2, (rev(NEW, 100),), id="2-of-3"),
        pytest.param(SERVING_OLD, (50, 100), 1, (rev(NEW, 100, "canary"),), id="1-of-2-tagged"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), STEPS, 1, (rev(OLD, 35), rev(OTHER, 15), rev(NEW, 50)),
                     id="70-30-to-50"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), (10, 25, 100), 1, (rev(OLD, 53), rev(OTHER, 22), rev(NEW, 25)),
                     id="70-30-to-25"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30), rev(NEW, 0, "c")), STEPS, 2, (rev(NEW, 100, "c"),),
                     id="70-30-to-100"),
        pytest.param((rev(OLD, 100), rev(OLD, 0, "green")), (1, 2, 100), 2, (rev(OLD, 0, "green"), rev(NEW, 100)),
                     id="tags-kept"),
    ],
)
def test_a_step_that_passes_moves_on(base: tuple[TrafficInfo, ...], steps: tuple[int, ...], step: int,
                                     after: tuple[TrafficInfo, ...]) -> None:
    tgt, rollout = at_step(base, steps, step)
    now, then = steps[step - 1], steps[step]
    assert tgt.service_info is not None
    decided = step_plan("PASS", tgt, rollout, step)
    assert decided == Plan(True, kind="promote", revision=NEW, previous=OLD, before=tgt.service_info.traffic,
                           after=after, moved=then - now, move=f"move {NEW} from {now} % to {then} % of the traffic",
                           did=f"moved {NEW} from {now} % to {then} %", ready=NEW, idle="held")
    assert sum(t.percent for t in decided.after) == 100 and decided.after_percent(NEW) == then


def test_a_step_compares_the_live_split_as_a_multiset() -> None:
    tgt, rollout = at_step((rev(OLD, 70), rev(OTHER, 30)), STEPS, 1,
                           live=(rev(NEW, 10), rev(OTHER, 27), replace(rev(OLD, 63), uri="https://x")))
    decided = step_plan("PASS", tgt, rollout, 1)
    assert decided.after == (rev(OLD, 35), rev(OTHER, 15), rev(NEW, 50))
    assert decided.before == (rev(OLD, 63), rev(OTHER, 27), rev(NEW, 10))  # the split the step set, as it set it


@pytest.mark.parametrize(
    ("steps", "step", "reason"),
    [
        pytest.param(STEPS, 3, f"rollout complete: {NEW} serves 100 % after 3 steps that passed", id="3-of-3"),
        pytest.param((50, 100), 2, f"rollout complete: {NEW} serves 100 % after 2 steps that passed", id="2-of-2"),
        pytest.param((100,), 1, f"rollout complete: {NEW} serves 100 % after 1 step that passed", id="1-of-1"),
    ],
)
def test_the_last_step_that_passes_completes_the_rollout(steps: tuple[int, ...], step: int, reason: str) -> None:
    tgt, rollout = at_step(SERVING_OLD, steps, step)
    assert tgt.service_info is not None
    decided = step_plan("PASS", tgt, rollout, step)
    assert decided == Plan(True, reason, kind="promote", revision=NEW, previous=OLD, before=(rev(NEW, 100, "canary"),),
                           idle="done")
    assert not decided.acts


@pytest.mark.parametrize(
    ("base", "step", "previous", "ready", "back_to"),
    [
        pytest.param((rev(OLD, 100),), 1, OLD, OLD, f"{OLD} 100 %", id="first-step"),
        pytest.param(SERVING_OLD, 2, OLD, OLD, f"{OLD} 100 %, {NEW} 0 % (tag canary)", id="second-step-tagged"),
        pytest.param((rev(OLD, 100),), 3, OLD, OLD, f"{OLD} 100 %", id="last-step"),
        pytest.param((rev(OLD, 70), rev(OTHER, 30)), 2, OTHER, OLD, f"{OLD} 70 %, {OTHER} 30 %",
                     id="the-revision-most-traffic-goes-back-to-must-be-ready-not-the-previous-one"),
        pytest.param((rev(OLD, 50), rev(OTHER, 50)), 2, OTHER, OLD, f"{OLD} 50 %, {OTHER} 50 %",
                     id="on-a-tie-the-first-entry"),
        pytest.param((rev(OTHER, 0, "x"), latest(60), rev(OLD, 40)), 1, "", "orders-00039-l",
                     f"{OTHER} 0 % (tag x), LATEST (orders-00039-l) 60 %, {OLD} 40 %",
                     id="a-latest-entry-is-its-latest-ready-revision"),
        pytest.param((rev(OTHER, 0, "x"), latest(60, resolved="orders-00039-l"), rev(OLD, 40)), 1, "",
                     "orders-00039-l", f"{OTHER} 0 % (tag x), LATEST (orders-00039-l) 60 %, {OLD} 40 %",
                     id="no-previous-a-latest-entry-read-with-its-revision-names-it"),
        pytest.param((latest(100),), 1, "", "orders-00039-l", "LATEST (orders-00039-l) 100 %", id="all-latest"),
    ],
)
def test_a_step_that_fails_puts_the_split_before_the_rollout_back(base: tuple[TrafficInfo, ...], step: int,
                                                                  previous: str, ready: str, back_to: str) -> None:
    latest_ready = "orders-00039-l" if any(t.latest for t in base) else NEW
    tgt, rollout = at_step(base, STEPS, step, latest_ready=latest_ready, previous=previous)
    assert tgt.service_info is not None
    percent = STEPS[step - 1]
    assert step_plan("FAIL", tgt, rollout, step) == Plan(
        True, kind="rollback", revision=NEW, previous=previous, before=tgt.service_info.traffic, after=base,
        moved=percent, ready=ready, idle="held", move=f"move {NEW}'s {percent} % back to the split before the rollout "
        f"({back_to})", did=f"moved {NEW}'s {percent} % back to the split before the rollout")


@pytest.mark.parametrize(
    ("verdict", "step", "base", "latest_ready", "said"),
    [
        pytest.param("WARN", 1, (rev(OLD, 100),), NEW, f"10 %) is WARN: the rollout holds here for a person to decide; "
                     f"{OLD} 90 %, {NEW} 10 %", id="warn-first-step"),
        pytest.param("INCONCLUSIVE", 2, (rev(OLD, 100),), NEW, f"50 %) is INCONCLUSIVE: the rollout holds here for a "
                     f"person to decide; {OLD} 50 %, {NEW} 50 %", id="inconclusive-second-step"),
        pytest.param("WARN", 3, SERVING_OLD, NEW, f"100 %) is WARN: the rollout holds here for a person to decide; "
                     f"{NEW} 100 % (tag canary)", id="warn-last-step"),
        pytest.param("ERROR", 1, (latest(60), rev(OLD, 40)), OTHER, f"10 %) is ERROR: the rollout holds here for a "
                     f"person to decide; LATEST ({OTHER}) 54 %, {OLD} 36 %, {NEW} 10 %", id="latest-named-as-it-serves"),
    ],
)
def test_a_step_that_neither_passes_nor_fails_holds(verdict: str, step: int, base: tuple[TrafficInfo, ...],
                                                    latest_ready: str, said: str) -> None:
    tgt, rollout = at_step(base, STEPS, step, latest_ready=latest_ready)
    assert tgt.service_info is not None
    decided = step_plan(verdict, tgt, rollout, step)
    assert decided == Plan(True, f"the verdict at step {step} ({said}", kind="promote", revision=NEW, previous=OLD,
                           before=tgt.service_info.traffic, idle="held")


LATEST_BASE = (latest(60), rev(OLD, 40))


@pytest.mark.parametrize("verdict", ["PASS", "FAIL", "WARN"])
@pytest.mark.parametrize(
    ("base", "live", "step", "latest_ready", "said"),
    [
        pytest.param((rev(OLD, 100),), (rev(OLD, 100),), 1, NEW, f"step 1 set ({OLD} 90 %, {NEW} 10 %); it is {OLD} "
                     "100 %", id="moved-back-by-hand"),
        pytest.param((rev(OLD, 100),), (rev(OLD, 60), rev(NEW, 40)), 1, NEW, f"step 1 set ({OLD} 90 %, {NEW} 10 %); "
                     f"it is {OLD} 60 %, {NEW} 40 %", id="moved-on-by-hand"),
        pytest.param((rev(OLD, 100),), (rev(OLD, 0), rev(NEW, 100)), 2, NEW, f"step 2 set ({OLD} 50 %, {NEW} 50 %); "
                     f"it is {OLD} 0 %, {NEW} 100 %", id="two-steps-on"),
        pytest.param((rev(OLD, 100),), (rev(OLD, 90), rev(NEW, 10, "t")), 1, NEW, f"step 1 set ({OLD} 90 %, {NEW} "
                     f"10 %); it is {OLD} 90 %, {NEW} 10 % (tag t)", id="a-tag-added"),
        pytest.param((rev(OLD, 100),), (latest(90), rev(NEW, 10)), 1, OTHER, f"step 1 set ({OLD} 90 %, {NEW} 10 %); "
                     f"it is LATEST ({OTHER}) 90 %, {NEW} 10 %", id="latest-instead-of-the-name"),
        pytest.param((rev(OLD, 100),), (rev(OLD, 90), rev(NEW, 10)), 2, NEW, f"step 2 set ({OLD} 50 %, {NEW} 50 %); "
                     f"it is {OLD} 90 %, {NEW} 10 %", id="the-move-to-step-2-was-never-made"),
        pytest.param(LATEST_BASE, (rev(OLD, 100),), 1, OTHER, f"step 1 set (LATEST ({OTHER}) 54 %, {OLD} 36 %, {NEW} "
                     f"10 %); it is {OLD} 100 %", id="the-split-set-names-the-revision-latest-serves"),
        pytest.param((rev(OLD, 100),), None, 1, NEW, f"step 1 set ({OLD} 90 %, {NEW} 10 %); it is unknown",
                     id="service-unknown"),
        pytest.param(LATEST_BASE, None, 1, NEW, f"step 1 set (LATEST 54 %, {OLD} 36 %, {NEW} 10 %); it is unknown",
                     id="service-unknown-latest-serves-nothing-known"),
    ],
)
def test_a_split_changed_outside_the_rollout_is_left_alone(verdict: str, base: tuple[TrafficInfo, ...],
                                                           live: tuple[TrafficInfo, ...] | None, step: int,
                                                           latest_ready: str, said: str) -> None:
    tgt, rollout = at_step(base, STEPS, step, latest_ready=latest_ready, live=live or ())
    if live is None:
        tgt = replace(tgt, service_info=None)
    decided = step_plan(verdict, tgt, rollout, step)
    expected = promoted(base, NEW, STEPS[step - 1], latest_ready if live else "")
    assert decided == Plan(True, f"traffic is not what {said}: changed outside the rollout, which stops here and "
                                 "changes nothing", kind="promote", revision=NEW, previous=OLD, before=expected,
                           idle="held")


@pytest.mark.parametrize("step", [1, 2])
def test_a_redelivered_check_finds_its_own_move_made_and_carries_on_from_there(step: int) -> None:
    """An earlier delivery of this check moved on and was lost before its report was stored: the live split is the
    next step's. A PASS moves nowhere new (act finds it already done), a FAIL rolls back from there, a WARN holds."""
    next_split = promoted((rev(OLD, 100),), NEW, STEPS[step])
    tgt, rollout = at_step((rev(OLD, 100),), STEPS, step, live=next_split)
    passed = step_plan("PASS", tgt, rollout, step)
    assert passed.kind == "promote" and passed.after == next_split and passed.acts
    assert passed.before == promoted((rev(OLD, 100),), NEW, STEPS[step - 1])
    failed = step_plan("FAIL", tgt, rollout, step)
    assert (failed.kind, failed.before, failed.after, failed.moved) == ("rollback", next_split, (rev(OLD, 100),),
                                                                          STEPS[step])
    held = step_plan("WARN", tgt, rollout, step)
    assert (held.acts, held.idle, held.before) == (False, "held", next_split)


@pytest.mark.parametrize(("base", "latest_ready", "after"), [
    pytest.param((rev(OLD, 100), rev(NEW, 0, "canary")), NEW, (rev(OLD, 90), rev(NEW, 10, "canary")), id="tagged"),
    # LATEST follows the new revision now: its share is not another revision's, so OLD keeps all the rest
    pytest.param((rev(OLD, 70), latest(30)), NEW, (rev(OLD, 90), rev(NEW, 10)), id="latest-is-new"),
    pytest.param((rev(OLD, 70), latest(30)), OTHER, (rev(OLD, 63), latest(27), rev(NEW, 10)), id="latest-is-other"),
])
def test_a_resumed_promotion_starts_from_the_split_it_recorded(base: tuple[TrafficInfo, ...], latest_ready: str,
                                                               after: tuple[TrafficInfo, ...]) -> None:
    recorded = Rollout(STEPS, base, 60.0)
    tgt = target(promoted(base, NEW, 10, latest_ready), latest_ready=latest_ready)  # an earlier delivery moved it
    assert resumed_plan(tgt, recorded) == Plan(True, kind="promote", revision=NEW, previous=OLD, before=base,
                                               after=after, moved=10, ready=NEW,
                                               move=f"move {NEW} from 0 % to 10 % of the traffic",
                                               did=f"moved {NEW} from 0 % to 10 %")
    assert resumed_plan(target(after, latest_ready=latest_ready, previous=OTHER), recorded).previous == OTHER


def test_a_redelivered_check_reads_latest_as_the_revision_it_follows_now() -> None:
    """With LATEST following the new revision, the next step's split gives LATEST no share: a redelivery recognises
    exactly that split as its own move."""
    base = (rev(OLD, 70), latest(30))
    tgt, rollout = at_step(base, STEPS, 1, live=promoted(base, NEW, 50, NEW))
    assert step_plan("PASS", tgt, rollout, 1).acts  # the move to 50 %, which act finds already done
    other = promoted(base, NEW, 50, "")  # LATEST counted as another revision's: not what this rollout would set
    tgt, rollout = at_step(base, STEPS, 1, live=other)
    assert step_plan("PASS", tgt, rollout, 1).idle == "held" and not step_plan("PASS", tgt, rollout, 1).acts


def test_a_latest_entry_now_serving_the_new_revision_gets_no_share_at_any_step() -> None:
    """The base's LATEST entry resolves to the new revision at the step's check: it is counted as the new one's in the
    split the step set and in the next move alike."""
    tgt, rollout = at_step((rev(OLD, 50), latest(50)), STEPS, 1)
    assert tgt.service_info is not None and tgt.service_info.traffic == (rev(OLD, 90), rev(NEW, 10))
    decided = step_plan("PASS", tgt, rollout, 1)
    assert (decided.kind, decided.after) == ("promote", (rev(OLD, 50), rev(NEW, 50)))


# --- worse and why_quiet --------------------------------------------------------------------------------------------

VERDICTS = ("PASS", "WARN", "FAIL", "INCONCLUSIVE")
WORSE = {("WARN", "PASS"), ("FAIL", "PASS"), ("FAIL", "WARN")}


@pytest.mark.parametrize("than", VERDICTS)
@pytest.mark.parametrize("verdict", VERDICTS)
def test_worse_ranks_pass_warn_fail_and_never_inconclusive(verdict: str, than: str) -> None:
    assert worse(verdict, than) is ((verdict, than) in WORSE)


def action(kind: str, outcome: str, planned: bool = True) -> dict[str, Any]:
    return Action(kind, outcome, "…", planned=(rev(NEW, 100),) if planned else ()).to_dict()  # type: ignore[arg-type]


def report(verdict: str, kind: str | None = None, actions: list[dict[str, Any]] | None = None,
           of: str | None = None) -> dict[str, Any]:
    rerun = None if kind is None else {"kind": kind, **({"of": {"verdict": of}} if of is not None else {})}
    return {"verdict": verdict, "rerun": rerun, "actions": actions}


MOVED_ON = "not posted: the step passed and the rollout moved on"


def no_worse(verdict: str, before: str) -> str:
    return f"not posted: {verdict} is no worse than the first validation's {before} (follow_up_notify: worse)"


@pytest.mark.parametrize(
    ("rep", "notify", "quiet"),
    [
        pytest.param(report("PASS"), "worse", "", id="a-first-validation"),
        pytest.param({"verdict": "PASS"}, "worse", "", id="no-rerun-no-actions"),
        pytest.param(report("PASS", "rerun", [action("promote", "done")]), "worse", "", id="an-on-demand-rerun"),
        pytest.param(report("PASS", "step", [action("promote", "done")]), "worse", MOVED_ON, id="step-moved-on"),
        pytest.param(report("PASS", "step", [action("schedule", "done"), action("promote", "already done")]), "always",
                     MOVED_ON, id="step-moved-on-redelivered"),
        pytest.param(report("PASS", "step", [action("promote", "done", planned=False)]), "worse", "",
                     id="step-completed-the-rollout"),
        pytest.param(report("PASS", "step", [action("promote", "held", planned=False)]), "worse", "",
                     id="step-held-on-a-changed-split"),
        pytest.param(report("PASS", "step", [action("promote", "skipped")]), "worse", "", id="step-move-skipped"),
        pytest.param(report("PASS", "step", [action("rollback", "done")]), "worse", "", id="step-a-rollback-is-no-move-on"),
        pytest.param(report("PASS", "step", [action("promote", "refused")]), "worse", "", id="step-move-refused"),
        pytest.param(report("PASS", "step", [action("promote", "done"), action("promote", "failed")]), "worse", "",
                     id="step-any-failed-move-is-posted"),
        pytest.param(report("PASS", "step", [action("promote", "done"), action("schedule", "failed")]), "worse",
                     MOVED_ON, id="step-a-failed-schedule-alone-is-not-a-failed-move"),
        pytest.param(report("WARN", "step", [action("promote", "held", planned=False)]), "worse", "", id="step-warn"),
        pytest.param(report("FAIL", "step", [action("rollback", "done")]), "worse", "", id="step-fail-rolled-back"),
        pytest.param(report("PASS", "follow-up", [], of="PASS"), "worse", no_worse("PASS", "PASS"), id="follow-up-same"),
        pytest.param(report("PASS", "follow-up", None, of="WARN"), "worse", no_worse("PASS", "WARN"),
                     id="follow-up-better"),
        pytest.param(report("WARN", "follow-up", [], of="PASS"), "worse", "", id="follow-up-worse"),
        pytest.param(report("FAIL", "follow-up", [], of="WARN"), "worse", "", id="follow-up-fail-after-warn"),
        pytest.param(report("INCONCLUSIVE", "follow-up", [], of="PASS"), "worse", no_worse("INCONCLUSIVE", "PASS"),
                     id="follow-up-inconclusive"),
        pytest.param(report("PASS", "follow-up", [], of="PASS"), "always", "", id="follow-up-always"),
        pytest.param(report("PASS", "follow-up", []), "worse", no_worse("PASS", "?"), id="follow-up-of-unknown"),
        pytest.param({"verdict": "PASS", "rerun": {"kind": "follow-up", "of": None}}, "worse", no_worse("PASS", "?"),
                     id="follow-up-of-none"),
        pytest.param(report("FAIL", "follow-up", [action("rollback", "done")], of="FAIL"), "worse", "",
                     id="follow-up-rolled-back"),
        pytest.param(report("FAIL", "follow-up", [action("rollback", "already done")], of="FAIL"), "worse", "",
                     id="follow-up-already-rolled-back"),
        pytest.param(report("FAIL", "follow-up", [action("rollback", "skipped")], of="FAIL"), "worse",
                     no_worse("FAIL", "FAIL"), id="follow-up-rollback-skipped"),
        pytest.param(report("FAIL", "follow-up", [action("rollback", "refused")], of="FAIL"), "worse", "",
                     id="follow-up-rollback-refused"),
        pytest.param(report("PASS", "follow-up", [action("promote", "done")], of="PASS"), "worse",
                     no_worse("PASS", "PASS"), id="follow-up-a-promotion-is-no-rollback"),
    ],
)
def test_why_quiet(rep: dict[str, Any], notify: str, quiet: str) -> None:
    assert why_quiet(rep, notify) == quiet


# --- the rollout as the report records it ---------------------------------------------------------------------------

ROLLOUT = Rollout(STEPS, (rev(OLD, 70, "blue"), latest(30, resolved=OTHER), rev(NEW, 0, "canary")), 300.0)


def test_a_rollout_round_trips_through_the_report() -> None:
    recorded = ROLLOUT.to_dict(2)
    assert recorded == {
        "steps": [10, 50, 100], "wait_s": 300.0, "step": 2,
        "base": [{"type": "REVISION", "revision": OLD, "percent": 70, "tag": "blue"},
                 {"type": "LATEST", "revision": OTHER, "percent": 30, "tag": ""},
                 {"type": "REVISION", "revision": NEW, "percent": 0, "tag": "canary"}],
    }
    assert Rollout.from_dict(recorded) == ROLLOUT
    assert Rollout.from_dict(json.loads(json.dumps(recorded))) == ROLLOUT


@pytest.mark.parametrize(("steps", "wait_s"), [pytest.param([1, 100], 1, id="a-first-step-of-1-percent"),
                                               pytest.param([100], 0, id="no-wait")])
def test_the_edges_of_a_rollout_are_one_percent_and_no_wait(steps: list[int], wait_s: int) -> None:
    read = Rollout.from_dict({"steps": steps, "wait_s": wait_s, "base": [{"revision": OLD, "percent": 100}]})
    assert read == Rollout(tuple(steps), (rev(OLD, 100),), float(wait_s))


def test_a_rollout_reads_what_json_may_have_left_out_and_refuses_numbers_spelled_as_text() -> None:
    read = Rollout.from_dict({"steps": [10, 100], "wait_s": 60, "base": [
        {"percent": 100}, {"revision": None, "percent": 0, "tag": None, "type": "LATEST"}]})
    assert read == Rollout((10, 100), (TrafficInfo("", 100), latest(0)), 60.0)
    assert read is not None and isinstance(read.wait_s, float) and isinstance(read.steps, tuple)
    assert Rollout.from_dict({"steps": ["10", 100], "wait_s": 60, "base": [{"percent": 100}]}) is None
    assert Rollout.from_dict({"steps": [10, 100], "wait_s": "60", "base": [{"percent": 100}]}) is None
    assert Rollout.from_dict({"steps": [10, 100], "wait_s": 60, "base": [{"percent": "100"}]}) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="a-list"),
        pytest.param("rollout", id="a-string"),
        pytest.param({}, id="empty"),
        pytest.param({"base": [], "wait_s": 1}, id="no-steps"),
        pytest.param({"steps": [100], "wait_s": 1}, id="no-base"),
        pytest.param({"steps": [100], "base": []}, id="no-wait"),
        pytest.param({"steps": None, "base": [], "wait_s": 1}, id="steps-none"),
        pytest.param({"steps": [None], "base": [], "wait_s": 1}, id="a-step-none"),
        pytest.param({"steps": ["half"], "base": [], "wait_s": 1}, id="a-step-not-a-number"),
        pytest.param({"steps": [100], "base": None, "wait_s": 1}, id="base-none"),
        pytest.param({"steps": [100], "base": ["orders"], "wait_s": 1}, id="an-entry-not-a-mapping"),
        pytest.param({"steps": [100], "base": [{"revision": OLD}], "wait_s": 1}, id="an-entry-without-percent"),
        pytest.param({"steps": [100], "base": [{"percent": "all"}], "wait_s": 1}, id="a-percent-not-a-number"),
        pytest.param({"steps": [100], "base": [{"percent": None}], "wait_s": 1}, id="a-percent-none"),
        pytest.param({"steps": [100], "base": [], "wait_s": None}, id="wait-none"),
        pytest.param({"steps": [100], "base": [], "wait_s": "soon"}, id="wait-not-a-number"),
        pytest.param({"steps": "1050", "base": [{"percent": 100}], "wait_s": 1}, id="steps-a-string"),
        pytest.param({"steps": [], "base": [{"percent": 100}], "wait_s": 1}, id="steps-empty"),
        pytest.param({"steps": [50, 10, 100], "base": [{"percent": 100}], "wait_s": 1}, id="steps-not-increasing"),
        pytest.param({"steps": [10, 10, 100], "base": [{"percent": 100}], "wait_s": 1}, id="a-step-twice"),
        pytest.param({"steps": [0, 100], "base": [{"percent": 100}], "wait_s": 1}, id="a-step-at-0"),
        pytest.param({"steps": [10, 50], "base": [{"percent": 100}], "wait_s": 1}, id="steps-not-ending-at-100"),
        pytest.param({"steps": [10.5, 100], "base": [{"percent": 100}], "wait_s": 1}, id="a-step-not-whole"),
        pytest.param({"steps": [True, 100], "base": [{"percent": 100}], "wait_s": 1}, id="a-step-boolean"),
        pytest.param({"steps": [100], "base": "", "wait_s": 1}, id="base-a-string"),
        pytest.param({"steps": [100], "base": [{"percent": 60}], "wait_s": 1}, id="base-not-100"),
        pytest.param({"steps": [100], "base": [{"percent": 100.0}], "wait_s": 1}, id="a-percent-not-whole"),
        pytest.param({"steps": [100], "base": [{"percent": 100}], "wait_s": -1}, id="wait-negative"),
        pytest.param({"steps": [100], "base": [{"percent": 100}], "wait_s": True}, id="wait-boolean"),
    ],
)
def test_a_malformed_rollout_is_none(data: Any) -> None:
    assert Rollout.from_dict(data) is None


def test_a_resumed_promotion_without_the_service_read_counts_latest_as_another_revision() -> None:
    recorded = Rollout(STEPS, (rev(OLD, 70), latest(30)), 60.0)
    tgt = replace(target(()), service_info=None)
    assert resumed_plan(tgt, recorded).after == (rev(OLD, 63), latest(27), rev(NEW, 10))
