"""The contact rules' types: who contacts the borrower how and why, what happened before, the
borrower's flags, what the loan tells the decision about itself, and the decision.

The borrower's one contact record (`ContactRecord`) and flags (`BorrowerFlags`) are held by the
borrower's entity workflow; every loan's attempt is decided against them, so caps hold per person.
Every method here is pure: it returns a new value and says whether anything changed, so a signal
applied twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, field_validator, model_validator

from ..base import Model


class ContactChannel(StrEnum):
    """How a contact reaches the borrower. The contract's opt-out channels are sms, email, voice, call."""

    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"  # an automated voice message (IVR)
    CALL = "call"  # a telephone call by a collector: our agent, our voice bot, or a placed agency
    VISIT = "visit"  # a field (home) visit

    @property
    def is_telephone_call(self) -> bool:
        """A telephone call in Regulation F's sense (12 CFR 1006.14(b)(2)): a live or automated call."""
        return self in (ContactChannel.CALL, ContactChannel.VOICE)


OPT_OUT_CHANNELS: tuple[ContactChannel, ...] = (ContactChannel.SMS, ContactChannel.EMAIL, ContactChannel.VOICE,
                                                ContactChannel.CALL)
"""The channels a borrower can opt out of (contract: `opt_out {"channel": sms|email|voice|call}`)."""

_POLICY_CHANNELS: dict[str, ContactChannel | None] = {
    "sms": ContactChannel.SMS, "email": ContactChannel.EMAIL, "voice": ContactChannel.VOICE,
    "call_task": ContactChannel.CALL, "visit_task": ContactChannel.VISIT,
    "agency": None, "legal": None,
}


def contact_channel(policy_channel: str) -> ContactChannel | None:
    """The contact channel of a `domain.policy.Channel` (sms, email, voice, call_task -> call,
    visit_task -> visit), or None for agency and legal, which do not themselves contact the borrower."""
    key = str(getattr(policy_channel, "value", policy_channel))
    if key not in _POLICY_CHANNELS:
        raise ValueError(f"channel {key!r} is not a policy channel ({', '.join(_POLICY_CHANNELS)})")
    return _POLICY_CHANNELS[key]


class Actor(StrEnum):
    SYSTEM = "system"  # our automated messages (sms, email, voice reminders)
    BOT = "bot"  # our automated voice agent working a call task
    AGENT = "agent"  # our human collector
    AGENCY = "agency"  # a placed outside collection agency


class Purpose(StrEnum):
    COLLECTION = "collection"
    PLAN_REMINDER = "plan_reminder"  # an installment of a running plan falls due
    CONFIRMATION = "confirmation"  # e.g. plan accepted, dispute received
    WARNING = "warning"  # credit_report_warning / agency_warning / legal_warning
    VALIDATION = "validation"  # the US validation notice (12 CFR 1006.34)


