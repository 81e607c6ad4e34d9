"""The one door every contact passes: allow, defer until, or block — with the rule that decided.

A contact is a direct message (sms, email, voice) or agent work that reaches the borrower (a call or
visit task). The decision is a pure function of the request, the borrower's contact history (across
all their loans, as far as the caller knows it) and the rule pack's settings. Rule packs (CN, US
Regulation F, UK CONC) build on these rules; the decision names the rule so it can be explained later.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from .models import Model
from .policy import Channel, ContactRules


class Verdict(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    BLOCK = "block"


class ContactRequest(Model):
    loan_id: str
    borrower_id: str
    channel: Channel
    purpose: Literal["collection", "plan_reminder", "agent_task"] = "collection"


class PastContact(Model):
    at: AwareDatetime
    channel: Channel
    loan_id: str


class ContactHistory(Model):
    contacts: list[PastContact] = Field(default_factory=list)
    disputed: bool = False
    """The borrower disputes the debt: collection stops until the dispute is resolved."""

    def on_day(self, day: date, tz_now: datetime) -> int:
        return sum(1 for c in self.contacts if c.at.astimezone(tz_now.tzinfo).date() == day)


class ContactDecision(Model):
    verdict: Verdict
    rule: str
    """Which rule decided (e.g. "CN.window", "daily_limit", "opt_out")."""
    until: AwareDatetime | None = None
    explanation: str


def decide(request: ContactRequest, history: ContactHistory, rules: ContactRules, now_local: datetime) -> ContactDecision:
    """Decide one contact at `now_local` (the borrower's zone)."""
    pack = rules.rule_pack
    if request.channel in rules.opted_out_channels:
        return ContactDecision(verdict=Verdict.BLOCK, rule=f"{pack}.opt_out",
                               explanation=f"the borrower opted out of {request.channel.value}")
    if history.disputed and request.purpose != "plan_reminder":
        return ContactDecision(verdict=Verdict.BLOCK, rule=f"{pack}.dispute",
                               explanation="the debt is disputed; collection contact stops until resolved")
    if not request.channel.is_direct_contact and request.channel not in (Channel.CALL_TASK, Channel.VISIT_TASK):
        return ContactDecision(verdict=Verdict.ALLOW, rule=f"{pack}.not_contact",
                               explanation=f"{request.channel.value} does not contact the borrower directly")
    today = now_local.date()
    start = datetime.combine(today, rules.window_start, tzinfo=now_local.tzinfo)
    end = datetime.combine(today, rules.window_end, tzinfo=now_local.tzinfo)
    if now_local < start:
        return ContactDecision(verdict=Verdict.DEFER, rule=f"{pack}.window", until=start,
                               explanation=f"before the contact window opens at {rules.window_start.isoformat('minutes')}")
    if now_local >= end:
        nxt = datetime.combine(today + timedelta(days=1), rules.window_start, tzinfo=now_local.tzinfo)
        return ContactDecision(verdict=Verdict.DEFER, rule=f"{pack}.window", until=nxt,
                               explanation=f"after the contact window closed at {rules.window_end.isoformat('minutes')}")
    if request.channel.is_direct_contact and history.on_day(today, now_local) >= rules.max_direct_contacts_per_day:
        nxt = datetime.combine(today + timedelta(days=1), rules.window_start, tzinfo=now_local.tzinfo)
        return ContactDecision(verdict=Verdict.DEFER, rule=f"{pack}.daily_limit", until=nxt,
                               explanation=f"already {rules.max_direct_contacts_per_day} contacts today")
    return ContactDecision(verdict=Verdict.ALLOW, rule=f"{pack}.window",
                           explanation="inside the contact window and under the daily limit")
