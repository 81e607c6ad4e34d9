"""Notice templates: what a borrower reads (email), gets by text message (SMS) or hears (voice).

Pure: no I/O, no clock, no temporalio. The activities call these; the workflow never needs to.

Locales: ``zh-CN`` and ``en``. A borrower's locale picks the template by exact tag, then by
language (``zh-TW`` and ``zh`` read Chinese, ``en-GB`` reads English), then falls back to ``en``.

Every amount is shown with its currency and two places, in the contract's money form
(``CNY 5123.45``), and every date as ``YYYY-MM-DD``, so that what the borrower reads matches the
portal and the status to the cent. Collection notices name the borrower, the amount owed, the days
past due, where to pay (``<portal_url>/loans/<loan_id>``) and how to ask for a payment plan.
Installment reminders name the installment amount and its due date.

Bad input (an installment reminder without its amount or date) is a ``ValueError`` naming the
field, never a half-filled notice.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from .commands import NoticeKind, NoticeRequest
from .models import Model, Stage
from .money import fmt
from .notices_v2 import (
    V2_KINDS,
    Costs,
    consequences_en,
    consequences_zh,
    costs,
    opt_out_line,
    v2_en,
    v2_en_sms,
    v2_en_voice,
    v2_zh,
    v2_zh_sms,
    v2_zh_voice,
)

SUPPORTED_LOCALES: tuple[str, ...] = ("zh-CN", "en")
DEFAULT_LOCALE = "en"
SMS_TARGET_LENGTH = 140


class RenderedNotice(Model):
    subject: str
    text: str
    """Plain-text body."""
    html: str
    """HTML body: every value interpolated into it is escaped."""
    locale: str
    """The template locale actually used (after fallback)."""


def resolve_locale(locale: str | None) -> str:
    """The supported template locale for a borrower's locale: exact tag, then language, then en."""
    if not locale:
        return DEFAULT_LOCALE
    tag = locale.strip().replace("_", "-").lower()
    for supported in SUPPORTED_LOCALES:
        if supported.lower() == tag:
            return supported
    language = tag.split("-", 1)[0]
    for supported in SUPPORTED_LOCALES:
        if supported.lower().split("-", 1)[0] == language:
            return supported
    return DEFAULT_LOCALE


def payment_link(portal_url: str, loan_id: str) -> str:
    """Where the borrower pays or proposes a payment plan: ``<portal_url>/loans/<loan_id>``."""
    return f"{portal_url.rstrip('/')}/loans/{quote(loan_id, safe='')}"


def money_text(currency: str, amount: Decimal) -> str:
    """``CNY 5123.45``: the currency and the contract's two-place amount."""
    return f"{currency} {fmt(amount)}"


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    url: str
    label: str | None = None


Segment = str | Link
Paragraph = list[Segment]


@dataclass(frozen=True)
class _Facts:
    """The values a template may use, already formatted."""

    name: str
    loan_id: str
    amount: str
    dpd: int
    link: str
    stage: Stage | None
    installment_amount: str | None
    installment_due: str | None
    v2: bool = False
    """A borrower-v1 loan's message: consequences said plainly, and how to stop messages."""
    costs: Costs | None = None
    opt_out: str | None = None


def _facts(req: NoticeRequest, portal_url: str, opt_out: str | None = None) -> _Facts:
    installment_amount = (
        money_text(req.currency, req.installment_amount) if req.installment_amount is not None else None
    )
    installment_due = req.installment_due_date.isoformat() if req.installment_due_date else None
    return _Facts(
        name=req.borrower_name,
        loan_id=req.loan_id,
        amount=money_text(req.currency, req.amount_owed),
        dpd=req.days_past_due,
        link=payment_link(portal_url, req.loan_id),
        stage=req.stage,
        installment_amount=installment_amount,
        installment_due=installment_due,
        v2=req.borrower_id is not None,
        costs=costs(req),
        opt_out=opt_out,
    )