class Verdict(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    BLOCK = "block"


CREDIT_REPORT_WARNING = "credit_report_warning"
AGENCY_WARNING = "agency_warning"
LEGAL_WARNING = "legal_warning"
WARNING_NOTICES = (CREDIT_REPORT_WARNING, AGENCY_WARNING, LEGAL_WARNING)
REMEDY_NOTICES = (CREDIT_REPORT_WARNING, LEGAL_WARNING)
"""Notices of a specific remedy the creditor intends to invoke: they still go after cease_contact."""


class ContactAttempt(Model):
    """One contact someone wants to make now."""

    key: str = Field(min_length=1)
    """Idempotency key: the same attempt asked twice is the same contact."""
    loan_id: str = Field(min_length=1)
    channel: ContactChannel
    actor: Actor
    actor_id: str | None = None
    purpose: Purpose = Purpose.COLLECTION
    notice: str | None = None
    """The notice kind where it is not an ordinary reminder (e.g. `legal_warning`, `validation`)."""

    @model_validator(mode="after")
    def _coherent(self) -> ContactAttempt:
        if self.channel == ContactChannel.VISIT and self.actor not in (Actor.AGENT, Actor.AGENCY):
            raise ValueError(f"channel visit needs actor agent or agency, not {self.actor.value}")
        if self.purpose == Purpose.WARNING and self.notice not in WARNING_NOTICES:
            raise ValueError(f"notice must be one of {', '.join(WARNING_NOTICES)} for purpose warning, "
                             f"not {self.notice!r}")
        return self


class PastContact(Model):
    """A contact that happened (or was allowed and counts at once)."""

    at: AwareDatetime
    key: str = Field(min_length=1)
    loan_id: str = Field(min_length=1)
    channel: ContactChannel
    actor: Actor
    purpose: Purpose = Purpose.COLLECTION
    conversation: bool = False
    """A telephone conversation about this loan took place (US: starts the 7-day call cool-off)."""

    @classmethod
    def of(cls, attempt: ContactAttempt, at: datetime, conversation: bool = False) -> PastContact:
        return cls(at=at, key=attempt.key, loan_id=attempt.loan_id, channel=attempt.channel, actor=attempt.actor,
                   purpose=attempt.purpose, conversation=conversation)

    def local_date(self, zone: Any) -> date:
        return self.at.astimezone(zone).date()


RETENTION_DAYS = 8
"""What `ContactRecord.prune` keeps by default: the 7 local days the US call rules look at, plus one
for the widest time-zone offset. Pass `limits.retention_days` where a policy lengthened the cool-off."""


class ContactRecord(Model):
    """The borrower's one contact record, across all their loans."""

    contacts: list[PastContact] = Field(default_factory=list)

    def add(self, contact: PastContact) -> tuple[ContactRecord, bool]:
        """The record with `contact` added, and whether it was new (idempotent by key)."""
        if any(c.key == contact.key for c in self.contacts):
            return self, False
        return ContactRecord(contacts=[*self.contacts, contact]), True

    def flag_conversation(self, key: str, *, loan_id: str, at: datetime,
                          channel: ContactChannel = ContactChannel.CALL,
                          actor: Actor = Actor.AGENT) -> tuple[ContactRecord, bool]:
        """Mark the contact `key` as a telephone conversation (adding it if the record lacks it)."""
        for i, c in enumerate(self.contacts):
            if c.key == key:
                if c.conversation:
                    return self, False
                contacts = list(self.contacts)
                contacts[i] = c.model_copy(update={"conversation": True})
                return ContactRecord(contacts=contacts), True
        return self.add(PastContact(at=at, key=key, loan_id=loan_id, channel=channel, actor=actor,
                                    conversation=True))

    def prune(self, now: datetime, keep_days: int = RETENTION_DAYS) -> tuple[ContactRecord, bool]:
        """The record without contacts older than `keep_days` before `now` (no rule can need them)."""
        cutoff = now.astimezone(UTC) - timedelta(days=keep_days)
        kept = [c for c in self.contacts if c.at.astimezone(UTC) >= cutoff]
        if len(kept) == len(self.contacts):
            return self, False
        return ContactRecord(contacts=kept), True

    def on_day(self, day: date, zone: Any) -> list[PastContact]:
        """Contacts on local day `day` in `zone` (every loan, channel and actor)."""
        return [c for c in self.contacts if c.local_date(zone) == day]

    def contacts_today(self, now_local: datetime) -> int:
        """How many contacts the borrower has had today (their local day): the status's `contacts_today`."""
        return len(self.on_day(now_local.date(), now_local.tzinfo))

    def calls(self, loan_id: str) -> Iterable[PastContact]:
        """Telephone calls (call or voice, any actor) about `loan_id`."""
        return (c for c in self.contacts if c.loan_id == loan_id and c.channel.is_telephone_call)


class BreathingSpace(Model):
    """A moratorium from `start` (first day) up to `end` (the first day after it; exclusive)."""

    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> BreathingSpace:
        if self.end <= self.start:
            raise ValueError("breathing_space.end must be after breathing_space.start")
        return self

    def active_on(self, day: date) -> bool:
        return self.start <= day < self.end


class BorrowerFlags(Model):
    """What the borrower (or an operator for them) told us, held on the borrower's entity.

    Each `with_*` method applies one contract signal and returns `(flags, changed)`; applying the
    same signal twice changes nothing. A flag already set keeps its first reason or reference.
    """

    opted_out: list[ContactChannel] = Field(default_factory=list)
    cease_contact: str | None = None
    """The reason the borrower gave for asking us to cease contact."""
    breathing_space: BreathingSpace | None = None
    bankruptcy: str | None = None
    """The bankruptcy reference (case number)."""
    deceased: str | None = None
    """The reference of the death notification."""

    @field_validator("opted_out")
    @classmethod
    def _opt_out_channels(cls, v: list[ContactChannel]) -> list[ContactChannel]:
        for ch in v:
            if ch not in OPT_OUT_CHANNELS:
                raise ValueError(f"opted_out: {ch.value} is not a channel one can opt out of "
                                 f"({', '.join(c.value for c in OPT_OUT_CHANNELS)})")
        return sorted(set(v), key=list(ContactChannel).index)

    def with_opt_out(self, channel: ContactChannel | str) -> tuple[BorrowerFlags, bool]:
        ch = _opt_out_channel(channel)
        if ch in self.opted_out:
            return self, False
        return self.model_copy(update={"opted_out": self._opt_out_channels([*self.opted_out, ch])}), True

    def with_opt_in(self, channel: ContactChannel | str) -> tuple[BorrowerFlags, bool]:
        ch = _opt_out_channel(channel)
        if ch not in self.opted_out:
            return self, False
        return self.model_copy(update={"opted_out": [c for c in self.opted_out if c != ch]}), True

    def with_cease_contact(self, reason: str) -> tuple[BorrowerFlags, bool]:
        return self._set("cease_contact", _text("cease_contact.reason", reason))

    def with_bankruptcy(self, reference: str) -> tuple[BorrowerFlags, bool]:
        return self._set("bankruptcy", _text("bankruptcy.reference", reference))

    def with_deceased(self, reference: str) -> tuple[BorrowerFlags, bool]:
        return self._set("deceased", _text("deceased.reference", reference))

    def with_breathing_space(self, start: date, days: int) -> tuple[BorrowerFlags, bool]:
        """A breathing space from `start` for `days` days (the signal's days, or the pack's default).
        A different start or length replaces the one held (an extension or a new moratorium)."""
        if days < 1:
            raise ValueError(f"days must be at least 1, not {days}")
        try:
            end = start + timedelta(days=days)
        except OverflowError:
            raise ValueError(f"breathing_space: start {start.isoformat()} plus {days} days is past the last date there "
                             "is (9999-12-31)") from None
        space = BreathingSpace(start=start, end=end)
        if self.breathing_space == space:
            return self, False
        return self.model_copy(update={"breathing_space": space}), True

    def without(self, flag: str) -> tuple[BorrowerFlags, bool]:
        """An operator's lever: clear `cease_contact`, `breathing_space`, `bankruptcy` or `deceased`."""
        if flag not in ("cease_contact", "breathing_space", "bankruptcy", "deceased"):
            raise ValueError(f"flag must be cease_contact, breathing_space, bankruptcy or deceased, not {flag!r}")
        if getattr(self, flag) is None:
            return self, False
        return self.model_copy(update={flag: None}), True

    def apply(self, signal: str, body: dict[str, Any], default_breathing_days: int = 60) -> tuple[BorrowerFlags, bool]:
        """Apply a contract signal to `borrower-<id>` by its name and JSON body; a bad body is a
        ValueError naming the field. `default_breathing_days` is the policy's `breathing_space_days`."""
        if signal not in _SIGNAL_FIELDS:
            raise ValueError(f"unknown borrower signal {signal!r} (known: {', '.join(_SIGNAL_FIELDS)})")
        for field in body:
            if field not in _SIGNAL_FIELDS[signal]:
                raise ValueError(f"{signal}.{field} is not a field of {signal}")
        required = [f for f in _SIGNAL_FIELDS[signal] if f != "days"]
        for field in required:
            if field not in body:
                raise ValueError(f"{signal}.{field} is required")
        if signal == "breathing_space":
            start = body["start"]
            try:
                start = start if isinstance(start, date) else date.fromisoformat(str(start))
            except ValueError:
                raise ValueError(f"breathing_space.start must be a date YYYY-MM-DD, not {start!r}") from None
            days = body.get("days", default_breathing_days)
            if not isinstance(days, int) or isinstance(days, bool) or days < 1:
                raise ValueError(f"breathing_space.days must be a whole number of days, at least 1, not {days!r}")
            return self.with_breathing_space(start, days)
        setter = {"opt_out": self.with_opt_out, "opt_in": self.with_opt_in, "cease_contact": self.with_cease_contact,
                  "bankruptcy": self.with_bankruptcy, "deceased": self.with_deceased}[signal]
        return setter(body[required[0]])

    def _set(self, field: str, value: str) -> tuple[BorrowerFlags, bool]:
        if getattr(self, field) is not None:
            return self, False
        return self.model_copy(update={field: value}), True


_SIGNAL_FIELDS: dict[str, tuple[str, ...]] = {
    "opt_out": ("channel",), "opt_in": ("channel",), "cease_contact": ("reason",),
    "breathing_space": ("start", "days"), "bankruptcy": ("reference",), "deceased": ("reference",),
}
"""The contract's borrower signals and their body fields."""


def _opt_out_channel(channel: ContactChannel | str) -> ContactChannel:
    try:
        ch = ContactChannel(channel)
    except ValueError:
        ch = None
    if ch not in OPT_OUT_CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(c.value for c in OPT_OUT_CHANNELS)}, not {channel!r}")
    return ch  # type: ignore[return-value]


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty text")
    return value.strip()


