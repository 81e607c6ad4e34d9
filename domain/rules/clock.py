"""Local time for the rules: the borrower's day, the contact window, instants across DST.

Two traps this module exists to avoid. Adding a timedelta to a zone-aware datetime is wall-clock
arithmetic, and two datetimes with the same tzinfo compare by wall time, ignoring the offset; so
elapsed-time rules ("7 days after the warning") work in UTC, and calendar rules ("3 contacts a
day", "7 consecutive days") work on local dates. A wall time that does not exist (skipped by DST)
or exists twice (repeated) is resolved to a real instant, never an error.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from .limits import Limits


def zone_of(now_local: datetime) -> tzinfo:
    """The borrower's zone from an aware local instant; a naive one is a ValueError."""
    if now_local.tzinfo is None or now_local.utcoffset() is None:
        raise ValueError(f"now_local must be an aware datetime in the borrower's zone, not {now_local!r}")
    return now_local.tzinfo


def normalize(now_local: datetime) -> datetime:
    """The real instant `now_local` denotes, shown in its own zone (a skipped wall time such as 02:30
    on a spring-forward day becomes the instant it names, 03:30)."""
    zone = zone_of(now_local)
    return now_local.astimezone(UTC).astimezone(zone)


def at_local(day: date, t: time, zone: tzinfo) -> datetime:
    """The earliest real instant on local `day` whose wall time is `t` or, if `t` is skipped by a DST
    jump, the instant right after the jump (shown as its wall time)."""
    candidates = []
    for fold in (0, 1):
        instant = datetime.combine(day, t, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        local = instant.astimezone(zone)
        if local.date() == day and local.time() >= t:
            candidates.append(instant)
    if not candidates:  # t falls in a gap at the very end of the day: the next day's midnight
        candidates.append(datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC))
    return min(candidates).astimezone(zone)


def in_window(now: datetime, limits: Limits) -> bool:
    """Whether local wall time `now` lies in [window_start, window_end)."""
    wall = now.time().replace(tzinfo=None)
    return limits.window_start <= wall < limits.window_end


def window_opens(day: date, limits: Limits, zone: tzinfo) -> datetime:
    """The instant the contact window opens on local `day`."""
    return at_local(day, limits.window_start, zone)


def next_window_open(now: datetime, limits: Limits) -> datetime:
    """The next instant after `now` at which the window opens: today's opening if it is still ahead,
    otherwise tomorrow's."""
    zone = zone_of(now)
    today = window_opens(now.date(), limits, zone)
    if today.astimezone(UTC) > now.astimezone(UTC):
        return today
    return window_opens(now.date() + timedelta(days=1), limits, zone)


def later(a: datetime, b: datetime) -> bool:
    """`a` is strictly after `b` as real instants (whatever their zones)."""
    return a.astimezone(UTC) > b.astimezone(UTC)


def plus_days(instant: datetime, days: int, zone: tzinfo) -> datetime:
    """`days` × 24 hours after `instant` (elapsed time, not wall time), shown in `zone`."""
    return (instant.astimezone(UTC) + timedelta(days=days)).astimezone(zone)