def _require_installment(f: _Facts) -> tuple[str, str]:
    if f.installment_amount is None:
        raise ValueError("installment_amount is required for an installment_reminder notice")
    if f.installment_due is None:
        raise ValueError("installment_due_date is required for an installment_reminder notice")
    return f.installment_amount, f.installment_due


def _text(paragraphs: list[Paragraph]) -> str:
    def seg(s: Segment) -> str:
        return s if isinstance(s, str) else s.url

    return "\n\n".join("".join(seg(s) for s in p) for p in paragraphs) + "\n"


def _html(subject: str, paragraphs: list[Paragraph], lang: str) -> str:
    def seg(s: Segment) -> str:
        if isinstance(s, str):
            return html.escape(s)
        label = s.label or s.url
        return f'<a href="{html.escape(s.url, quote=True)}">{html.escape(label)}</a>'

    body = "\n".join(f"<p>{''.join(seg(s) for s in p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{html.escape(lang, quote=True)}">\n<head>'
        f'<meta charset="utf-8"><title>{html.escape(subject)}</title></head>\n'
        f'<body style="font-family: sans-serif; line-height: 1.5">\n{body}\n</body>\n</html>\n'
    )


# --------------------------------------------------------------------------------------------
# English
# --------------------------------------------------------------------------------------------


