"""The notices the contact rules require, and what every v2 message says: the consequences with the
amounts, and how to stop messages (pure templates; the email adapter's headers are tested with SMTP
in tests/test_workflow_ladder.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.commands import NoticeKind, NoticeRequest
from domain.notices import render_notice, render_sms, render_voice_script
from domain.notices_v2 import V2_KINDS
from domain.rules import Limits, requires_opt_out_text, validation_period_end
from runtime.links import LinkError, OptOutLinks

PORTAL = "https://pay.example-bank.cn"
LINKS = OptOutLinks("notice-test-link-secret-0123", PORTAL)


def request(kind: NoticeKind, locale: str = "en", channel: str = "email") -> NoticeRequest:
    return NoticeRequest(
        key=f"L-9:{kind.value}:{channel}", loan_id="L-9", channel=channel, kind=kind, to="ann@example.com",
        borrower_name="Ann Lee", locale=locale, currency="CNY", amount_owed="10150.00", days_past_due=54,
        borrower_id="B-9", rule_pack="CN", event_date=date(2027, 2, 1), dispute_by=date(2027, 1, 20),
        daily_charge="7.50", balance={"principal": "10000.00", "interest": "100.00", "penalty": "50.00",
                                      "fees": "0.00", "total": "10150.00"})


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
@pytest.mark.parametrize("kind", V2_KINDS)
def test_a_required_notice_says_what_happens_when_with_the_amounts(kind: NoticeKind, locale: str) -> None:
    req = request(kind, locale)
    link = LINKS.link("B-9", "email")
    notice = render_notice(req, PORTAL, link)
    text = notice.text
    assert "CNY 10150.00" in text and "L-9" in text
    if kind is not NoticeKind.PLAN_OFFER:
        assert "CNY 10000.00" in text and "CNY 100.00" in text and "CNY 50.00" in text  # itemised
        assert "CNY 7.50" in text  # what one more day costs
    if kind in (NoticeKind.CREDIT_REPORT_WARNING, NoticeKind.AGENCY_WARNING, NoticeKind.LEGAL_WARNING):
        assert "2027-02-01" in text and "2027-02-01" in notice.subject
    if kind is NoticeKind.CREDIT_REPORT_WARNING:
        assert ("credit" in text) if locale == "en" else ("征信" in text and "第十五条" in text)
    if kind is NoticeKind.LEGAL_WARNING:
        assert ("legal action" in text) if locale == "en" else ("法律程序" in text)
    if kind is NoticeKind.VALIDATION:
        assert "2027-01-20" in text and (("dispute" in text) if locale == "en" else ("异议" in text))
    assert text.rstrip().endswith(link) and f'href="{link}"' in notice.html  # how to unsubscribe, last
    sms = render_sms(req.model_copy(update={"channel": "sms"}), PORTAL, LINKS.link("B-9", "sms"))
    assert "CNY 10150.00" in sms and sms.endswith(LINKS.link("B-9", "sms"))
    assert ("Stop texts:" in sms) if locale == "en" else ("退订" in sms)
    voice = render_voice_script(req.model_copy(update={"channel": "voice"}))
    assert "http" not in voice and "L-9" in voice


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_every_v2_collection_notice_says_the_consequences_plainly(locale: str) -> None:
    text = render_notice(request(NoticeKind.COLLECTION, locale), PORTAL, LINKS.link("B-9", "email")).text
    assert "CNY 7.50" in text
    if locale == "en":
        assert "credit bureau" in text and "collection fees" in text and "legal action" in text
        assert "penalty interest" in text
    else:
        assert "征信" in text and "催收费用" in text and "法律程序" in text and "罚息" in text


def test_a_required_notice_without_its_date_is_refused_naming_the_field() -> None:
    req = request(NoticeKind.AGENCY_WARNING).model_copy(update={"event_date": None})
    with pytest.raises(ValueError, match="event_date is required for a agency_warning notice"):
        render_notice(req, PORTAL)


def test_the_opt_out_link_is_signed_and_names_borrower_and_channel() -> None:
    token = LINKS.token("B-9", "sms")
    assert LINKS.verify(token) == ("B-9", "sms")
    other = OptOutLinks("another-secret-entirely-0123", PORTAL)
    with pytest.raises(LinkError):
        other.verify(token)
    body, tag = token.split(".")
    forged = OptOutLinks.token(OptOutLinks("x" * 16, PORTAL), "B-10", "sms").split(".")[0]
    with pytest.raises(LinkError):
        LINKS.verify(f"{forged}.{tag}")  # another borrower's body under this borrower's tag
    with pytest.raises(LinkError):
        LINKS.verify("not-a-token")
    with pytest.raises(ValueError):
        LINKS.token("B-9", "fax")


def test_us_messages_must_say_how_to_stop_and_the_dispute_period_is_dated() -> None:
    assert requires_opt_out_text("US", "sms") and requires_opt_out_text("US", "email")
    assert not requires_opt_out_text("US", "call")
    limits = Limits.model_validate({"window_start": "08:00:00", "window_end": "21:00:00", "validation_period_days": 30})
    end = validation_period_end(datetime(2027, 1, 4, 10, tzinfo=UTC), limits)  # a Monday
    assert end == date(2027, 2, 10)  # received 5 business days later (Mon 11 Jan), then 30 days
