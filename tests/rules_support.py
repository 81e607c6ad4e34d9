"""Shared pieces of the contact-rule tests (no tests here): zones, instants, attempts, one-call decide."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.rules import (
    BorrowerFlags,
    ContactAttempt,
    ContactDecision,
    ContactRecord,
    Limits,
    LoanContext,
    PackCode,
    PastContact,
    decide,
    narrow,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
LDN = ZoneInfo("Europe/London")
ZONE = {PackCode.CN: SH, PackCode.US: NY, PackCode.UK: LDN}
DAY = date(2026, 11, 18)  # a Wednesday, no DST change in any of the zones
PACKS_ALL = list(PackCode)
LOAN_ID = "L-1"


def at(h: int, m: int = 0, day: date = DAY, tz: ZoneInfo = SH, fold: int = 0) -> datetime:
    return datetime.combine(day, time(h, m), tzinfo=tz).replace(fold=fold)


def attempt(channel: str = "sms", actor: str | None = None, purpose: str = "collection", notice: str | None = None,
            loan_id: str = LOAN_ID, key: str = "A-1") -> ContactAttempt:
    if actor is None:
        actor = {"call": "agent", "visit": "agent"}.get(channel, "system")
    return ContactAttempt.model_validate({"key": key, "loan_id": loan_id, "channel": channel, "actor": actor,
                                          "purpose": purpose, "notice": notice})


def loan(pack: PackCode | str = PackCode.CN, loan_id: str = LOAN_ID, **kw: Any) -> LoanContext:
    """A loan ready for collection in `pack`: in the US its validation notice and first message went
    long ago (so US.validation_first and US.passive_reporting stay quiet unless a test says so)."""
    if PackCode(pack) == PackCode.US:
        long_ago = datetime(2026, 1, 5, 10, tzinfo=NY)
        kw.setdefault("validation_sent_at", long_ago)
        kw.setdefault("first_message_at", long_ago)
    return LoanContext(loan_id=loan_id, **kw)


def past(when: datetime, channel: str = "sms", loan_id: str = LOAN_ID, key: str | None = None,
         actor: str | None = None, conversation: bool = False) -> PastContact:
    if actor is None:
        actor = {"call": "agent", "visit": "agent"}.get(channel, "system")
    return PastContact(at=when, key=key or f"P-{when.isoformat()}-{channel}-{loan_id}", loan_id=loan_id,
                       channel=channel, actor=actor, conversation=conversation)  # type: ignore[arg-type]


def record(*contacts: PastContact) -> ContactRecord:
    return ContactRecord(contacts=list(contacts))


def ask(pack: PackCode | str, a: ContactAttempt, now: datetime, *, ln: LoanContext | None = None,
        rec: ContactRecord | None = None, flags: BorrowerFlags | None = None,
        limits: Limits | None = None) -> ContactDecision:
    return decide(a, ln or loan(pack, loan_id=a.loan_id), rec or ContactRecord(), flags or BorrowerFlags(),
                  limits or narrow(pack), pack, now)


def days(n: int) -> timedelta:
    return timedelta(days=n)