def _days_en(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


_STAGE_EN: dict[Stage | None, str] = {
    None: "Penalty interest accrues for every day the amount stays unpaid, so please pay as soon as you can.",
    Stage.NOTICE: "Penalty interest accrues for every day the amount stays unpaid, so please pay as soon as you can.",
    Stage.CALL: "A member of our collections team will call you about this loan.",
    Stage.VISIT: "As the loan remains unpaid, a visit to your registered address may be arranged.",
    Stage.AGENCY: (
        "The loan has been placed with an outside collection agency, which may contact you. "
        "You can still pay us directly."
    ),
    Stage.LEGAL: (
        "The loan has been referred for legal action. Paying now or agreeing a payment plan "
        "can stop further proceedings."
    ),
}

_SIGN_EN = "Collections team"


def _en(kind: NoticeKind, f: _Facts) -> tuple[str, list[Paragraph]]:
    link = Link(f.link)
    hello: Paragraph = [f"Dear {f.name},"]
    sign: Paragraph = [_SIGN_EN]
    if kind in V2_KINDS:
        assert f.costs is not None
        subject, texts = v2_en(kind, f.name, f.loan_id, f.amount, f.dpd, f.costs)
        return subject, [hello, *([t] for t in texts), ["Pay or ask for a payment plan: ", link], sign]
    if kind is NoticeKind.COLLECTION and f.v2 and f.costs is not None:
        subject = f"Payment overdue on loan {f.loan_id}: {f.amount} owed"
        return subject, [
            hello,
            [f"Your loan {f.loan_id} is {_days_en(f.dpd)} past due. The amount owed is {f.amount}."],
            [_STAGE_EN.get(f.stage, _STAGE_EN[None])],
            *([t] for t in consequences_en(f.costs)),
            ["Pay online, or ask for a payment plan (pay in installments): ", link],
            ["If you have already paid, please disregard this notice."],
            sign,
        ]
    if kind is NoticeKind.COLLECTION:
        subject = f"Payment overdue on loan {f.loan_id}: {f.amount} owed"
        if f.stage is Stage.LEGAL:
            subject = f"Legal referral: loan {f.loan_id}, {f.amount} owed"
        return subject, [
            hello,
            [f"Your loan {f.loan_id} is {_days_en(f.dpd)} past due. The amount owed is {f.amount}."],
            [_STAGE_EN.get(f.stage, _STAGE_EN[None])],
            ["Pay online: ", link],
            [
                "If you cannot pay the full amount, you can ask for a payment plan (pay in installments) "
                "on the same page: ",
                link,
            ],
            ["If you have already paid, please disregard this notice."],
            sign,
        ]
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return f"Installment of {amount} due on {due}: loan {f.loan_id}", [
            hello,
            [f"The next installment of your payment plan for loan {f.loan_id} is {amount}, due on {due}."],
            [f"Still to pay under the plan: {f.amount}."],
            ["Pay online: ", link],
            [
                "Paying each installment on time keeps the plan in place; an installment left unpaid "
                "after its due date can end the plan."
            ],
            sign,
        ]
    if kind is NoticeKind.PLAN_ACCEPTED:
        paragraphs: list[Paragraph] = [
            hello,
            [f"Your payment plan for loan {f.loan_id} has been accepted. The total under the plan is {f.amount}."],
        ]
        if f.installment_amount and f.installment_due:
            paragraphs.append(
                [f"Your first installment of {f.installment_amount} is due on {f.installment_due}."]
            )
        paragraphs += [
            ["See the full schedule and pay: ", link],
            ["While the installments are paid on time, we will not contact you about arrears."],
            sign,
        ]
        return f"Your payment plan for loan {f.loan_id} is confirmed", paragraphs
    if kind is NoticeKind.PLAN_BROKEN:
        return f"Your payment plan for loan {f.loan_id} has ended: {f.amount} owed", [
            hello,
            [
                f"An installment was not paid, so the payment plan for loan {f.loan_id} has ended. "
                f"The loan is {_days_en(f.dpd)} past due and the amount owed is {f.amount}."
            ],
            ["Pay online: ", link],
            ["You can ask for a new payment plan on the same page: ", link],
            sign,
        ]
    if kind is NoticeKind.PAID_IN_FULL:
        return f"Loan {f.loan_id} is paid in full: thank you", [
            hello,
            [f"Thank you for your payment. Loan {f.loan_id} is paid in full; the amount now owed is {f.amount}."],
            ["We will not contact you about this loan again."],
            ["Details: ", link],
            sign,
        ]
    raise ValueError(f"kind: no template for notice kind {kind!r}")


def _en_sms(kind: NoticeKind, f: _Facts) -> list[str]:
    """Candidates, longest first; the first within the SMS target length is used."""
    if kind in V2_KINDS:
        assert f.costs is not None
        return [v2_en_sms(kind, f.loan_id, f.amount, f.costs, f.link)]
    if kind is NoticeKind.COLLECTION and f.v2 and f.costs is not None and f.costs.daily:
        return [f"Loan {f.loan_id} is {_days_en(f.dpd)} overdue, {f.amount} owed, +{f.costs.daily}/day. "
                f"Pay or ask for a plan: {f.link}"]
    if kind is NoticeKind.COLLECTION:
        return [
            f"{f.name}: loan {f.loan_id} is {_days_en(f.dpd)} overdue, {f.amount} owed. Pay or ask for a plan: {f.link}",
            f"Loan {f.loan_id} is {_days_en(f.dpd)} overdue, {f.amount} owed. Pay or ask for a plan: {f.link}",
            f"Loan {f.loan_id}: {f.dpd}d overdue, {f.amount} owed. Pay/plan: {f.link}",
        ]
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return [
            f"{f.name}: installment {amount} for loan {f.loan_id} is due {due}. Pay: {f.link}",
            f"Installment {amount} for loan {f.loan_id} due {due}. Pay: {f.link}",
        ]
    if kind is NoticeKind.PLAN_ACCEPTED:
        first = (
            f" First installment {f.installment_amount} due {f.installment_due}."
            if f.installment_amount and f.installment_due
            else ""
        )
        return [
            f"Plan for loan {f.loan_id} accepted, total {f.amount}.{first} Schedule: {f.link}",
            f"Plan for loan {f.loan_id} accepted, total {f.amount}. Schedule: {f.link}",
        ]
    if kind is NoticeKind.PLAN_BROKEN:
        return [
            f"Plan for loan {f.loan_id} ended: {_days_en(f.dpd)} overdue, {f.amount} owed. Pay or ask for a new plan: {f.link}",
            f"Plan for loan {f.loan_id} ended, {f.dpd}d overdue, {f.amount} owed. Pay/plan: {f.link}",
        ]
    if kind is NoticeKind.PAID_IN_FULL:
        return [
            f"{f.name}: loan {f.loan_id} is paid in full (balance {f.amount}). Thank you. {f.link}",
            f"Loan {f.loan_id} paid in full (balance {f.amount}). Thank you. {f.link}",
        ]
    raise ValueError(f"kind: no template for notice kind {kind!r}")


def _en_voice(kind: NoticeKind, f: _Facts) -> str:
    intro = f"Hello {f.name}. This is an automated message from your lender's collections team about loan {f.loan_id}."
    if kind in V2_KINDS:
        assert f.costs is not None
        return f"{intro} {v2_en_voice(kind, f.loan_id, f.amount, f.costs)}"
    if kind is NoticeKind.COLLECTION:
        return (
            f"{intro} The loan is {_days_en(f.dpd)} past due and {f.amount} is owed. "
            f"{_STAGE_EN.get(f.stage, _STAGE_EN[None])} "
            "Please pay, or ask for a payment plan, in the borrower portal, or stay on the line to speak to an agent."
        )
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return f"{intro} Your installment of {amount} is due on {due}. Please pay it in the borrower portal."
    if kind is NoticeKind.PLAN_ACCEPTED:
        return f"{intro} Your payment plan has been accepted. The total under the plan is {f.amount}."
    if kind is NoticeKind.PLAN_BROKEN:
        return (
            f"{intro} An installment was not paid, so your payment plan has ended. "
            f"The loan is {_days_en(f.dpd)} past due and {f.amount} is owed. "
            "Please pay, or ask for a new payment plan, in the borrower portal."
        )
    if kind is NoticeKind.PAID_IN_FULL:
        return f"{intro} The loan is paid in full. Thank you."
    raise ValueError(f"kind: no template for notice kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Simplified Chinese
# --------------------------------------------------------------------------------------------


_STAGE_ZH: dict[Stage | None, str] = {
    None: "逾期期间每日计收罚息，请尽快还款。",
    Stage.NOTICE: "逾期期间每日计收罚息，请尽快还款。",
    Stage.CALL: "我们的催收专员将致电与您联系。",
    Stage.VISIT: "由于欠款仍未结清，我们可能安排工作人员到您登记的地址上门拜访。",
    Stage.AGENCY: "您的贷款已委托外部催收机构处理，该机构可能与您联系。您仍可直接向我们还款。",
    Stage.LEGAL: "您的贷款已移交法律程序处理。立即还款或达成分期还款计划，可避免进一步的法律措施。",
}

_SIGN_ZH = "贷后服务中心"


def _zh(kind: NoticeKind, f: _Facts) -> tuple[str, list[Paragraph]]:
    link = Link(f.link)
    hello: Paragraph = [f"{f.name}，您好："]
    sign: Paragraph = [_SIGN_ZH]
    if kind in V2_KINDS:
        assert f.costs is not None
        subject, texts = v2_zh(kind, f.name, f.loan_id, f.amount, f.dpd, f.costs)
        return subject, [hello, *([t] for t in texts), ["还款或申请分期：", link], sign]
    if kind is NoticeKind.COLLECTION and f.v2 and f.costs is not None:
        return f"【逾期提醒】贷款 {f.loan_id} 已逾期 {f.dpd} 天，应还 {f.amount}", [
            hello,
            [f"您的贷款 {f.loan_id} 已逾期 {f.dpd} 天，目前应还金额为 {f.amount}。"],
            [_STAGE_ZH.get(f.stage, _STAGE_ZH[None])],
            *([t] for t in consequences_zh(f.costs)),
            ["在线还款或申请分期还款计划：", link],
            ["如您已还款，请忽略本通知。"],
            sign,
        ]
    if kind is NoticeKind.COLLECTION:
        subject = f"【逾期提醒】贷款 {f.loan_id} 已逾期 {f.dpd} 天，应还 {f.amount}"
        if f.stage is Stage.LEGAL:
            subject = f"【法律程序通知】贷款 {f.loan_id} 已逾期 {f.dpd} 天，应还 {f.amount}"
        return subject, [
            hello,
            [f"您的贷款 {f.loan_id} 已逾期 {f.dpd} 天，目前应还金额为 {f.amount}。"],
            [_STAGE_ZH.get(f.stage, _STAGE_ZH[None])],
            ["在线还款：", link],
            ["如无法一次性还清，可在同一页面申请分期还款计划：", link],
            ["如您已还款，请忽略本通知。"],
            sign,
        ]
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return f"【还款提醒】贷款 {f.loan_id} 本期分期 {amount} 将于 {due} 到期", [
            hello,
            [f"您的贷款 {f.loan_id} 分期还款计划本期应还 {amount}，到期日为 {due}。"],
            [f"分期计划剩余应还：{f.amount}。"],
            ["在线还款：", link],
            ["请按时还款以保持分期计划有效；到期后仍未支付的分期可能导致计划终止。"],
            sign,
        ]
    if kind is NoticeKind.PLAN_ACCEPTED:
        paragraphs: list[Paragraph] = [
            hello,
            [f"您为贷款 {f.loan_id} 申请的分期还款计划已通过，计划还款总额为 {f.amount}。"],
        ]
        if f.installment_amount and f.installment_due:
            paragraphs.append([f"首期应还 {f.installment_amount}，到期日为 {f.installment_due}。"])
        paragraphs += [
            ["查看完整还款计划并还款：", link],
            ["按期还款期间，我们不会再就逾期欠款与您联系。"],
            sign,
        ]
        return f"【分期确认】贷款 {f.loan_id} 的分期还款计划已生效", paragraphs
    if kind is NoticeKind.PLAN_BROKEN:
        return f"【计划终止】贷款 {f.loan_id} 的分期还款计划已终止，应还 {f.amount}", [
            hello,
            [
                f"由于有一期分期款项未按时支付，贷款 {f.loan_id} 的分期还款计划已终止。"
                f"该贷款已逾期 {f.dpd} 天，目前应还金额为 {f.amount}。"
            ],
            ["在线还款：", link],
            ["您可在同一页面重新申请分期还款计划：", link],
            sign,
        ]
    if kind is NoticeKind.PAID_IN_FULL:
        return f"【结清通知】贷款 {f.loan_id} 已全部还清", [
            hello,
            [f"感谢您的还款。贷款 {f.loan_id} 已全部结清，当前应还金额为 {f.amount}。"],
            ["我们将不再就该贷款与您联系。"],
            ["查看详情：", link],
            sign,
        ]
    raise ValueError(f"kind: no template for notice kind {kind!r}")


def _zh_sms(kind: NoticeKind, f: _Facts) -> list[str]:
    if kind in V2_KINDS:
        assert f.costs is not None
        return [v2_zh_sms(kind, f.loan_id, f.amount, f.costs, f.link)]
    if kind is NoticeKind.COLLECTION and f.v2 and f.costs is not None and f.costs.daily:
        return [f"【贷后服务】{f.name}您好，贷款{f.loan_id}已逾期{f.dpd}天，应还{f.amount}，每日新增利息罚息{f.costs.daily}，"
                f"逾期将影响征信。还款或申请分期：{f.link}"]
    if kind is NoticeKind.COLLECTION:
        return [f"【贷后服务】{f.name}您好，贷款{f.loan_id}已逾期{f.dpd}天，应还{f.amount}。还款或申请分期：{f.link}"]
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return [f"【贷后服务】{f.name}您好，贷款{f.loan_id}本期分期{amount}将于{due}到期，请按时还款：{f.link}"]
    if kind is NoticeKind.PLAN_ACCEPTED:
        first = (
            f"首期{f.installment_amount}于{f.installment_due}到期。"
            if f.installment_amount and f.installment_due
            else ""
        )
        return [f"【贷后服务】贷款{f.loan_id}分期计划已生效，总额{f.amount}。{first}详情：{f.link}"]
    if kind is NoticeKind.PLAN_BROKEN:
        return [
            f"【贷后服务】贷款{f.loan_id}分期计划已终止，已逾期{f.dpd}天，应还{f.amount}。还款或重新申请分期：{f.link}"
        ]
    if kind is NoticeKind.PAID_IN_FULL:
        return [f"【贷后服务】{f.name}您好，贷款{f.loan_id}已全部结清，余额{f.amount}。感谢您的还款。{f.link}"]
    raise ValueError(f"kind: no template for notice kind {kind!r}")


def _zh_voice(kind: NoticeKind, f: _Facts) -> str:
    intro = f"{f.name}您好，这里是贷后服务中心的自动语音，关于您的贷款{f.loan_id}。"
    if kind in V2_KINDS:
        assert f.costs is not None
        return f"{intro}{v2_zh_voice(kind, f.loan_id, f.amount, f.costs)}"
    if kind is NoticeKind.COLLECTION:
        return (
            f"{intro}该贷款已逾期{f.dpd}天，目前应还{f.amount}。{_STAGE_ZH.get(f.stage, _STAGE_ZH[None])}"
            "请通过借款人服务平台还款或申请分期还款计划，也可以不要挂机，转接人工服务。"
        )
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        amount, due = _require_installment(f)
        return f"{intro}您本期分期应还{amount}，到期日为{due}，请按时还款。"
    if kind is NoticeKind.PLAN_ACCEPTED:
        return f"{intro}您的分期还款计划已生效，计划还款总额为{f.amount}。"
    if kind is NoticeKind.PLAN_BROKEN:
        return (
            f"{intro}由于有一期分期款项未按时支付，您的分期还款计划已终止。"
            f"该贷款已逾期{f.dpd}天，目前应还{f.amount}。请尽快还款或重新申请分期还款计划。"
        )
    if kind is NoticeKind.PAID_IN_FULL:
        return f"{intro}该贷款已全部结清，感谢您的还款。"
    raise ValueError(f"kind: no template for notice kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Templates:
    notice: Callable[[NoticeKind, _Facts], tuple[str, list[Paragraph]]]
    sms: Callable[[NoticeKind, _Facts], list[str]]
    voice: Callable[[NoticeKind, _Facts], str]


_TEMPLATES: dict[str, _Templates] = {
    "en": _Templates(_en, _en_sms, _en_voice),
    "zh-CN": _Templates(_zh, _zh_sms, _zh_voice),
}


def render_notice(req: NoticeRequest, portal_url: str, opt_out_link: str | None = None) -> RenderedNotice:
    """Subject, plain text and HTML of a notice (email) in the borrower's language; a borrower-v1
    message ends with how to unsubscribe (`opt_out_link`, the signed one-click link)."""
    locale = resolve_locale(req.locale)
    subject, paragraphs = _TEMPLATES[locale].notice(NoticeKind(req.kind), _facts(req, portal_url))
    line = opt_out_line(locale, "email", opt_out_link)
    if line is not None:
        text, _, url = line.rpartition(opt_out_link)  # type: ignore[arg-type]
        paragraphs = [*paragraphs, [text, Link(opt_out_link)]]  # type: ignore[arg-type]
    return RenderedNotice(
        subject=subject, text=_text(paragraphs), html=_html(subject, paragraphs, locale), locale=locale
    )


def render_sms(req: NoticeRequest, portal_url: str, opt_out_link: str | None = None) -> str:
    """A short text message: within 140 characters for ``en`` where the values allow it; a borrower-v1
    message ends with how to stop texts (`opt_out_link`)."""
    locale = resolve_locale(req.locale)
    candidates = _TEMPLATES[locale].sms(NoticeKind(req.kind), _facts(req, portal_url))
    chosen = candidates[-1]
    for text in candidates:
        if len(text) <= SMS_TARGET_LENGTH:
            chosen = text
            break
    line = opt_out_line(locale, "sms", opt_out_link)
    return chosen if line is None else f"{chosen} {line}"


def render_voice_script(req: NoticeRequest) -> str:
    """What an automated call says: no links, amounts and dates spelled as in the notices."""
    locale = resolve_locale(req.locale)
    return _TEMPLATES[locale].voice(NoticeKind(req.kind), _facts(req, ""))
