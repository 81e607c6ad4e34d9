"""The notices the contact rules require, and what every v2 message adds: consequences said plainly,
with the amounts, and how to stop messages.

- `credit_report_warning`: before the first negative report to the credit bureau (CN: Credit
  Reporting Regulation art. 15, at least 7 days ahead).
- `agency_warning` / `legal_warning`: before placement with an agency or referral for legal action,
  at least 7 days ahead (contract v2).
- `validation` (US, 12 CFR 1006.34): the amount, its itemisation and the dispute period.
- `plan_offer`: after reported hardship (UK, CONC 7.3): how to ask for a payment plan.

Every message of a borrower-v1 loan ends with how to stop it: emails an unsubscribe line (the
List-Unsubscribe header is the email adapter's), text messages a short opt-out link. Pure: the
templates only format what the request carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .commands import NoticeKind, NoticeRequest
from .money import fmt

V2_KINDS = (NoticeKind.CREDIT_REPORT_WARNING, NoticeKind.AGENCY_WARNING, NoticeKind.LEGAL_WARNING,
            NoticeKind.VALIDATION, NoticeKind.PLAN_OFFER)


@dataclass(frozen=True)
class Costs:
    """What the request says about the debt, formatted: itemisation and the daily cost of delay."""

    principal: str | None
    interest: str | None
    penalty: str | None
    fees: str | None
    daily: str | None
    event_date: str | None
    dispute_by: str | None


def costs(req: NoticeRequest) -> Costs:
    b = req.balance

    def m(v: object) -> str | None:
        return None if v is None else f"{req.currency} {fmt(v)}"  # type: ignore[arg-type]

    return Costs(principal=m(b.principal) if b else None, interest=m(b.interest) if b else None,
                 penalty=m(b.penalty) if b else None, fees=m(b.fees) if b else None, daily=m(req.daily_charge),
                 event_date=_d(req.event_date), dispute_by=_d(req.dispute_by))


def _d(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _need(value: str | None, field: str, kind: NoticeKind) -> str:
    if value is None:
        raise ValueError(f"{field} is required for a {kind.value} notice")
    return value


# --------------------------------------------------------------------------------------------
# English
# --------------------------------------------------------------------------------------------


def itemised_en(c: Costs) -> str:
    return (f"principal {c.principal}, interest {c.interest}, penalty interest {c.penalty}, "
            f"collection fees {c.fees}") if c.principal else ""


def consequences_en(c: Costs) -> list[str]:
    """Said plainly in every v2 collection notice: what delay costs, with the amounts."""
    out = []
    if c.daily:
        out.append(f"Every further day unpaid adds {c.daily} in interest and penalty interest (罚息).")
    out.append("Unpaid debts are reported to the credit bureau, which can make it harder for you to borrow; "
               "collection fees may be added, and the loan may be placed with a collection agency or "
               "referred for legal action. You can stop this by paying or by asking for a payment plan.")
    return out


def v2_en(kind: NoticeKind, name: str, loan_id: str, amount: str, dpd: int, c: Costs) -> tuple[str, list[str]]:
    """Subject and paragraphs (the payment link and the signature are added by the caller)."""
    items = itemised_en(c)
    daily = [f"Every further day unpaid adds {c.daily} in interest and penalty interest."] if c.daily else []
    if kind is NoticeKind.CREDIT_REPORT_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"Before {when}: loan {loan_id} will be reported to the credit bureau", [
            f"Your loan {loan_id} is {dpd} days past due. {amount} is owed ({items}).",
            f"If it is not paid, or a payment plan agreed, we will report it to the credit bureau as overdue "
            f"on or after {when}. A negative credit record can make it harder for you to get credit, a card or "
            f"a mortgage for years.", *daily,
            "Paying in full, or agreeing a payment plan, before that date avoids the report."]
    if kind is NoticeKind.AGENCY_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"Before {when}: loan {loan_id} will be passed to a collection agency", [
            f"Your loan {loan_id} is {dpd} days past due. {amount} is owed ({items}).",
            f"If it is not paid, or a payment plan agreed, we will place it with an outside collection agency on "
            f"or after {when}. The agency will contact you to collect it, and collection fees may be added.",
            *daily, "You can still pay us directly or ask for a payment plan at any time."]
    if kind is NoticeKind.LEGAL_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"Before {when}: loan {loan_id} will be referred for legal action", [
            f"Your loan {loan_id} is {dpd} days past due. {amount} is owed ({items}).",
            f"If it is not paid, or a payment plan agreed, we will refer it for legal action on or after {when}. "
            f"A court may order you to pay the debt, interest and the costs of the proceedings.", *daily,
            "Paying, or agreeing a payment plan, before that date stops the referral. If you are in financial "
            "difficulty, free debt advice can help; tell us and we will give you time."]
    if kind is NoticeKind.VALIDATION:
        by = _need(c.dispute_by, "dispute_by", kind)
        return f"About your debt: loan {loan_id}, {amount}", [
            f"This is a communication from a debt collector. We are trying to collect a debt that you owe on loan "
            f"{loan_id}. We will use any information you give us to help collect the debt.",
            f"As of today you owe {amount}: {items}.", *daily,
            f"How can you dispute the debt? Tell us by {by} if you think you do not owe all or part of it; we must "
            f"then stop collection until we send you information about the debt. You may also ask for the name and "
            f"address of the original creditor by {by}. If you write to us by {by}, we will not report the debt "
            f"as undisputed. Reply to this message, use the dispute link in the portal, or write to us."]
    if kind is NoticeKind.PLAN_OFFER:
        return f"A payment plan for loan {loan_id}", [
            f"Thank you for telling us about your circumstances. {amount} is owed on loan {loan_id}.",
            "We will not escalate your account while you consider your options. You can spread what you owe over "
            "installments: propose amounts and dates that you can afford in the portal.",
            "Free, confidential debt advice is available (in the UK from MoneyHelper or StepChange); if you are "
            "getting advice, tell us and we will hold collection while you do."]
    raise ValueError(f"kind: no v2 template for notice kind {kind!r}")


def v2_en_sms(kind: NoticeKind, loan_id: str, amount: str, c: Costs, link: str) -> str:
    when = c.event_date
    if kind is NoticeKind.CREDIT_REPORT_WARNING:
        return f"Loan {loan_id}: {amount} overdue. Unless paid or a plan agreed, we report it to the credit bureau from {when}. Pay/plan: {link}"
    if kind is NoticeKind.AGENCY_WARNING:
        return f"Loan {loan_id}: {amount} overdue. Unless paid or a plan agreed, it goes to a collection agency from {when}. Pay/plan: {link}"
    if kind is NoticeKind.LEGAL_WARNING:
        return f"Loan {loan_id}: {amount} overdue. Unless paid or a plan agreed, legal action from {when}. Pay/plan: {link}"
    if kind is NoticeKind.VALIDATION:
        return f"From a debt collector: loan {loan_id}, {amount} owed. You may dispute it by {c.dispute_by}. Details: {link}"
    if kind is NoticeKind.PLAN_OFFER:
        return f"Loan {loan_id}: we can spread {amount} over installments you can afford. Propose a plan: {link}"
    raise ValueError(f"kind: no v2 template for notice kind {kind!r}")


def v2_en_voice(kind: NoticeKind, loan_id: str, amount: str, c: Costs) -> str:
    text = v2_en(kind, "", loan_id, amount, 0, c)[1]
    return " ".join(text[:2])


# --------------------------------------------------------------------------------------------
# Simplified Chinese
# --------------------------------------------------------------------------------------------


def itemised_zh(c: Costs) -> str:
    return f"本金{c.principal}、利息{c.interest}、罚息{c.penalty}、催收费用{c.fees}" if c.principal else ""


def consequences_zh(c: Costs) -> list[str]:
    out = []
    if c.daily:
        out.append(f"每逾期一天，将新增利息及罚息共 {c.daily}。")
    out.append("逾期欠款将被报送征信机构，影响您今后的贷款、信用卡等金融业务；还可能产生催收费用，"
               "并可能被委托外部催收机构或移交法律程序。还款或申请分期即可避免。")
    return out


def v2_zh(kind: NoticeKind, name: str, loan_id: str, amount: str, dpd: int, c: Costs) -> tuple[str, list[str]]:
    items = itemised_zh(c)
    daily = [f"每逾期一天，将新增利息及罚息共 {c.daily}。"] if c.daily else []
    if kind is NoticeKind.CREDIT_REPORT_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"【征信报送提示】贷款 {loan_id} 将于 {when} 起报送征信", [
            f"您的贷款 {loan_id} 已逾期 {dpd} 天，应还 {amount}（{items}）。",
            f"根据《征信业管理条例》第十五条，现事先告知：如未还款或达成分期还款计划，我们将于 {when} 起向征信机构报送"
            f"该笔逾期信息。不良信用记录将影响您今后办理贷款、信用卡等金融业务。", *daily,
            "在该日期前全额还款或达成分期还款计划，可避免报送。"]
    if kind is NoticeKind.AGENCY_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"【委外催收提示】贷款 {loan_id} 将于 {when} 起委托外部催收机构", [
            f"您的贷款 {loan_id} 已逾期 {dpd} 天，应还 {amount}（{items}）。",
            f"如未还款或达成分期还款计划，我们将于 {when} 起将该贷款委托外部催收机构处理，该机构将与您联系，并可能产生催收费用。",
            *daily, "您仍可随时直接向我们还款或申请分期。"]
    if kind is NoticeKind.LEGAL_WARNING:
        when = _need(c.event_date, "event_date", kind)
        return f"【法律程序提示】贷款 {loan_id} 将于 {when} 起移交法律程序", [
            f"您的贷款 {loan_id} 已逾期 {dpd} 天，应还 {amount}（{items}）。",
            f"如未还款或达成分期还款计划，我们将于 {when} 起将该贷款移交法律程序。法院可能判令您偿还欠款、利息及诉讼费用。",
            *daily, "在该日期前还款或达成分期还款计划，可避免移交。如您有经济困难，请告知我们。"]
    if kind is NoticeKind.VALIDATION:
        by = _need(c.dispute_by, "dispute_by", kind)
        return f"【债务说明】贷款 {loan_id}，应还 {amount}", [
            f"本通知来自债务催收方，旨在催收您在贷款 {loan_id} 项下的欠款。",
            f"截至今日您应还 {amount}：{items}。", *daily,
            f"如您对全部或部分欠款有异议，请于 {by} 前告知我们，在我们向您提供债务核实信息之前将暂停催收。"]
    if kind is NoticeKind.PLAN_OFFER:
        return f"【分期方案】贷款 {loan_id} 可申请分期还款", [
            f"感谢您告知您的情况。贷款 {loan_id} 目前应还 {amount}。",
            "在您考虑期间我们不会升级催收。您可在平台上按可承受的金额和日期申请分期还款计划。"]
    raise ValueError(f"kind: no v2 template for notice kind {kind!r}")


def v2_zh_sms(kind: NoticeKind, loan_id: str, amount: str, c: Costs, link: str) -> str:
    when = c.event_date
    if kind is NoticeKind.CREDIT_REPORT_WARNING:
        return f"【贷后服务】贷款{loan_id}逾期应还{amount}，如未还款或分期，将于{when}起报送征信，影响您的信用记录。还款/分期：{link}"
    if kind is NoticeKind.AGENCY_WARNING:
        return f"【贷后服务】贷款{loan_id}逾期应还{amount}，如未还款或分期，将于{when}起委托外部催收机构。还款/分期：{link}"
    if kind is NoticeKind.LEGAL_WARNING:
        return f"【贷后服务】贷款{loan_id}逾期应还{amount}，如未还款或分期，将于{when}起移交法律程序。还款/分期：{link}"
    if kind is NoticeKind.VALIDATION:
        return f"【贷后服务】贷款{loan_id}应还{amount}，如有异议请于{c.dispute_by}前提出。详情：{link}"
    if kind is NoticeKind.PLAN_OFFER:
        return f"【贷后服务】贷款{loan_id}应还{amount}，可按您可承受的金额申请分期：{link}"
    raise ValueError(f"kind: no v2 template for notice kind {kind!r}")


def v2_zh_voice(kind: NoticeKind, loan_id: str, amount: str, c: Costs) -> str:
    text = v2_zh(kind, "", loan_id, amount, 0, c)[1]
    return "".join(text[:2])


# --------------------------------------------------------------------------------------------
# How to stop messages (every v2 message)
# --------------------------------------------------------------------------------------------


def opt_out_line(locale: str, channel: str, link: str | None) -> str | None:
    if link is None:
        return None
    if locale == "zh-CN":
        return f"退订：{link}" if channel == "sms" else f"如不希望再收到此类邮件，请点击退订：{link}"
    return f"Stop texts: {link}" if channel == "sms" else f"To stop these emails, unsubscribe: {link}"