class LoanContext(Model):
    """What the loan tells the decision about itself."""

    loan_id: str = Field(min_length=1)
    disputed: bool = False
    """A dispute is open on this loan (signal `dispute`, until `dispute_resolved`)."""
    in_plan: bool = False
    """A payment plan runs on this loan (its installment reminders still go during a dispute)."""
    hardship_until: date | None = None
    """UK: no escalation before this local date (see `hardship_hold_until`)."""
    validation_sent_at: AwareDatetime | None = None
    """US: when the validation notice (12 CFR 1006.34) was sent."""
    first_message_at: AwareDatetime | None = None
    """When the first message about the debt (letter, email, sms) was sent: US passive reporting waits
    from it (12 CFR 1006.30(a))."""


class ContactDecision(Model):
    """One decision for one attempt (or one gate): allow, defer until an instant, or block."""

    verdict: Verdict
    rule: str
    """The rule that decided, starting with the pack's code (`CN.daily_limit`, `US.allowed`)."""
    until: AwareDatetime | None = None
    """For a deferral: the instant (borrower's zone) from which to ask again."""
    explanation: str
    """Plain words an operator can read."""
    citation: str
    """The source the rule enforces (article / section), or the contract where no law names it."""

    @model_validator(mode="after")
    def _until(self) -> ContactDecision:
        if (self.verdict == Verdict.DEFER) != (self.until is not None):
            raise ValueError("until is set exactly when the verdict is defer")
        return self

    @property
    def allowed(self) -> bool:
        return self.verdict == Verdict.ALLOW

