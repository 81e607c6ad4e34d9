"""The loan's clock: real (workflow) time mapped to the loan's calendar in the borrower's zone.

In production one loan day is one real day and the mapping is the identity. The demo and the strategy
simulator compress days (`Policy.day_length_seconds`): loan time runs `scale` times faster than real time
from the moment the clock was set. Day boundaries are midnights of the borrower's time zone in loan time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime

from .models import Model


class LoanClock(Model):
    real_origin: AwareDatetime
    loan_origin: AwareDatetime
    day_length_seconds: float = 86400
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def _scale(self) -> Decimal:
        return Decimal(86400) / Decimal(str(self.day_length_seconds))

    def loan_time(self, real: datetime) -> datetime:
        """The loan-calendar instant (in the borrower's zone) for a real instant."""
        if self.day_length_seconds == 86400:
            return real.astimezone(self.zone)
        # Absolute (UTC) arithmetic: adding a timedelta to a zone-aware datetime is wall-clock arithmetic,
        # which would shift the loan calendar by the DST change and differ from the same clock after a
        # round trip through JSON (continue-as-new), where the origin comes back with a fixed offset.
        real_elapsed = real.astimezone(UTC) - self.real_origin.astimezone(UTC)
        elapsed = Decimal(str(real_elapsed.total_seconds())) * self._scale
        return (self.loan_origin.astimezone(UTC) + timedelta(seconds=float(elapsed))).astimezone(self.zone)

    def real_time(self, loan: datetime) -> datetime:
        """The real instant at which the loan calendar reaches `loan`."""
        if self.day_length_seconds == 86400:
            return loan.astimezone(UTC)
        loan_elapsed = loan.astimezone(UTC) - self.loan_origin.astimezone(UTC)
        elapsed = Decimal(str(loan_elapsed.total_seconds())) / self._scale
        return (self.real_origin.astimezone(UTC) + timedelta(seconds=float(elapsed))).astimezone(UTC)

    def real_duration(self, loan_seconds: float) -> timedelta:
        return timedelta(seconds=float(Decimal(str(loan_seconds)) / self._scale))

    def local_midnight(self, day: date) -> datetime:
        """The start of `day` in the borrower's zone (handles DST: first valid instant of the day)."""
        return datetime.combine(day, time(0), tzinfo=self.zone)

    def at_local(self, day: date, t: time) -> datetime:
        return datetime.combine(day, t, tzinfo=self.zone)


def start_clock(real_now: datetime, timezone: str, day_length_seconds: float) -> LoanClock:
    return LoanClock(
        real_origin=real_now.astimezone(UTC),
        loan_origin=real_now.astimezone(ZoneInfo(timezone)),
        day_length_seconds=day_length_seconds,
        timezone=timezone,
    )
