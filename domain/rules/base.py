"""The rules every pack shares, written once; each pack binds them to its own name and citation.

A rule is a function of a `Context` that returns a deferring or blocking `ContactDecision`, or None
when it has nothing to say. `shared_rules(code, citations)` binds the shared ones to a pack as named
functions whose docstrings say what they do and cite the pack's source; the packs (cn.py, us.py,
uk.py) put them in order with their own rules. The same `Context` serves the contact decision and
the two gates (bureau, escalation); each rule reads only what it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from ..base import Stage
from .clock import at_local, in_window, later, next_window_open, plus_days, window_opens
from .limits import Limits, PackCode
from .model import (
    REMEDY_NOTICES,
    BorrowerFlags,
    ContactAttempt,
    ContactDecision,
    ContactRecord,
    LoanContext,
    Purpose,
    Verdict,
)


@dataclass(frozen=True)
class Context:
    """Everything one decision may read. `now` is aware, normalized, in the borrower's zone."""

    pack: PackCode
    now: datetime
    limits: Limits
    flags: BorrowerFlags
    loan: LoanContext
    record: ContactRecord | None = None
    attempt: ContactAttempt | None = None
    stage: Stage | None = None
    warning_sent_at: datetime | None = None

    @property
    def zone(self) -> tzinfo:
        assert self.now.tzinfo is not None
        return self.now.tzinfo

    @property
    def today(self) -> date:
        return self.now.date()

    @property
    def contact(self) -> ContactAttempt:
        assert self.attempt is not None, "a contact rule needs the attempt"
        return self.attempt

    @property
    def contacts(self) -> ContactRecord:
        return self.record if self.record is not None else ContactRecord()


Rule = Callable[[Context], ContactDecision | None]

CONTRACT = "contract v2 (docs/contract.md: \"The borrower entity\", \"Contact rules\")"
CONTRACT_ESCALATION = f"{CONTRACT} (agency_warning / legal_warning at least 7 days before placement or referral)"


def decision(ctx: Context, name: str, verdict: Verdict, citation: str, explanation: str,
             until: datetime | None = None) -> ContactDecision:
    return ContactDecision(verdict=verdict, rule=f"{ctx.pack.value}.{name}", until=until, explanation=explanation,
                           citation=citation)


def block(ctx: Context, name: str, citation: str, explanation: str) -> ContactDecision:
    return decision(ctx, name, Verdict.BLOCK, citation, explanation)


def defer(ctx: Context, name: str, until: datetime, citation: str, explanation: str) -> ContactDecision:
    return decision(ctx, name, Verdict.DEFER, citation, explanation, until.astimezone(ctx.zone))


def _day(d: date) -> str:
    return d.isoformat()


def _hm(t: time) -> str:
    return t.isoformat("minutes")


# --------------------------------------------------------------------------------------------
# Flags: the person
# --------------------------------------------------------------------------------------------


def deceased(ctx: Context, citation: str, what: str = "contact") -> ContactDecision | None:
    if ctx.flags.deceased is None:
        return None
    return block(ctx, "deceased", citation,
                 f"the borrower is reported deceased (reference {ctx.flags.deceased}): no {what} until an "
                 f"operator resumes or writes off")


def bankruptcy(ctx: Context, citation: str, what: str = "contact") -> ContactDecision | None:
    if ctx.flags.bankruptcy is None:
        return None
    return block(ctx, "bankruptcy", citation,
                 f"the borrower is in bankruptcy (reference {ctx.flags.bankruptcy}): no {what} until an "
                 f"operator resumes or writes off")


def breathing_space_contact(ctx: Context, citation: str) -> ContactDecision | None:
    """Block, not defer: a reminder queued during a moratorium must not go out on the day it ends;
    the loan decides afresh then, at the stage its DPD calls for (contract)."""
    space = ctx.flags.breathing_space
    if space is None or not space.active_on(ctx.today):
        return None
    return block(ctx, "breathing_space", citation,
                 f"a breathing space runs from {_day(space.start)} until {_day(space.end)} (exclusive): no "
                 f"contact about the debt")


def breathing_space_escalation(ctx: Context, citation: str, what: str) -> ContactDecision | None:
    """Defer to the moratorium's end: the escalation is due and waits, it is not dropped."""
    space = ctx.flags.breathing_space
    if space is None or not space.active_on(ctx.today):
        return None
    return defer(ctx, "breathing_space", at_local(space.end, time(0), ctx.zone), citation,
                 f"a breathing space runs until {_day(space.end)} (exclusive): no {what} before it ends")


