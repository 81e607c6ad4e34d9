"""The CN pack (the default): mainland China.

Sources:
- 中国互联网金融协会《互联网金融 贷后催收业务指引》 (NIFA, "Guidelines for Internet Finance Post-loan
  Collection Business", issued 15 May 2024), drawn from the draft national standard
  《互联网金融 个人网络消费信贷 贷后催收风控指引》: collection only of the debtor, not their contacts
  (催收对象); no collection from 22:00 to 08:00 unless agreed (催收时间); voice collection by an institution
  and its partner agencies together at most 3 connected calls per debtor per day (催收频次).
- 《征信业管理条例》 (Credit Reporting Industry Regulation, State Council 2013) art. 15: an information
  provider that reports a person's negative information to a credit reporting agency shall tell the
  person beforehand.

Where no CN rule names a protection the contract gives (cease_contact, breathing space, bankruptcy,
deceased, opt-out, dispute), the rule enforces the contract and says so in its citation.

"Only the borrower is contacted" is structural, not a rule: the engine holds only the borrower's own
contact points (phone, email, address in the loan's `borrower`), so no attempt can reach anyone else.
"""

from __future__ import annotations

from . import base
from .base import CONTRACT, CONTRACT_ESCALATION, Citations, Context, Rule
from .model import ContactDecision

NIFA = "中国互联网金融协会《互联网金融 贷后催收业务指引》(2024-05-15)"
CRR_15 = "《征信业管理条例》第十五条 (Credit Reporting Industry Regulation art. 15: prior notice of negative information)"

CITATIONS = Citations(
    deceased=f"{CONTRACT} (deceased: no contact, escalation or negative report); no CN rule names it",
    bankruptcy=f"{CONTRACT} (bankruptcy: no contact, escalation or negative report); no CN rule names it",
    breathing_space=f"{CONTRACT} (breathing_space: no contact, no escalation); no CN rule names it",
    cease_contact=f"{CONTRACT} (cease_contact); no CN rule gives a right to cease contact",
    remedy=f"{CRR_15}: the warning before a negative report is itself required, so it still goes",
    opt_out=f"{CONTRACT} (opt_out: no more contact on that channel)",
    dispute=f"{CONTRACT} (dispute: collection contact, escalation and negative reports stop for that loan)",
    window=f"{NIFA}, 催收时间: no collection from 22:00 to 08:00 unless agreed",
    daily_limit=(f"{NIFA}, 催收频次: at most 3 connected voice collection calls per debtor per day by an institution "
                 f"and its partner agencies together; the contract counts every contact (messages, voice, agents, "
                 f"agencies)"),
    escalation=CONTRACT_ESCALATION,
)
C_CREDIT_WARNING = f"{CRR_15}; the 7-day lead is the contract's"

shared = base.shared_rules("CN", CITATIONS)


def credit_report_warning(ctx: Context) -> ContactDecision | None:
    """CN.credit_report_warning — the first negative bureau report only `credit_report_warning_days` (7)
    after the credit_report_warning notice; none before the notice. Source: 《征信业管理条例》 art. 15
    (tell the person beforehand); the 7 days are the contract's."""
    days = ctx.limits.credit_report_warning_days
    assert days is not None, "BOUNDS[CN] sets credit_report_warning_days"
    return base.after_notice(ctx, "credit_report_warning", C_CREDIT_WARNING, "credit_report_warning",
                             "the first negative bureau report", days)


CONTACT_RULES: tuple[Rule, ...] = (shared.deceased, shared.bankruptcy, shared.breathing_space, shared.cease_contact,
                                   shared.opt_out, shared.dispute, shared.window, shared.daily_limit)
"""CN.window: 08:00–22:00 (NIFA 催收时间). CN.daily_limit: 3 a day, every contact (NIFA 催收频次, contract)."""
BUREAU_RULES: tuple[Rule, ...] = (*shared.bureau, credit_report_warning)
ESCALATION_RULES: tuple[Rule, ...] = shared.escalation
