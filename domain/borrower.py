"""The borrower's book: one person's flags and one contact record for all their loans.

`BorrowerWorkflow` (`borrower-<borrower_id>`) holds a `BorrowerBook` and does only what it says:
every contact with the person, from any of their loans, a plan's child, our agents or a placed
agency, is decided here against the one record (domain.rules.decide), so the caps hold per person;
the person's flags (opt-outs, cease contact, breathing space, bankruptcy, deceased) are kept here and
passed on to every open loan. Pure: no I/O, no temporalio; the workflow and the property tests drive
it the same way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field

from .base import Model, Stage
from .models import Event, LoanState, Outcome
from .rules import (
    Actor,
    BorrowerFlags,
    ContactAttempt,
    ContactDecision,
    ContactRecord,
    Limits,
    LoanContext,
    PackCode,
    PastContact,
    Verdict,
    decide,
)

BORROWER_EVENTS = 500
"""The borrower's audit trail keeps its newest events (flags, loans joining and closing); every flag
change is also in each loan's own trail, which is the record of the debt."""
DECISIONS_KEPT_DAYS = 8
"""Allowed decisions are remembered by attempt key this long (an activity retried with the same key
gets the same answer and is counted once)."""

FlagSignal = Literal["opt_out", "opt_in", "cease_contact", "breathing_space", "bankruptcy", "deceased", "clear_flag"]
FLAG_SIGNALS: tuple[str, ...] = ("opt_out", "opt_in", "cease_contact", "breathing_space", "bankruptcy", "deceased",
                                 "clear_flag")
STANDING_FLAGS = ("opted_out", "cease_contact", "bankruptcy", "deceased")
"""Flags that are the person's standing instructions or status: while any is set, the entity stays
(idle, costing nothing) after the last loan closes, so a new loan of the person inherits them."""


# --------------------------------------------------------------------------------------------
# What the loans and the borrower tell each other (the project's own messages)
# --------------------------------------------------------------------------------------------


class BorrowerInput(Model):
    borrower_id: str = Field(min_length=1, max_length=64)
    timezone: str = "Asia/Shanghai"
    rule_pack: PackCode = PackCode.CN
    retention_days: int = Field(default=730, ge=0, le=3650)
    """How long an entity holding standing flags waits, idle, for a new loan after the last one closed."""
    continue_as_new_after_events: int = Field(default=5_000, ge=100, le=50_000)
    """The entity continues as new (carrying its book) past this many history events (about 1,000 contacts)."""


class LoanNote(Model):
    """A loan tells its borrower where it stands (signal `loan_changed`; signal-with-start at intake)."""

    loan_id: str = Field(min_length=1, max_length=64)
    state: LoanState
    stage: Stage | None = None
    outcome: Outcome | None = None
    rule_pack: PackCode = PackCode.CN
    timezone: str = "Asia/Shanghai"
    at: AwareDatetime


class ContactQuestion(Model):
    """A loan (or its plan, an agent or an agency through it) asks: may this contact go now?
    (update `decide_contact` on `borrower-<id>`)."""

    attempt: ContactAttempt
    loan: LoanContext
    pack: PackCode
    limits: Limits
    state: LoanState | None = None
    stage: Stage | None = None
    """Where the loan stands (keeps the borrower's list of loans current at no extra cost)."""


class GateRequest(Model):
    """What a send activity carries to ask the borrower before it sends (lazy loans of borrower-v1):
    the question, and the loan's note in case the borrower's entity has to be (re)started."""

    borrower_id: str
    question: ContactQuestion
    note: LoanNote


class ContactFailed(Model):
    """An allowed contact that never reached the person (a permanent delivery failure): not counted."""

    key: str = Field(min_length=1)


class Conversation(Model):
    """A telephone conversation about a loan took place (US: the 7-day call cool-off starts)."""

    key: str = Field(min_length=1)
    loan_id: str = Field(min_length=1)
    at: AwareDatetime
    actor: Actor = Actor.AGENT


class FlagsNotice(Model):
    """The borrower tells each open loan its flags after a change (signal `borrower_flags`)."""

    seq: int
    """Increases with every change: a loan ignores a notice older than the one it has."""
    flags: BorrowerFlags
    change: str
    """The signal that changed them (opt_out, cease_contact, ...), or `joined` for a loan's first notice."""
    details: dict[str, Any] = Field(default_factory=dict)
    operator_id: str | None = None
    at: AwareDatetime


class ClearFlag(Model):
    """An operator lifts a flag (project's own signal `clear_flag`): cease_contact, breathing_space,
    bankruptcy or deceased (an opt-out is lifted by `opt_in`)."""

    flag: Literal["cease_contact", "breathing_space", "bankruptcy", "deceased"]
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = Field(default=None, min_length=1, max_length=128)


