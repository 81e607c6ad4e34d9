"""Collection policy: the ladder, repeat intervals, fees, channels, contact hours and plan rules.

Every field has the contract's default, so a partial policy (in the workflow input, or a TOML file
loaded with `load_policy`) overrides only what it names. `ladder`, when given, replaces the whole
ladder. The schema is documented in docs/policy.md.
"""

from __future__ import annotations

import tomllib
from datetime import time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Model, Stage
from .money import ZERO, Money, Rate
from .rules.limits import LIMIT_FIELDS, Limits, PackCode, narrow


class Channel(StrEnum):
    """What a stage does: a direct contact (sms, email, voice) or a piece of agent work."""

    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"  # automated voice reminder (IVR / voice bot)
    CALL_TASK = "call_task"  # collector call, for a human or automated agent
    VISIT_TASK = "visit_task"  # field (home) visit
    AGENCY = "agency"  # placement with an outside collection agency
    LEGAL = "legal"  # referral for legal action

    @property
    def is_direct_contact(self) -> bool:
        return self in (Channel.SMS, Channel.EMAIL, Channel.VOICE)


class StageRule(Model):
    stage: Stage
    enter_at_dpd: int = Field(ge=0)
    channels: list[Channel] = Field(min_length=1)
    repeat_every_days: int | None = Field(default=None, ge=1)
    entry_fee: Money = ZERO
    """A collection fee charged once when the loan enters the stage (default none)."""

    @model_validator(mode="after")
    def _unique_channels(self) -> StageRule:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"ladder[{self.stage.value}].channels names a channel twice")
        return self


def _default_ladder() -> list[StageRule]:
    return [
        StageRule(stage=Stage.NOTICE, enter_at_dpd=1, channels=[Channel.SMS, Channel.EMAIL], repeat_every_days=7),
        StageRule(stage=Stage.CALL, enter_at_dpd=8, channels=[Channel.CALL_TASK]),
        StageRule(stage=Stage.VISIT, enter_at_dpd=31, channels=[Channel.VISIT_TASK]),
        StageRule(stage=Stage.AGENCY, enter_at_dpd=61, channels=[Channel.AGENCY]),
        StageRule(stage=Stage.LEGAL, enter_at_dpd=91, channels=[Channel.LEGAL]),
    ]


IN_FLIGHT = "in_flight"
"""Validation context key: the policy of a loan already running (its workflow re-reads its input on every
replay). Such a policy is taken as it was accepted when the loan started, even if it widens a rule pack
(the packs came later): loans opened before them keep their recorded behaviour. Every door that takes a
new policy (intake, the CLI, the portal, a new loan's workflow) refuses a widening."""


class ContactRules(Model):
    """Contact compliance settings: the rule pack and the policy's narrowing of its limits.

    `rule_pack` picks the jurisdiction's rules (domain/rules, docs/compliance.md). Every other field
    may only narrow the pack: a value that would widen it (an earlier window start, a higher cap, a
    shorter wait) is refused with the field and the reason. `None` keeps the pack's own value.
    """

    rule_pack: PackCode = PackCode.CN
    window_start: time = time(9, 0)
    """Local time (borrower's zone) from which contact and new agent work may happen."""
    window_end: time = time(20, 0)
    """Local time from which no contact happens until the next day's window."""
    max_direct_contacts_per_day: int = Field(default=3, ge=1)
    """Contacts per borrower per local day: every loan, channel (messages, voice, calls, visits) and
    collector (ours, bots, agencies) together."""
    opted_out_channels: list[Channel] = Field(default_factory=list)
    """Legacy (v1): channels the policy never uses. The borrower's own opt-outs are the `opt_out` signal."""
    spread_minutes: int = Field(default=60, ge=0, le=720)
    """Contacts of a loan start this many minutes at most after the window opens, at an offset fixed
    per loan (a hash of its id), so a portfolio's sends spread out instead of all going at 09:00."""
    max_calls_per_7_days: int | None = Field(default=None, ge=1)
    """US: telephone calls per loan in any 7 consecutive days (Regulation F: at most 7)."""
    call_cooloff_days: int | None = Field(default=None, ge=1)
    """US: days without a call after a telephone conversation about the loan (at least 7)."""
    escalation_warning_days: int | None = Field(default=None, ge=1)
    """Days between the agency_warning / legal_warning notice and the placement or referral (at least 7)."""
    credit_report_warning_days: int | None = Field(default=None, ge=1)
    """CN: days between the credit_report_warning notice and the first negative report (at least 7)."""
    bureau_wait_days: int | None = Field(default=None, ge=1)
    """US: days after the first message before the first bureau report (at least 14)."""
    validation_period_days: int | None = Field(default=None, ge=1)
    """US: the dispute period the validation notice gives (at least 30)."""
    hardship_hold_days: int | None = Field(default=None, ge=1)
    """UK: days without escalation after reported hardship (at least 30)."""
    breathing_space_days: int | None = Field(default=None, ge=1)
    """Length of a breathing space whose signal names no days (at least 60)."""

    @field_validator("window_start", "window_end")
    @classmethod
    def _local_time(cls, v: time, info: ValidationInfo) -> time:
        if v.tzinfo is not None:
            raise ValueError(f"contact.{info.field_name} {v.isoformat()} must be a local time without an offset "
                             f"(it is read in the borrower's zone)")
        return v

    @model_validator(mode="after")
    def _window(self, info: ValidationInfo) -> ContactRules:
        if self.window_end <= self.window_start:
            raise ValueError("contact.window_end must be after contact.window_start")
        if not (info.context or {}).get(IN_FLIGHT):
            self.limits  # noqa: B018 - refuses a widening with the field's name
        return self

    @property
    def limits(self) -> Limits:
        """The pack's limits as this policy narrows them."""
        overrides = {f: getattr(self, f) for f in LIMIT_FIELDS if f != "max_contacts_per_day"}
        overrides["max_contacts_per_day"] = self.max_direct_contacts_per_day
        return narrow(self.rule_pack, overrides, labels=_CONTACT_LABELS)


