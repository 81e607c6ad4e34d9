"""The US pack: Regulation F (12 CFR part 1006, implementing the FDCPA) and the automatic stay.

Sources, by section:
- 12 CFR 1006.6(b)(1)(i): a time before 8:00 a.m. and after 9:00 p.m. local time at the consumer's
  location is inconvenient (FDCPA 805(a)(1), 15 U.S.C. 1692c(a)(1)).
- 12 CFR 1006.6(c)(1): after a written refusal to pay or request to cease, no further communication;
  1006.6(c)(2)(ii)-(iii) (FDCPA 805(c)(2)-(3)): except to notify that the collector or creditor may
  invoke, or intends to invoke, a specified remedy.
- 12 CFR 1006.6(e): every electronic communication (email, text) carries a clear and conspicuous
  statement of a reasonable and simple way to opt out of further electronic communications there.
- 12 CFR 1006.14(b)(2)(i)(A): calls more than seven times within seven consecutive days about a
  particular debt are presumed to violate 1006.14(b)(1); (B): so is a call within seven consecutive
  days after a telephone conversation about that debt (the day of the conversation is day one).
- 12 CFR 1006.14(h)(1): no communication through a medium the person asked the collector not to use.
- 12 CFR 1006.30(a)(1)(ii) and comment 30(a)(1)-2: before furnishing to a consumer reporting agency,
  a collector who sent a letter or electronic message about the debt waits a reasonable time for a
  notice of undeliverability; 14 consecutive days is reasonable.
- 12 CFR 1006.34(a)(1)(i)(A): the validation notice goes in the initial communication (the contract
  makes it the first message); 1006.34(b)(5): the validation period ends 30 days after the consumer
  receives or is assumed to receive it (receipt may be assumed five days after sending, excluding
  legal public holidays, Saturdays and Sundays).
- 12 CFR 1006.38(d)(2): on a dispute in writing within the validation period, collection stops until
  verification is sent (the contract holds collection on any dispute until `dispute_resolved`).
- 11 U.S.C. 362(a)(6): the automatic stay bars any act to collect a pre-petition claim.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from . import base
from .base import CONTRACT, CONTRACT_ESCALATION, Citations, Context, Rule
from .clock import later, plus_days, window_opens
from .limits import Limits, PackCode, pack_code
from .model import ContactChannel, ContactDecision, Purpose

REG_F = "Regulation F, 12 CFR"

CITATIONS = Citations(
    deceased=(f"{CONTRACT}; {REG_F} 1006.6(a)(4) (for a deceased consumer the 'consumer' is the estate's "
              f"executor or administrator, whose contact points the engine does not hold)"),
    bankruptcy="11 U.S.C. 362(a)(6) (automatic stay: no act to collect a pre-petition claim)",
    breathing_space=f"{CONTRACT} (breathing_space: no contact, no escalation); no US statute names it",
    cease_contact=f"{REG_F} 1006.6(c)(1) (FDCPA 805(c))",
    remedy=f"{REG_F} 1006.6(c)(2)(ii)-(iii) (notify that a specified remedy may be or will be invoked)",
    opt_out=f"{REG_F} 1006.14(h)(1) (no communication through a medium the person asked not to be used)",
    dispute=f"{REG_F} 1006.38(d)(2) (cease collection of a disputed debt until verification); {CONTRACT}",
    window=f"{REG_F} 1006.6(b)(1)(i) (before 8:00 a.m. and after 9:00 p.m. local time is inconvenient)",
    daily_limit=(f"policy narrowing (contact.max_direct_contacts_per_day); Regulation F sets no daily cap "
                 f"(cf. {REG_F} 1006.14(a))"),
    escalation=CONTRACT_ESCALATION,
)
C_VALIDATION_FIRST = f"{REG_F} 1006.34(a)(1)(i)(A) (validation notice in the initial communication); {CONTRACT}"
C_SEVEN_IN_SEVEN = f"{REG_F} 1006.14(b)(2)(i)(A) (more than seven calls within seven consecutive days)"
C_AFTER_CONVERSATION = (f"{REG_F} 1006.14(b)(2)(i)(B) (a call within seven consecutive days after a telephone "
                        f"conversation; its date is day one)")
C_PASSIVE = (f"{REG_F} 1006.30(a)(1)(ii) and comment 30(a)(1)-2 (wait 14 consecutive days after a letter or "
             f"electronic message before furnishing)")
C_OPT_OUT_TEXT = f"{REG_F} 1006.6(e)"

shared = base.shared_rules("US", CITATIONS)


def validation_first(ctx: Context) -> ContactDecision | None:
    """US.validation_first — until the loan's validation notice was sent, every other contact is blocked
    (blocked, not deferred: nothing else can say when the notice will go). Source: 12 CFR
    1006.34(a)(1)(i)(A); contract v2 ("the first message is a validation notice")."""
    a = ctx.contact
    if a.purpose == Purpose.VALIDATION:
        return None
    sent = ctx.loan.validation_sent_at
    if sent is not None and not later(sent, ctx.now):
        return None
    return base.block(ctx, "validation_first", C_VALIDATION_FIRST,
                      f"the validation notice for loan {ctx.loan.loan_id} has not been sent: it must be the first "
                      f"message, before any {a.purpose.value} contact")


def seven_in_seven(ctx: Context) -> ContactDecision | None:
    """US.seven_in_seven — a telephone call (channel call or voice, any actor) about a loan that already
    had `max_calls_per_7_days` (7) calls in the 7 local days ending today is deferred until the oldest
    of those leaves the 7-day period (the window's opening that day). Source: 12 CFR 1006.14(b)(2)(i)(A)."""
    a = ctx.contact
    cap = ctx.limits.max_calls_per_7_days
    if cap is None or not a.channel.is_telephone_call:
        return None
    days = sorted((c.local_date(ctx.zone) for c in ctx.contacts.calls(a.loan_id)), reverse=True)
    if len(days) < cap or days[cap - 1] <= ctx.today - timedelta(days=7):
        return None
    # Any 7 consecutive days holding today must keep at most `cap` calls: the cap-th most recent call
    # must fall before the period's first day, so the earliest day is that call's date + 7.
    free = days[cap - 1] + timedelta(days=7)
    return base.defer(ctx, "seven_in_seven", window_opens(free, ctx.limits, ctx.zone), C_SEVEN_IN_SEVEN,
                      f"loan {a.loan_id} already had {cap} calls in the 7 days to {ctx.today.isoformat()}: the next "
                      f"call may go on {free.isoformat()}")


def after_conversation(ctx: Context) -> ContactDecision | None:
    """US.after_conversation — no telephone call about a loan within `call_cooloff_days` (7) days after
    a telephone conversation about it, counting the conversation's day as day one: defer to the day
    after. Source: 12 CFR 1006.14(b)(2)(i)(B)."""
    a = ctx.contact
    days = ctx.limits.call_cooloff_days
    if days is None or not a.channel.is_telephone_call:
        return None
    talks = [c.local_date(ctx.zone) for c in ctx.contacts.contacts if c.conversation and c.loan_id == a.loan_id]
    if not talks:
        return None
    free = max(talks) + timedelta(days=days)
    if ctx.today >= free:
        return None
    return base.defer(ctx, "after_conversation", window_opens(free, ctx.limits, ctx.zone), C_AFTER_CONVERSATION,
                      f"a telephone conversation about loan {a.loan_id} took place on {max(talks).isoformat()}: no "
                      f"call before {free.isoformat()}")


def passive_reporting(ctx: Context) -> ContactDecision | None:
    """US.passive_reporting — no report to a credit bureau before a message about the debt was sent and
    `bureau_wait_days` (14) days passed. Source: 12 CFR 1006.30(a)(1)(ii), comment 30(a)(1)-2."""
    days = ctx.limits.bureau_wait_days
    assert days is not None, "BOUNDS[US] sets bureau_wait_days"
    first = ctx.loan.first_message_at
    if first is None:
        return base.block(ctx, "passive_reporting", C_PASSIVE,
                          f"no message about loan {ctx.loan.loan_id} has been sent: no report to the bureau before "
                          f"one was sent and {days} days passed")
    ready = plus_days(first, days, ctx.zone)
    if later(ready, ctx.now):
        return base.defer(ctx, "passive_reporting", ready, C_PASSIVE,
                          f"the first message about loan {ctx.loan.loan_id} went at "
                          f"{first.astimezone(ctx.zone).isoformat()}: the bureau report waits {days} days")
    return None


CONTACT_RULES: tuple[Rule, ...] = (shared.deceased, shared.bankruptcy, shared.breathing_space, shared.cease_contact,
                                   shared.opt_out, shared.dispute, validation_first, shared.window,
                                   shared.daily_limit, seven_in_seven, after_conversation)
BUREAU_RULES: tuple[Rule, ...] = (*shared.bureau, passive_reporting)
ESCALATION_RULES: tuple[Rule, ...] = shared.escalation


def requires_opt_out_text(pack: PackCode | str, channel: ContactChannel | str) -> bool:
    """Whether a message on `channel` must say how to opt out of further electronic messages there:
    in the US pack, every sms and email (12 CFR 1006.6(e); the contract: every SMS says how to stop
    messages, every email has a List-Unsubscribe header and an unsubscribe line)."""
    return pack_code(pack) == PackCode.US and ContactChannel(channel) in (ContactChannel.SMS, ContactChannel.EMAIL)


CONVERSATION_OUTCOMES = frozenset({"promise_to_pay", "refused", "plan_agreed", "conversation", "hardship"})
"""`record_contact_outcome` outcomes that mean the borrower was reached by telephone (contract, US pack)."""


def counts_as_conversation(pack: PackCode | str, outcome: str) -> bool:
    """Whether a call's recorded outcome is a telephone conversation that starts US.after_conversation's
    cool-off (flag it with `ContactRecord.flag_conversation`): in the US pack, promise_to_pay, refused,
    plan_agreed, conversation and hardship (contract v2; 12 CFR 1006.14(b)(2)(i)(B)). Other packs have
    no cool-off, so nothing counts."""
    return pack_code(pack) == PackCode.US and str(getattr(outcome, "value", outcome)) in CONVERSATION_OUTCOMES


def validation_period_end(sent_at: datetime, limits: Limits, holidays: frozenset[date] = frozenset()) -> date:
    """The last day of the validation period for a notice sent at `sent_at` (borrower's zone): receipt
    assumed five days after sending, not counting Saturdays, Sundays and the given legal public
    `holidays`, then `validation_period_days` (30). Source: 12 CFR 1006.34(b)(5)."""
    days = limits.validation_period_days
    if days is None:
        raise ValueError("validation_period_days is not set: the pack has no validation period")
    received = sent_at.date()
    counted = 0
    while counted < 5:
        received += timedelta(days=1)
        if received.weekday() < 5 and received not in holidays:
            counted += 1
    return received + timedelta(days=days)
