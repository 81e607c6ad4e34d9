"""The UK pack: the FCA's Consumer Credit sourcebook (CONC 7) and the Debt Respite Scheme.

Sources, by section:
- CONC 7.9.4R: a firm must not contact customers at unreasonable times, and must pay due regard to
  their reasonable requests about when, where and how they may be contacted. CONC names no hours;
  08:00–21:00 are the contract's.
- CONC 7.14.1R(1): a firm must suspend any steps it or its agent takes to recover a debt the
  customer disputes on valid grounds or what may be valid grounds.
- CONC 7.3.4R (forbearance and due consideration for customers in arrears) and CONC 7.3.11R (suspend
  recovery for a reasonable period while a repayment plan is being developed): a borrower who reports
  hardship is offered a plan and not escalated for 30 days (the contract's period).
- The Debt Respite Scheme (Breathing Space Moratorium and Mental Health Crisis Moratorium) (England
  and Wales) Regulations 2020 (SI 2020/1311): reg. 7 (effect of a moratorium: no interest, fees or
  charges, no enforcement action), reg. 11(1) (no contact by the creditor or its agent to enforce a
  moratorium debt or demand payment), reg. 12(1) (the creditor tells its agent), reg. 26 (a breathing
  space moratorium lasts 60 days).
- Insolvency Act 1986 s. 285(3): after a bankruptcy order no creditor of a provable debt has any
  remedy against the person or property of the bankrupt.
There is no statutory right in the UK to make a creditor cease contact altogether: cease_contact is
the contract's protection, in the spirit of CONC 7.9.4R; statutory notices (and the warnings of legal
action or a credit report) still go.
"""

from __future__ import annotations

from datetime import date, time, timedelta

from ..base import Stage
from . import base
from .base import CONTRACT, CONTRACT_ESCALATION, Citations, Context, Rule
from .clock import at_local
from .limits import Limits
from .model import ContactDecision

DRS = ("Debt Respite Scheme (Breathing Space Moratorium and Mental Health Crisis Moratorium) (England and Wales) "
       "Regulations 2020, SI 2020/1311")

CITATIONS = Citations(
    deceased=f"{CONTRACT} (deceased: no contact, escalation or negative report); no CONC rule names it",
    bankruptcy="Insolvency Act 1986 s. 285(3) (no remedy against the person or property of the bankrupt)",
    breathing_space=(f"{DRS}, reg. 11(1) (no contact to enforce or demand payment) and reg. 7 (no enforcement "
                     f"action); reg. 26 (60 days)"),
    cease_contact=(f"{CONTRACT} (cease_contact); CONC 7.9.4R (due regard to reasonable requests about when, where "
                   f"and how to be contacted); no statutory right to cease contact"),
    remedy="notices the creditor must or may give before legal action or a credit report still go (contract)",
    opt_out="CONC 7.9.4R (due regard to the customer's reasonable requests about how they may be contacted)",
    dispute="CONC 7.14.1R(1) (suspend recovery of a debt disputed on valid grounds)",
    window="CONC 7.9.4R (no contact at unreasonable times); 08:00–21:00 are the contract's hours",
    daily_limit="policy narrowing (contact.max_direct_contacts_per_day); CONC sets no daily cap",
    escalation=CONTRACT_ESCALATION,
)
C_HARDSHIP = ("CONC 7.3.4R (forbearance and due consideration) and CONC 7.3.11R (suspend recovery for a reasonable "
              "period while a repayment plan is developed); 30 days: contract v2")

shared = base.shared_rules("UK", CITATIONS)


def hardship(ctx: Context) -> ContactDecision | None:
    """UK.hardship — no placement or referral before the loan's `hardship_until` (reported hardship +
    `hardship_hold_days`, 30): defer to that day's start. Source: CONC 7.3.4R, CONC 7.3.11R; contract v2."""
    until = ctx.loan.hardship_until
    if until is None or ctx.stage not in (Stage.AGENCY, Stage.LEGAL) or ctx.today >= until:
        return None
    return base.defer(ctx, "hardship", at_local(until, time(0), ctx.zone),
                      C_HARDSHIP, f"the borrower reported hardship: loan {ctx.loan.loan_id} is offered a plan and "
                                  f"not escalated before {until.isoformat()}")


def hardship_hold_until(reported_on: date, limits: Limits) -> date | None:
    """The loan's `hardship_until` for hardship reported on local day `reported_on` (None when the pack
    holds no escalation for hardship)."""
    if limits.hardship_hold_days is None:
        return None
    return reported_on + timedelta(days=limits.hardship_hold_days)


CONTACT_RULES: tuple[Rule, ...] = (shared.deceased, shared.bankruptcy, shared.breathing_space, shared.cease_contact,
                                   shared.opt_out, shared.dispute, shared.window, shared.daily_limit)
BUREAU_RULES: tuple[Rule, ...] = shared.bureau
ESCALATION_RULES: tuple[Rule, ...] = (*shared.escalation[:5], hardship, *shared.escalation[5:])
