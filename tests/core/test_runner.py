"""The check runner: concurrency, per-check timeouts, crashes become ERROR, disabled checks stay out."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from core.model import CheckContext, CheckResult, Status, Target
from core.runner import run_checks


def check(name: str, behaviour: Any, category: str = "Business") -> Any:
    async def run(target: Target, config: Any, ctx: CheckContext) -> CheckResult:
        return await behaviour()

    return SimpleNamespace(NAME=name, CATEGORY=category, run=run)


def settings(**checks: dict[str, Any]) -> SimpleNamespace:
    defaults = {"enabled": True, "critical": False, "timeout_s": 5.0, "category": None}
    return SimpleNamespace(checks=SimpleNamespace(**{n: SimpleNamespace(**{**defaults, **c}) for n, c in checks.items()}))


async def sleeper(seconds: float) -> CheckResult:
    await asyncio.sleep(seconds)
    return CheckResult(Status.PASS, f"slept {seconds}")


async def crasher() -> CheckResult:
    raise KeyError("boom")


def test_timeouts_and_crashes_become_errors_and_checks_run_concurrently() -> None:
    registry = {
        "slow": check("slow", lambda: sleeper(5)),
        "quick": check("quick", lambda: sleeper(0.3)),
        "quick2": check("quick2", lambda: sleeper(0.3), category="Testing"),
        "broken": check("broken", crasher),
        "off": check("off", lambda: sleeper(0)),
    }
    cfg = settings(slow={"timeout_s": 0.5}, quick={}, quick2={"critical": True}, broken={}, off={"enabled": False})
    started = time.monotonic()
    outcomes = asyncio.run(run_checks(Target(service="s"), cfg, registry, CheckContext(http=None, deadline=time.monotonic() + 30)))
    elapsed = time.monotonic() - started
    by_name = {o.name: o for o in outcomes}
    assert list(by_name) == ["slow", "quick", "quick2", "broken"]
    assert by_name["slow"].result.status is Status.ERROR
    assert by_name["slow"].result.summary == "check 'slow' did not finish within 0.5 s"
    assert by_name["broken"].result.status is Status.ERROR
    assert by_name["broken"].result.summary == "check 'broken' crashed: KeyError: 'boom'"
    assert by_name["quick"].result.status is Status.PASS and by_name["quick2"].critical
    assert by_name["quick2"].category == "Testing"
    assert elapsed < 0.5 + 0.3 + 0.3  # concurrent: bounded by the slowest, not the sum


def test_the_deadline_caps_every_check() -> None:
    registry = {"slow": check("slow", lambda: sleeper(5))}
    outcomes = asyncio.run(run_checks(Target(service="s"), settings(slow={"timeout_s": 60}), registry,
                                      CheckContext(http=None, deadline=time.monotonic() + 0.3)))
    assert outcomes[0].result.status is Status.ERROR
    assert "did not finish within 0.3 s" in outcomes[0].result.summary


def test_a_hung_worker_thread_does_not_hold_the_acknowledgement() -> None:
    from core.pipeline import _run_detached

    async def check_with_a_stuck_call() -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(time.sleep, 3), 0.2)
        except TimeoutError:
            return "timed out"
        return "finished"

    started = time.monotonic()
    assert _run_detached(check_with_a_stuck_call()) == "timed out"
    assert time.monotonic() - started < 2  # asyncio.run would have joined the sleeping thread (3 s)


def test_a_crash_is_not_measured_with_the_fix_and_a_result_may_decide_its_criticality() -> None:
    from google.auth.exceptions import DefaultCredentialsError

    from core.errors import NoCredentials
    from core.runner import BUG_FIX

    async def no_credentials() -> CheckResult:
        raise DefaultCredentialsError("Your default credentials were not found")

    async def critical_item() -> CheckResult:
        return CheckResult(Status.FAIL, "a critical path failed", critical=True)

    async def not_critical_here() -> CheckResult:
        return CheckResult(Status.FAIL, "nothing to compare with", critical=False)

    registry = {"creds": check("creds", no_credentials), "bug": check("bug", crasher),
                "item": check("item", critical_item), "quiet": check("quiet", not_critical_here)}
    cfg = settings(creds={}, bug={}, item={}, quiet={"critical": True})
    outcomes = {o.name: o for o in asyncio.run(run_checks(Target(service="s"), cfg, registry,
                                                          CheckContext(http=None, deadline=time.monotonic() + 30)))}
    assert [n.fix for n in outcomes["creds"].result.not_measured] == [NoCredentials.fix]
    assert [n.fix for n in outcomes["bug"].result.not_measured] == [BUG_FIX]
    assert outcomes["creds"].result.status is Status.ERROR and outcomes["bug"].result.status is Status.ERROR
    assert (outcomes["item"].critical, outcomes["quiet"].critical) == (True, False)