def cease_contact(ctx: Context, citation: str, remedy_citation: str) -> ContactDecision | None:
    """Block every contact after cease_contact, except a notice of a specific remedy the creditor
    intends to invoke (legal action, a credit report), which the remedy citation allows."""
    if ctx.flags.cease_contact is None:
        return None
    a = ctx.contact
    if a.purpose == Purpose.WARNING and a.notice in REMEDY_NOTICES:
        return None
    return block(ctx, "cease_contact", f"{citation}; exception for notices of a specific remedy: {remedy_citation}",
                 f"the borrower asked us to cease contact ({ctx.flags.cease_contact}); only a notice of legal "
                 f"action or a credit report may still go")


def opt_out(ctx: Context, citation: str) -> ContactDecision | None:
    a = ctx.contact
    if a.channel not in ctx.flags.opted_out:
        return None
    return block(ctx, "opt_out", citation, f"the borrower opted out of {a.channel.value}")


def dispute(ctx: Context, citation: str) -> ContactDecision | None:
    """A disputed loan gets no collection contact; a running plan's installment reminders and
    confirmations (e.g. that the dispute was received) still go."""
    if not ctx.loan.disputed:
        return None
    a = ctx.contact
    if a.purpose == Purpose.CONFIRMATION or (a.purpose == Purpose.PLAN_REMINDER and ctx.loan.in_plan):
        return None
    return block(ctx, "dispute", citation,
                 f"loan {ctx.loan.loan_id} is disputed: no {a.purpose.value} contact until the dispute is resolved")


def dispute_gate(ctx: Context, citation: str, what: str) -> ContactDecision | None:
    if not ctx.loan.disputed:
        return None
    return block(ctx, "dispute", citation, f"loan {ctx.loan.loan_id} is disputed: no {what} until it is resolved")


# --------------------------------------------------------------------------------------------
# Time: the window and the caps
# --------------------------------------------------------------------------------------------


def window(ctx: Context, citation: str) -> ContactDecision | None:
    if in_window(ctx.now, ctx.limits):
        return None
    start, end = _hm(ctx.limits.window_start), _hm(ctx.limits.window_end)
    until = next_window_open(ctx.now, ctx.limits)
    when = "before the contact window opens" if until.date() == ctx.today else "after the contact window closed"
    return defer(ctx, "window", until, citation,
                 f"{when} (contact only from {start} to {end}, the borrower's local time)")


def daily_limit(ctx: Context, citation: str) -> ContactDecision | None:
    cap = ctx.limits.max_contacts_per_day
    if cap is None:
        return None
    today = ctx.contacts.on_day(ctx.today, ctx.zone)
    if len(today) < cap:
        return None
    tomorrow = ctx.today + timedelta(days=1)
    return defer(ctx, "daily_limit", window_opens(tomorrow, ctx.limits, ctx.zone), citation,
                 f"the borrower already had {len(today)} contacts today (at most {cap} a day, every loan, "
                 f"channel and collector together)")


def after_notice(ctx: Context, name: str, citation: str, notice: str, what: str, days: int) -> ContactDecision | None:
    """`what` waits `days` (elapsed, 24-hour days) after the `notice` sent at `ctx.warning_sent_at`;
    with no such notice it is blocked until one is sent."""
    sent = ctx.warning_sent_at
    if sent is None:
        return block(ctx, name, citation, f"no {notice} notice has been sent: send it, then {what} may follow "
                                          f"{days} days later")
    ready = plus_days(sent, days, ctx.zone)
    if later(ready, ctx.now):
        return defer(ctx, name, ready, citation,
                     f"the {notice} notice went at {sent.astimezone(ctx.zone).isoformat()}: {what} waits "
                     f"{days} days after it")
    return None


def cease_contact_escalation(ctx: Context, citation: str) -> ContactDecision | None:
    """cease_contact refuses (and recalls) an agency placement; a legal referral goes on (contract)."""
    if ctx.flags.cease_contact is None or ctx.stage != Stage.AGENCY:
        return None
    return block(ctx, "cease_contact", citation,
                 f"the borrower asked us to cease contact ({ctx.flags.cease_contact}): no agency placement "
                 f"(a running one is recalled); a legal referral may still go")


def stage_warning(ctx: Context, stage: Stage, citation: str) -> ContactDecision | None:
    """Placement with an agency / referral for legal action only `escalation_warning_days` after the
    agency_warning / legal_warning notice (contract v2, "Contact rules")."""
    if ctx.stage != stage:
        return None
    notice = f"{stage.value}_warning"
    what = "placement with an agency" if stage == Stage.AGENCY else "referral for legal action"
    return after_notice(ctx, notice, citation, notice, what, ctx.limits.escalation_warning_days)


# --------------------------------------------------------------------------------------------
# Binding the shared rules to a pack
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Citations:
    """A pack's sources for the rules every pack shares."""

    deceased: str
    bankruptcy: str
    breathing_space: str
    cease_contact: str
    remedy: str
    """Why a notice of a specific remedy (legal action, credit report) still goes after cease_contact."""
    opt_out: str
    dispute: str
    window: str
    daily_limit: str
    escalation: str
    """The agency_warning / legal_warning lead before placement or referral."""


