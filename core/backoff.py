"""Bounded retries with doubling pauses inside a deadline, for the Google reads the checks make."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import Transient

T = TypeVar("T")
BACKOFF_MAX_S = 16.0


class Retryable(Exception):
    """An answer worth another attempt after a pause (429, 5xx, unreachable); the message says which."""


async def with_backoff(call: Callable[[], T], *, attempts: int, first_pause_s: float, deadline: float,
                       unavailable: type[Transient]) -> tuple[T, int]:
    """Run ``call`` in a thread until it stops raising Retryable; return its result and the attempts made.

    Gives up with ``unavailable`` after ``attempts`` or when the next pause would pass the deadline.
    """
    pause = first_pause_s
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.to_thread(call), attempt
        except Retryable as exc:
            left = deadline - time.monotonic() if deadline else float("inf")
            if attempt == attempts or left < pause:
                raise unavailable(f"{exc} after {attempt} attempt{'s' * (attempt > 1)}") from exc.__cause__
            await asyncio.sleep(pause)
            pause = min(pause * 2, BACKOFF_MAX_S)
    raise AssertionError("unreachable")  # attempts >= 1