class BorrowerLoan(Model):
    loan_id: str
    state: LoanState
    stage: Stage | None = None
    outcome: Outcome | None = None
    rule_pack: PackCode = PackCode.CN
    joined_at: AwareDatetime
    updated_at: AwareDatetime

    @property
    def open(self) -> bool:
        return self.state != LoanState.CLOSED


class BorrowerStatus(Model):
    """The query `status` of `borrower-<id>` (the contract's fields first)."""

    borrower_id: str
    loans: list[dict[str, Any]]
    flags: BorrowerFlags
    contacts_today: int
    rule_pack: PackCode
    open_loans: int
    contacts: list[PastContact] = Field(default_factory=list)
    """The recent contacts the rules can still need (the last 8 days or so)."""
    events: list[Event] = Field(default_factory=list)
    flags_seq: int = 0
    as_of: AwareDatetime | None = None
    """The instant `contacts_today` is counted at: the entity's last wake (a query cannot see the clock
    move), in the borrower's zone."""


# --------------------------------------------------------------------------------------------
# The book
# --------------------------------------------------------------------------------------------


class BorrowerBook(Model):
    borrower_id: str
    timezone: str
    rule_pack: PackCode
    retention_days: int = 730
    flags: BorrowerFlags = Field(default_factory=BorrowerFlags)
    flags_seq: int = 0
    record: ContactRecord = Field(default_factory=ContactRecord)
    allowed: dict[str, AwareDatetime] = Field(default_factory=dict)
    """Attempt key -> when it was allowed (idempotency of counting; pruned with the record)."""
    loans: list[BorrowerLoan] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    last_closed_at: AwareDatetime | None = None

    @classmethod
    def open(cls, inp: BorrowerInput) -> BorrowerBook:
        return cls(borrower_id=inp.borrower_id, timezone=inp.timezone, rule_pack=inp.rule_pack,
                   retention_days=inp.retention_days)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.zone)

    def _event(self, at: datetime, kind: str, **details: object) -> None:
        self.events.append(Event(at=self.local(at), kind=kind, details=details))
        if len(self.events) > BORROWER_EVENTS:
            del self.events[: len(self.events) - BORROWER_EVENTS]

    # ------------------------------------------------------------------ loans

    def loan(self, loan_id: str) -> BorrowerLoan | None:
        return next((entry for entry in self.loans if entry.loan_id == loan_id), None)

    @property
    def open_loans(self) -> list[BorrowerLoan]:
        return [entry for entry in self.loans if entry.open]

    def note(self, n: LoanNote) -> tuple[bool, bool]:
        """A loan's news. Answers (joined: a loan new to this entity, changed: anything changed)."""
        entry = self.loan(n.loan_id)
        if entry is None:
            self.loans.append(BorrowerLoan(loan_id=n.loan_id, state=n.state, stage=n.stage, outcome=n.outcome,
                                           rule_pack=n.rule_pack, joined_at=n.at, updated_at=n.at))
            if not any(e.open for e in self.loans if e.loan_id != n.loan_id):
                self.rule_pack = n.rule_pack  # the person's pack follows the loans they have now
            self._event(n.at, "loan_joined", loan_id=n.loan_id, state=n.state.value,
                        stage=n.stage.value if n.stage else None)
            if n.state == LoanState.CLOSED:
                self.last_closed_at = n.at
            return True, True
        if n.at < entry.updated_at:
            return False, False  # older news than what we have
        changed = (entry.state, entry.stage, entry.outcome) != (n.state, n.stage, n.outcome)
        was_open = entry.open
        entry.state, entry.stage, entry.outcome, entry.updated_at = n.state, n.stage, n.outcome, n.at
        if changed and was_open and not entry.open:
            self.last_closed_at = n.at
            self._event(n.at, "loan_closed", loan_id=n.loan_id, outcome=n.outcome.value if n.outcome else None)
        elif changed and not was_open and entry.open:
            self._event(n.at, "loan_reopened", loan_id=n.loan_id, state=n.state.value)
        return False, changed

    def finished(self, now: datetime) -> bool:
        """Whether the entity may end: no open loan, and no standing flag left to keep for the next
        loan of the person (or it has waited `retention_days` for one)."""
        if not self.loans or self.open_loans:
            return False
        if not self.holds_standing_flags:
            return True
        return self.last_closed_at is not None and now >= self.last_closed_at + timedelta(days=self.retention_days)

    @property
    def holds_standing_flags(self) -> bool:
        f = self.flags
        return bool(f.opted_out or f.cease_contact or f.bankruptcy or f.deceased)

    def wait_until(self) -> datetime | None:
        """When the idle entity ends by itself (its retention), if it waits for nothing else."""
        if self.open_loans or not self.holds_standing_flags or self.last_closed_at is None:
            return None
        return self.last_closed_at + timedelta(days=self.retention_days)

    # ------------------------------------------------------------------ flags

    def apply_flag(self, signal: str, body: dict[str, Any], now: datetime,
                   default_breathing_days: int = 60) -> tuple[bool, str | None]:
        """Apply one of the contract's borrower signals (or `clear_flag`). Answers (changed, error);
        an error changes nothing and is recorded with the reason."""
        body = dict(body)
        operator = body.pop("operator_id", None)
        if operator is not None and (not isinstance(operator, str) or not 0 < len(operator) <= 128):
            return self.reject(signal, "operator_id must be a text of 1 to 128 characters", now)
        try:
            if signal == "clear_flag":
                clear = ClearFlag.model_validate({**body, "operator_id": operator})
                flags, changed = self.flags.without(clear.flag)
            else:
                flags, changed = self.flags.apply(signal, body, default_breathing_days)
        except ValueError as err:
            return self.reject(signal, _reason(err), now)
        details = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in body.items()}
        if not changed:
            self._event(now, "flag_unchanged", signal=signal, **details, **_by(operator))
            return False, None
        self.flags = flags
        self.flags_seq += 1
        self._event(now, "flag_changed", signal=signal, **details, **_by(operator),
                    flags=flags.model_dump(mode="json"))
        return True, None

    def reject(self, signal: str, reason: str, now: datetime) -> tuple[bool, str]:
        self._event(now, "rejected", signal=signal, reason=reason)
        return False, reason

    def notice(self, now: datetime, change: str, operator_id: str | None = None, **details: Any) -> FlagsNotice:
        return FlagsNotice(seq=self.flags_seq, flags=self.flags, change=change, details=details,
                           operator_id=operator_id, at=now)

    # ------------------------------------------------------------------ contacts

    def decide(self, q: ContactQuestion, now: datetime) -> ContactDecision:
        """One decision for one attempt against the person's one record. An allowed attempt counts at
        once (so two loans asking at the same moment cannot both take the last contact of the day);
        the same attempt asked again (a retried activity) gets the same answer and counts once."""
        key = q.attempt.key
        self._keep_current(q, now)
        if key in self.allowed:
            return ContactDecision(verdict=Verdict.ALLOW, rule=f"{q.pack.value}.allowed",
                                   explanation="already allowed (the same attempt asked again)",
                                   citation="idempotent by attempt key")
        decision = decide(q.attempt, q.loan, self.record, self.flags, q.limits, q.pack, self.local(now))
        if decision.verdict == Verdict.ALLOW:
            self.record, _ = self.record.add(PastContact.of(q.attempt, self.local(now)))
            self.allowed[key] = now
        self._prune(now, q.limits.retention_days)
        return decision

    def contact_failed(self, f: ContactFailed, now: datetime) -> bool:
        """An allowed contact did not reach the person: it no longer counts."""
        if f.key not in self.allowed:
            return False
        self.record = ContactRecord(contacts=[c for c in self.record.contacts if c.key != f.key])
        del self.allowed[f.key]
        return True

    def conversation(self, c: Conversation) -> bool:
        self.record, changed = self.record.flag_conversation(c.key, loan_id=c.loan_id, at=self.local(c.at),
                                                             actor=c.actor)
        return changed

    def _keep_current(self, q: ContactQuestion, now: datetime) -> None:
        entry = self.loan(q.loan.loan_id)
        if entry is not None and q.state is not None and entry.open and q.state != LoanState.CLOSED:
            entry.state = q.state
            entry.stage = q.stage
            entry.updated_at = max(entry.updated_at, now)

    def _prune(self, now: datetime, keep_days: int) -> None:
        self.record, _ = self.record.prune(now, max(keep_days, DECISIONS_KEPT_DAYS))
        cutoff = now.astimezone(UTC) - timedelta(days=max(keep_days, DECISIONS_KEPT_DAYS))
        for key in [k for k, at in self.allowed.items() if at.astimezone(UTC) < cutoff]:
            del self.allowed[key]

    # ------------------------------------------------------------------ reading

    def status(self, now: datetime) -> BorrowerStatus:
        return BorrowerStatus(
            borrower_id=self.borrower_id,
            loans=[{"loan_id": e.loan_id, "state": e.state.value, "stage": e.stage.value if e.stage else None,
                    "outcome": e.outcome.value if e.outcome else None} for e in self.loans],
            flags=self.flags,
            contacts_today=self.record.contacts_today(self.local(now)),
            rule_pack=self.rule_pack,
            open_loans=len(self.open_loans),
            contacts=list(self.record.contacts),
            events=list(self.events[-200:]),
            flags_seq=self.flags_seq,
            as_of=self.local(now),
        )


def _by(operator_id: str | None) -> dict[str, str]:
    return {"operator_id": operator_id} if operator_id else {}


def _reason(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        parts = []
        for e in errors():
            where = ".".join(str(p) for p in e["loc"]) or "body"
            parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        return "; ".join(parts)
    return str(err)