def _rule(code: str, name: str, what: str, citation: str, check: Callable[[Context], ContactDecision | None]) -> Rule:
    """`check` as a named rule function whose docstring says what it does and cites its source."""
    def rule(ctx: Context) -> ContactDecision | None:
        return check(ctx)
    short = name.removeprefix("bureau_").removeprefix("escalation_")
    rule.__name__ = rule.__qualname__ = name
    rule.__doc__ = f"{code}.{short} — {what}. Source: {citation}"
    rule.rule_name = short  # type: ignore[attr-defined]
    return rule


def rule_name(rule: Rule) -> str:
    """The name a rule decides with (without the pack's code): its `rule_name`, else its function name."""
    return getattr(rule, "rule_name", rule.__name__)


@dataclass(frozen=True)
class SharedRules:
    """The shared rules bound to one pack's citations, as named functions the pack puts in order."""

    deceased: Rule
    bankruptcy: Rule
    breathing_space: Rule
    cease_contact: Rule
    opt_out: Rule
    dispute: Rule
    window: Rule
    daily_limit: Rule
    bureau: tuple[Rule, ...]
    """deceased, bankruptcy, dispute: no negative bureau report."""
    escalation: tuple[Rule, ...]
    """deceased, bankruptcy, breathing_space, dispute, cease_contact, agency_warning, legal_warning."""


def shared_rules(code: str, c: Citations) -> SharedRules:
    def r(name: str, what: str, citation: str, check: Callable[[Context], ContactDecision | None]) -> Rule:
        return _rule(code, name, what, citation, check)

    def gates(prefix: str, what: str) -> tuple[Rule, Rule, Rule]:
        """deceased, bankruptcy and dispute stopping `what` (a negative report, an escalation)."""
        return (r(f"{prefix}_deceased", f"no {what}", c.deceased, lambda x: deceased(x, c.deceased, what)),
                r(f"{prefix}_bankruptcy", f"no {what}", c.bankruptcy, lambda x: bankruptcy(x, c.bankruptcy, what)),
                r(f"{prefix}_dispute", f"no {what} of a disputed loan", c.dispute,
                  lambda x: dispute_gate(x, c.dispute, what)))

    esc_deceased, esc_bankruptcy, esc_dispute = gates("escalation", "escalation")
    return SharedRules(
        deceased=r("deceased", "block every contact", c.deceased, lambda x: deceased(x, c.deceased)),
        bankruptcy=r("bankruptcy", "block every contact", c.bankruptcy, lambda x: bankruptcy(x, c.bankruptcy)),
        breathing_space=r("breathing_space", "block contact while a moratorium runs", c.breathing_space,
                          lambda x: breathing_space_contact(x, c.breathing_space)),
        cease_contact=r("cease_contact", "block contact by us or an agency, except a notice of legal action or a "
                        "credit report", f"{c.cease_contact}; {c.remedy}", lambda x: cease_contact(x, c.cease_contact,
                                                                                                   c.remedy)),
        opt_out=r("opt_out", "no contact on a channel the borrower opted out of", c.opt_out,
                  lambda x: opt_out(x, c.opt_out)),
        dispute=r("dispute", "no collection contact on a disputed loan (a running plan's reminders go)", c.dispute,
                  lambda x: dispute(x, c.dispute)),
        window=r("window", "defer outside the contact window to its next opening", c.window,
                 lambda x: window(x, c.window)),
        daily_limit=r("daily_limit", "at most max_contacts_per_day contacts a local day per borrower (every loan, "
                      "channel and actor), else defer to the next day's window", c.daily_limit,
                      lambda x: daily_limit(x, c.daily_limit)),
        bureau=gates("bureau", "negative bureau report"),
        escalation=(esc_deceased, esc_bankruptcy,
                    r("escalation_breathing_space", "escalation waits for the moratorium's end", c.breathing_space,
                      lambda x: breathing_space_escalation(x, c.breathing_space, "escalation")),
                    esc_dispute,
                    r("escalation_cease_contact", "no agency placement (a running one is recalled); legal referral "
                      "goes on", c.cease_contact, lambda x: cease_contact_escalation(x, c.cease_contact)),
                    r("agency_warning", "placement only escalation_warning_days after the agency_warning notice",
                      c.escalation, lambda x: stage_warning(x, Stage.AGENCY, c.escalation)),
                    r("legal_warning", "referral only escalation_warning_days after the legal_warning notice",
                      c.escalation, lambda x: stage_warning(x, Stage.LEGAL, c.escalation))),
    )
