"""Waiting on the loan's clock: one durable timer, woken early by a condition."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.clock import LoanClock

MIN_TIMER = timedelta(milliseconds=100)
"""Every wait yields: with compressed days a wake a few loan-seconds ahead rounds to no real time,
and workflow.now() does not move within an activation, so a zero wait would spin."""


async def wait_until(clock: LoanClock, wake: datetime, condition: Callable[[], bool], summary: str) -> None:
    """Wait until `condition()` holds or the loan clock reaches `wake`, whichever comes first."""
    timeout = max(clock.real_time(wake) - workflow.now(), MIN_TIMER)
    try:
        await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
    except TimeoutError:
        pass  # the timer fired: the caller looks again at the new loan time
