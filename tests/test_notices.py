"""Notice templates (pure): every kind in every locale names the amount, the days past due, the link."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain.commands import NoticeKind, NoticeRequest
from domain.models import Stage
from domain.notices_v2 import V2_KINDS
from domain.notices import (
    SUPPORTED_LOCALES,
    payment_link,
    render_notice,
    render_sms,
    render_voice_script,
    resolve_locale,
)

PORTAL = "https://pay.example-bank.cn"
LINK = "https://pay.example-bank.cn/loans/WL-2024-000123"


def request(kind: NoticeKind = NoticeKind.COLLECTION, **overrides) -> NoticeRequest:
    values = dict(
        key=f"WL-2024-000123:notice:{kind.value}:0",
        loan_id="WL-2024-000123",
        channel="email",
        kind=kind,
        stage=Stage.NOTICE,
        to="zhangsan@example.com",
        borrower_name="张三",
        locale="zh-CN",
        currency="CNY",
        amount_owed="5123.4",
        days_past_due=40,
        installment_due_date=date(2026, 12, 15),
        installment_amount="854",
    )
    if kind in V2_KINDS:  # what the rule-required notices must state
        values.update(event_date=date(2026, 12, 20), dispute_by=date(2027, 1, 18), daily_charge="7.50",
                      balance={"principal": "5000.00", "interest": "73.40", "penalty": "36.70", "fees": "13.30",
                               "total": "5123.40"}, borrower_id="B-1")
    values.update(overrides)
    return NoticeRequest(**values)


# Kinds whose notices must state the days past due.
KINDS_WITH_DPD = {NoticeKind.COLLECTION, NoticeKind.PLAN_BROKEN}


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_kind_and_locale_names_amount_link_and_dpd(kind: NoticeKind, locale: str) -> None:
    req = request(kind, locale=locale)
    notice = render_notice(req, PORTAL)
    assert notice.locale == locale
    for body in (notice.text, notice.html):
        assert "CNY 5123.40" in body  # currency and two places
        assert LINK in body
        assert "WL-2024-000123" in body
        if kind in KINDS_WITH_DPD:
            assert "40" in body
    assert "WL-2024-000123" in notice.subject
    assert notice.html.startswith("<!DOCTYPE html>")
    assert f'href="{LINK}"' in notice.html
    # The name greets the borrower in every notice.
    assert "张三" in notice.text

    sms = render_sms(req.model_copy(update={"channel": "sms"}), PORTAL)
    assert LINK in sms
    assert ("CNY 854.00" if kind is NoticeKind.INSTALLMENT_REMINDER else "CNY 5123.40") in sms
    if kind in KINDS_WITH_DPD:
        assert "40" in sms
    voice = render_voice_script(req.model_copy(update={"channel": "voice"}))
    assert "WL-2024-000123" in voice
    if kind is NoticeKind.INSTALLMENT_REMINDER:
        assert "CNY 854.00" in voice  # the installment, not the plan's total
    elif kind is not NoticeKind.PAID_IN_FULL:
        assert "CNY 5123.40" in voice
    assert "http" not in voice  # nobody can follow a link read aloud


def test_collection_notice_english_content() -> None:
    notice = render_notice(request(locale="en", borrower_name="Zhang San"), PORTAL)
    assert notice.subject == "Payment overdue on loan WL-2024-000123: CNY 5123.40 owed"
    assert "Dear Zhang San," in notice.text
    assert "is 40 days past due. The amount owed is CNY 5123.40." in notice.text
    assert f"Pay online: {LINK}" in notice.text
    assert "payment plan" in notice.text


def test_collection_notice_chinese_content() -> None:
    notice = render_notice(request(locale="zh-CN"), PORTAL)
    assert notice.subject.startswith("【逾期提醒】贷款 WL-2024-000123 已逾期 40 天")
    assert "张三，您好" in notice.text
    assert "已逾期 40 天，目前应还金额为 CNY 5123.40" in notice.text
    assert f"在线还款：{LINK}" in notice.text
    assert "分期还款计划" in notice.text


def test_one_day_is_singular_in_english() -> None:
    notice = render_notice(request(locale="en", days_past_due=1), PORTAL)
    assert "is 1 day past due" in notice.text


@pytest.mark.parametrize(
    ("stage", "en_phrase", "zh_phrase"),
    [
        (Stage.CALL, "will call you", "致电"),
        (Stage.VISIT, "visit to your registered address", "上门拜访"),
        (Stage.AGENCY, "collection agency", "催收机构"),
        (Stage.LEGAL, "legal action", "法律程序"),
    ],
)
def test_collection_notice_says_what_the_stage_means(stage: Stage, en_phrase: str, zh_phrase: str) -> None:
    assert en_phrase in render_notice(request(locale="en", stage=stage), PORTAL).text
    assert zh_phrase in render_notice(request(locale="zh-CN", stage=stage), PORTAL).text


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_installment_reminder_names_installment_amount_and_due_date(locale: str) -> None:
    req = request(NoticeKind.INSTALLMENT_REMINDER, locale=locale)
    notice = render_notice(req, PORTAL)
    for text in (notice.subject, notice.text, render_sms(req, PORTAL), render_voice_script(req)):
        assert "CNY 854.00" in text
        assert "2026-12-15" in text


@pytest.mark.parametrize("missing", ["installment_amount", "installment_due_date"])
def test_installment_reminder_without_its_installment_is_refused(missing: str) -> None:
    req = request(NoticeKind.INSTALLMENT_REMINDER, **{missing: None})
    with pytest.raises(ValueError, match=missing):
        render_notice(req, PORTAL)
    with pytest.raises(ValueError, match=missing):
        render_sms(req, PORTAL)


def test_plan_accepted_names_first_installment_when_given() -> None:
    notice = render_notice(request(NoticeKind.PLAN_ACCEPTED, locale="en"), PORTAL)
    assert "first installment of CNY 854.00 is due on 2026-12-15" in notice.text
    bare = render_notice(
        request(NoticeKind.PLAN_ACCEPTED, locale="en", installment_amount=None, installment_due_date=None),
        PORTAL,
    )
    assert "first installment" not in bare.text


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("zh-CN", "zh-CN"),
        ("zh-cn", "zh-CN"),
        ("zh_CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh", "zh-CN"),
        ("en", "en"),
        ("en-GB", "en"),
        ("fr-FR", "en"),
        ("", "en"),
    ],
)
def test_locale_fallback(given: str, resolved: str) -> None:
    assert resolve_locale(given) == resolved


def test_unsupported_locale_renders_english() -> None:
    notice = render_notice(request(locale="fr-FR", borrower_name="Jean"), PORTAL)
    assert notice.locale == "en"
    assert "Dear Jean," in notice.text


def test_html_escapes_every_value() -> None:
    nasty = '<script>alert("x")</script> & Co'
    notice = render_notice(request(locale="en", borrower_name=nasty), PORTAL + '/"><b>')
    assert "<script>" not in notice.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in notice.html
    assert '"><b>' not in notice.html
    # The plain text keeps the name as it is.
    assert nasty in notice.text


def test_english_sms_fits_in_140_characters() -> None:
    # The rule-required notices (warnings, validation) state a consequence and its date: two segments.
    for kind in [k for k in NoticeKind if k not in V2_KINDS]:
        text = render_sms(request(kind, locale="en", borrower_name="Zhang San Feng"), PORTAL)
        assert len(text) <= 140, (kind, len(text), text)
    # A long name is dropped before the essentials are.
    long_name = render_sms(request(locale="en", borrower_name="Bartholomew Montgomery-Featherstonehaugh"), PORTAL)
    assert len(long_name) <= 140
    assert "CNY 5123.40" in long_name and LINK in long_name and "40" in long_name


def test_payment_link_quotes_the_loan_id_and_ignores_trailing_slash() -> None:
    assert payment_link("http://localhost:8000/", "WL-1") == "http://localhost:8000/loans/WL-1"
    assert payment_link("http://h", "a b/c") == "http://h/loans/a%20b%2Fc"


def test_large_amounts_keep_two_places_without_float_rounding() -> None:
    notice = render_notice(request(locale="en", amount_owed=Decimal("123456789012.35")), PORTAL)
    assert "CNY 123456789012.35" in notice.text