_CONTACT_LABELS = {"max_contacts_per_day": "contact.max_direct_contacts_per_day"}


class PlanRules(Model):
    """When a proposed payment plan is accepted (contract defaults, plus the project's knobs)."""

    min_installments: int = Field(default=2, ge=1)
    max_installments: int = Field(default=12, ge=1)
    min_interval_days: int = Field(default=7, ge=1)
    max_interval_days: int = Field(default=31, ge=1)
    first_due_within_days: int = Field(default=30, ge=0)
    min_installment: Money = ZERO
    min_down_payment_share: dict[Stage, Rate] = Field(default_factory=dict)
    """Minimum down payment as a share of the total owed, by the loan's stage (e.g. legal: 0.2)."""
    max_plans_per_loan: int | None = Field(default=3, ge=1)
    break_after_days: int = Field(default=7, ge=1)
    """An installment still unpaid this many days after its due date breaks the plan."""
    reminder_days_before: int = Field(default=3, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> PlanRules:
        if self.max_installments < self.min_installments:
            raise ValueError("plan.max_installments must be at least plan.min_installments")
        if self.max_interval_days < self.min_interval_days:
            raise ValueError("plan.max_interval_days must be at least plan.min_interval_days")
        return self


class PaymentRules(Model):
    """Trusted money (contract v2)."""

    reversal_window_days: int = Field(default=0, ge=0, le=365)
    """A loan that closed paid_in_full stays open this many days (state closed, outcome set) to take a
    reversal of a payment (returned, charged back), which reopens it; 0 (the default, as in v1): it ends."""


class BureauRules(Model):
    report_delinquency_at_dpd: int = Field(default=30, ge=1)
    """Days past due at which the delinquency is reported to the credit bureau."""


class Team(Model):
    """A collector team: the borrowers it serves (by region) and its agents."""

    team_id: str
    regions: list[str] = Field(default_factory=list)
    """Prefixes matched against the borrower's time zone (e.g. "Asia/") or address; empty: catch-all."""
    agents: list[str] = Field(min_length=1)
    supervisor: str | None = None


class AgencyRule(Model):
    agency_id: str
    commission_rate: Rate = Decimal("0.20")
    """Share of what the agency collects that the lender owes it."""


def _legacy_teams() -> list[Team]:
    """The demo's teams, which the default policy named before v2: a loan already running with a null or
    partial policy keeps them (in-flight parsing); a new loan must name its own (docs/policy.md)."""
    return [
        Team(team_id="cn-collections", regions=["Asia/", "上海", "北京"], agents=["agent-cn-1", "agent-cn-2"],
             supervisor="supervisor-cn"),
        Team(team_id="intl-collections", regions=[], agents=["agent-intl-1", "agent-intl-2"],
             supervisor="supervisor-intl"),
    ]


def _legacy_agencies() -> list[AgencyRule]:
    return [AgencyRule(agency_id="agency-east", commission_rate=Decimal("0.20")),
            AgencyRule(agency_id="agency-west", commission_rate=Decimal("0.25"))]


class AgentRules(Model):
    """Agent work: assignment, SLAs, promises, automated agents, agencies."""

    teams: list[Team] = Field(default_factory=list)
    """The lender's collector teams. Empty by default: a new loan whose ladder creates call or visit tasks
    is refused without them (intake and the workflow say so); the demo's policy names its own."""
    assignment: Literal["least_loaded", "round_robin"] = "least_loaded"
    task_sla_days: int = Field(default=3, ge=1)
    """A task untouched this many days is escalated: reassigned, supervisor notified."""
    max_sla_escalations: int = Field(default=2, ge=0)
    promise_grace_days: int = Field(default=3, ge=0)
    plan_agreed_hold_days: int = Field(default=7, ge=0)
    """After an agent records plan_agreed, escalation waits this long for the plan to arrive."""
    bot_first: bool = False
    """Call tasks are worked by an automated agent (voice bot) first, by a human after."""
    agencies: list[AgencyRule] = Field(default_factory=list)
    """The agencies the lender places loans with, in rotation. Empty by default (as teams)."""
    agency_placement_days: int = Field(default=30, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _in_flight_roster(cls, data: Any, info: ValidationInfo) -> Any:
        """A loan already running took the roster the default policy named then (see _legacy_teams)."""
        if (info.context or {}).get(IN_FLIGHT) and isinstance(data, dict):
            data = dict(data)
            data.setdefault("teams", [t.model_dump(mode="json") for t in _legacy_teams()])
            data.setdefault("agencies", [a.model_dump(mode="json") for a in _legacy_agencies()])
        return data


class Policy(Model):
    ladder: list[StageRule] = Field(default_factory=_default_ladder)
    penalty_rate_factor: Rate = Decimal("0.5")
    """Penalty interest = principal × annual rate × this / day_count (0.5: overdue principal bears 1.5×)."""
    day_count: int = Field(default=365, ge=360, le=366)
    day_length_seconds: float = Field(default=86400, gt=0)
    """Length of a loan day in real seconds. 86400 in production; the demo compresses it."""
    continue_as_new_after_events: int = Field(default=10_000, ge=100, le=50_000)
    """Operational: the loan's workflow continues as new (carrying its whole book) past this many
    history events, so a loan open for years keeps a bounded history."""
    contact: ContactRules = Field(default_factory=ContactRules)
    plan: PlanRules = Field(default_factory=PlanRules)
    bureau: BureauRules = Field(default_factory=BureauRules)
    payments: PaymentRules = Field(default_factory=PaymentRules)
    agents: AgentRules = Field(default_factory=AgentRules)

    @model_validator(mode="before")
    @classmethod
    def _in_flight_agents(cls, data: Any, info: ValidationInfo) -> Any:
        if (info.context or {}).get(IN_FLIGHT) and isinstance(data, dict) and "agents" not in data:
            data = {**data, "agents": {}}  # so the in-flight roster above applies to a policy without agents
        return data

    def roster_gaps(self) -> list[str]:
        """What the ladder needs of the roster that the policy does not name (a new loan is refused)."""
        channels = {ch for rule in self.ladder for ch in rule.channels}
        gaps = []
        if channels & {Channel.CALL_TASK, Channel.VISIT_TASK} and not self.agents.teams:
            gaps.append("agents.teams is empty, but the ladder creates call or visit tasks: name the lender's "
                        "collector teams (team_id, regions, agents) in the policy")
        if Channel.AGENCY in channels and not self.agents.agencies:
            gaps.append("agents.agencies is empty, but the ladder places loans with agencies: name them "
                        "(agency_id, commission_rate) in the policy")
        return gaps

    @model_validator(mode="after")
    def _ladder_ordered(self) -> Policy:
        stages = [r.stage for r in self.ladder]
        if len(set(stages)) != len(stages):
            raise ValueError("ladder names a stage twice")
        if [s.rank for s in stages] != sorted(s.rank for s in stages):
            raise ValueError("ladder stages must be in order notice, call, visit, agency, legal")
        dpds = [r.enter_at_dpd for r in self.ladder]
        if dpds != sorted(dpds) or len(set(dpds)) != len(dpds):
            raise ValueError("ladder enter_at_dpd must strictly increase")
        return self

    @property
    def time_scale(self) -> Decimal:
        """Loan seconds per real second (1 in production)."""
        return Decimal(86400) / Decimal(str(self.day_length_seconds))

    def rule_for(self, stage: Stage) -> StageRule | None:
        for rule in self.ladder:
            if rule.stage == stage:
                return rule
        return None


def load_policy(path: str | Path) -> Policy:
    """Load a (partial) policy from a TOML file."""
    with open(path, "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return Policy.model_validate(data)
