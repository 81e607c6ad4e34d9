"""Demo mode: what only `collections demo` may do, and the one switch that allows it.

`Policy.day_length_seconds` (one loan day in real seconds) exists so the demo can run a loan's
months in minutes. Anywhere else a compressed day would accrue interest, escalate and contact
borrowers hundreds of times too fast, so the worker refuses such a loan (failing its workflow with
a non-retryable `CompressedDayRefused` naming the field) and `collections intake` refuses such a
policy, unless the process runs in demo mode: COLLECTIONS_DEMO=1 (or `python -m worker --demo`,
`collections intake --demo`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEMO_ENV = "COLLECTIONS_DEMO"
REAL_DAY_SECONDS = 86400
COMPRESSED_DAY_REFUSED = "CompressedDayRefused"
"""The ApplicationError type of the workflow failure the worker answers a compressed day with."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def demo_mode(env: Mapping[str, str] | None = None) -> bool:
    """COLLECTIONS_DEMO as a switch (1/true/yes/on or 0/false/no/off); ValueError for anything else."""
    raw = ((os.environ if env is None else env).get(DEMO_ENV) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{DEMO_ENV} must be 1 or 0 (true/false), not {raw!r}")


def day_length_of(policy: Any) -> Any:
    """A policy's day_length_seconds, from a Policy, a policy dict (a workflow's raw input) or None."""
    if policy is None:
        return None
    if isinstance(policy, Mapping):
        return policy.get("day_length_seconds")
    return getattr(policy, "day_length_seconds", None)


def compresses_time(day_length: Any) -> bool:
    """Whether a day_length_seconds value makes a loan day anything but a real day."""
    if day_length is None:
        return False
    try:
        return float(day_length) != REAL_DAY_SECONDS
    except (TypeError, ValueError):
        return True


def compressed_day_reason(day_length: Any) -> str:
    return (f"policy.day_length_seconds is {day_length}: one loan day must last {REAL_DAY_SECONDS} real seconds; "
            f"a compressed day is for `collections demo` only (a process in demo mode: {DEMO_ENV}=1, "
            "`python -m worker --demo`, `collections intake --demo`)")
