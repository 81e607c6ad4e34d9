"""The one door: every contact attempt, every first negative bureau report and every agency
placement or legal referral gets one decision from the pack's rules, in a fixed order.

The first rule that defers or blocks decides; if none does, the answer is allow, named
`<pack>.allowed` (or `<pack>.bureau_allowed`, `<pack>.escalation_allowed`). Block rules about the
person come first (deceased, bankruptcy, breathing space, cease contact, opt-out, dispute), so a
block is never hidden behind a deferral that would only lead to it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..base import Stage
from . import cn, uk, us
from .base import Context, Rule, rule_name
from .clock import normalize, zone_of
from .limits import BOUNDS, Limits, PackCode, pack_code
from .model import BorrowerFlags, ContactAttempt, ContactDecision, ContactRecord, LoanContext, Verdict


@dataclass(frozen=True)
class Pack:
    """A rule pack: its code, its regulatory bound, and its rules in the order they are asked."""

    code: PackCode
    title: str
    bound: Limits
    contact_rules: tuple[Rule, ...]
    bureau_rules: tuple[Rule, ...]
    escalation_rules: tuple[Rule, ...]

    def rule_names(self) -> list[str]:
        """Every rule name this pack can answer with (for docs and tests)."""
        seen: list[str] = []
        for rule in (*self.contact_rules, *self.bureau_rules, *self.escalation_rules):
            name = f"{self.code.value}.{rule_name(rule)}"
            if name not in seen:
                seen.append(name)
        return [*seen, f"{self.code.value}.allowed", f"{self.code.value}.bureau_allowed",
                f"{self.code.value}.escalation_allowed"]


PACKS: dict[PackCode, Pack] = {
    PackCode.CN: Pack(PackCode.CN, "China: NIFA 2024 post-loan collection guidelines; Credit Reporting Regulation "
                                   "art. 15", BOUNDS[PackCode.CN], cn.CONTACT_RULES, cn.BUREAU_RULES,
                      cn.ESCALATION_RULES),
    PackCode.US: Pack(PackCode.US, "United States: Regulation F (12 CFR part 1006)", BOUNDS[PackCode.US],
                      us.CONTACT_RULES, us.BUREAU_RULES, us.ESCALATION_RULES),
    PackCode.UK: Pack(PackCode.UK, "United Kingdom: FCA CONC 7; Debt Respite Scheme Regulations 2020",
                      BOUNDS[PackCode.UK], uk.CONTACT_RULES, uk.BUREAU_RULES, uk.ESCALATION_RULES),
}


def _first(rules: tuple[Rule, ...], ctx: Context, allowed: str, explanation: str) -> ContactDecision:
    for rule in rules:
        found = rule(ctx)
        if found is not None:
            return found
    return ContactDecision(verdict=Verdict.ALLOW, rule=f"{ctx.pack.value}.{allowed}", explanation=explanation,
                           citation="no rule of the pack defers or blocks it")


def _context(pack: PackCode | str, now_local: datetime, limits: Limits, flags: BorrowerFlags, loan: LoanContext,
             **more: object) -> Context:
    zone_of(now_local)
    return Context(pack=pack_code(pack), now=normalize(now_local), limits=limits, flags=flags, loan=loan,
                   **more)  # type: ignore[arg-type]


def decide(attempt: ContactAttempt, loan: LoanContext, record: ContactRecord, flags: BorrowerFlags, limits: Limits,
           pack: PackCode | str, now_local: datetime) -> ContactDecision:
    """Decide one contact attempt at `now_local` (aware, the borrower's zone) against the borrower's
    one contact record and flags. `limits` are the policy's effective limits (`narrow`)."""
    if attempt.loan_id != loan.loan_id:
        raise ValueError(f"attempt.loan_id {attempt.loan_id!r} is not loan.loan_id {loan.loan_id!r}")
    ctx = _context(pack, now_local, limits, flags, loan, record=record, attempt=attempt)
    return _first(PACKS[ctx.pack].contact_rules, ctx, "allowed",
                  f"{attempt.channel.value} by {attempt.actor.value} may go now: no rule defers or blocks it")


def bureau_gate(pack: PackCode | str, loan: LoanContext, record: ContactRecord, flags: BorrowerFlags, limits: Limits,
                now_local: datetime, warning_sent_at: datetime | None) -> ContactDecision:
    """May the loan's FIRST negative report to the credit bureau go now? `warning_sent_at` is when the
    credit_report_warning notice went (CN needs it). Deceased, bankruptcy and dispute block every
    negative report, not only the first."""
    ctx = _context(pack, now_local, limits, flags, loan, record=record, warning_sent_at=warning_sent_at)
    return _first(PACKS[ctx.pack].bureau_rules, ctx, "bureau_allowed",
                  f"the negative report for loan {loan.loan_id} may go now")


def escalation_gate(pack: PackCode | str, stage: Stage | str, loan: LoanContext, flags: BorrowerFlags, limits: Limits,
                    now_local: datetime, warning_sent_at: datetime | None) -> ContactDecision:
    """May the loan be placed with an agency (`stage` agency) or referred for legal action (`stage`
    legal) now? `warning_sent_at` is when that stage's agency_warning / legal_warning notice went."""
    st = Stage(stage)
    if st not in (Stage.AGENCY, Stage.LEGAL):
        raise ValueError(f"stage must be agency or legal for the escalation gate, not {st.value}")
    ctx = _context(pack, now_local, limits, flags, loan, stage=st, warning_sent_at=warning_sent_at)
    what = "placement with an agency" if st == Stage.AGENCY else "referral for legal action"
    return _first(PACKS[ctx.pack].escalation_rules, ctx, "escalation_allowed",
                  f"the {what} of loan {loan.loan_id} may go now")
