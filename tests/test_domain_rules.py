"""The contact rule packs by example: every rule fires, and does not fire, with its exact name.

The property tests (caps, deferrals, narrowing, DST) are in test_domain_rules_props.py.
"""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from domain.base import Stage
from domain.policy import Channel, ContactRules, Policy
from domain.rules import (
    BOUNDS,
    PACKS,
    Actor,
    BorrowerFlags,
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactRecord,
    LoanContext,
    PackCode,
    Verdict,
    bureau_gate,
    contact_channel,
    counts_as_conversation,
    decide,
    escalation_gate,
    hardship_hold_until,
    narrow,
    requires_opt_out_text,
    validation_period_end,
)
from tests.rules_support import DAY, LDN, NY, PACKS_ALL, ZONE, ask, at, attempt, days, loan, past, record

ALL_CHANNELS = ["sms", "email", "voice", "call", "visit"]


def blocked(d: ContactDecision, rule: str) -> None:
    assert (d.verdict, d.rule, d.until) == (Verdict.BLOCK, rule, None), d
    assert d.explanation and d.citation


def deferred(d: ContactDecision, rule: str, until: datetime) -> None:
    assert (d.verdict, d.rule) == (Verdict.DEFER, rule), d
    assert d.until is not None and d.until == until and d.until.utcoffset() == until.utcoffset(), d
    assert d.explanation and d.citation


def allowed(d: ContactDecision, pack: PackCode | str) -> None:
    assert (d.verdict, d.rule, d.until) == (Verdict.ALLOW, f"{PackCode(pack).value}.allowed", None), d


def noon(pack: PackCode) -> datetime:
    return at(12, tz=ZONE[pack])


# ----------------------------------------------------------------------------- the person's flags


@pytest.mark.parametrize("pack", PACKS_ALL)
@pytest.mark.parametrize("channel", ALL_CHANNELS)
def test_deceased_blocks_every_contact(pack: PackCode, channel: str) -> None:
    flags = BorrowerFlags(deceased="DC-77")
    for purpose in ("collection", "plan_reminder", "confirmation"):
        d = ask(pack, attempt(channel, purpose=purpose), noon(pack), flags=flags)
        blocked(d, f"{pack}.deceased")
        assert "DC-77" in d.explanation
    allowed(ask(pack, attempt(channel), noon(pack)), pack)


@pytest.mark.parametrize("pack", PACKS_ALL)
@pytest.mark.parametrize("channel", ALL_CHANNELS)
def test_bankruptcy_blocks_every_contact(pack: PackCode, channel: str) -> None:
    d = ask(pack, attempt(channel), noon(pack), flags=BorrowerFlags(bankruptcy="BK-2026-1"))
    blocked(d, f"{pack}.bankruptcy")
    assert "BK-2026-1" in d.explanation
    assert ask(pack, attempt(channel), noon(pack), flags=BorrowerFlags(opted_out=[])).verdict == Verdict.ALLOW


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_breathing_space_blocks_contact_while_it_runs(pack: PackCode) -> None:
    flags, _ = BorrowerFlags().with_breathing_space(DAY - days(10), 60)
    for channel in ALL_CHANNELS:
        blocked(ask(pack, attempt(channel), noon(pack), flags=flags), f"{pack}.breathing_space")
    # Its last day is still inside; the day it ends (start + 60) contact may resume.
    last = DAY - days(10) + days(59)
    blocked(ask(pack, attempt(), at(12, day=last, tz=ZONE[pack]), flags=flags), f"{pack}.breathing_space")
    allowed(ask(pack, attempt(), at(12, day=last + days(1), tz=ZONE[pack]), flags=flags), pack)
    # Before it starts, nothing.
    later, _ = BorrowerFlags().with_breathing_space(DAY + days(1), 60)
    allowed(ask(pack, attempt(), noon(pack), flags=later), pack)


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_cease_contact_blocks_all_but_a_notice_of_a_specific_remedy(pack: PackCode) -> None:
    flags = BorrowerFlags(cease_contact="written request, letter of 2026-11-10")
    for channel in ALL_CHANNELS:
        for purpose in ("collection", "plan_reminder", "confirmation"):
            blocked(ask(pack, attempt(channel, purpose=purpose), noon(pack), flags=flags), f"{pack}.cease_contact")
    blocked(ask(pack, attempt("email", purpose="warning", notice="agency_warning"), noon(pack), flags=flags),
            f"{pack}.cease_contact")
    for notice in ("legal_warning", "credit_report_warning"):
        allowed(ask(pack, attempt("email", purpose="warning", notice=notice), noon(pack), flags=flags), pack)
        # The remedy notice still keeps the other rules: not at night, not on an opted-out channel.
        night = ask(pack, attempt("email", purpose="warning", notice=notice), at(23, tz=ZONE[pack]), flags=flags)
        assert night.rule == f"{pack}.window"
        opted = flags.model_copy(update={"opted_out": [ContactChannel.EMAIL]})
        blocked(ask(pack, attempt("email", purpose="warning", notice=notice), noon(pack), flags=opted),
                f"{pack}.opt_out")


@pytest.mark.parametrize("pack", PACKS_ALL)
@pytest.mark.parametrize("channel", ["sms", "email", "voice", "call"])
def test_opt_out_blocks_that_channel_only(pack: PackCode, channel: str) -> None:
    flags, changed = BorrowerFlags().with_opt_out(channel)
    assert changed
    for purpose in ("collection", "plan_reminder", "confirmation"):
        d = ask(pack, attempt(channel, purpose=purpose), noon(pack), flags=flags)
        blocked(d, f"{pack}.opt_out")
        assert channel in d.explanation
    other = "email" if channel != "email" else "sms"
    allowed(ask(pack, attempt(other), noon(pack), flags=flags), pack)
    allowed(ask(pack, attempt("visit"), noon(pack), flags=flags), pack)
    back, changed = flags.with_opt_in(channel)
    assert changed and back.opted_out == []
    allowed(ask(pack, attempt(channel), noon(pack), flags=back), pack)


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_dispute_blocks_collection_but_not_a_running_plans_reminders(pack: PackCode) -> None:
    disputed = loan(pack, disputed=True)
    for channel in ALL_CHANNELS:
        d = ask(pack, attempt(channel), noon(pack), ln=disputed)
        blocked(d, f"{pack}.dispute")
        assert "disputed" in d.explanation
    blocked(ask(pack, attempt("sms", purpose="warning", notice="legal_warning"), noon(pack), ln=disputed),
            f"{pack}.dispute")
    # A plan reminder goes only while a plan runs; a confirmation (e.g. "dispute received") goes.
    blocked(ask(pack, attempt("sms", purpose="plan_reminder"), noon(pack), ln=disputed), f"{pack}.dispute")
    in_plan = loan(pack, disputed=True, in_plan=True)
    allowed(ask(pack, attempt("sms", purpose="plan_reminder"), noon(pack), ln=in_plan), pack)
    allowed(ask(pack, attempt("email", purpose="confirmation"), noon(pack), ln=disputed), pack)
    # The dispute is about one debt: another loan of the same borrower is still collected.
    allowed(ask(pack, attempt("sms", loan_id="L-2"), noon(pack), ln=loan(pack, loan_id="L-2")), pack)


def test_person_blocks_come_before_any_deferral() -> None:
    # At 03:00 with a full day, a deceased borrower is blocked, not deferred to the morning.
    flags = BorrowerFlags(deceased="DC-1", bankruptcy="BK-1", cease_contact="stop")
    d = ask("CN", attempt(), at(3), flags=flags, rec=record(*(past(at(9, i)) for i in range(5))))
    blocked(d, "CN.deceased")
    blocked(ask("CN", attempt(), at(3), flags=flags.model_copy(update={"deceased": None})), "CN.bankruptcy")


# ----------------------------------------------------------------------------- the window


@pytest.mark.parametrize(("pack", "close"), [(PackCode.CN, 22), (PackCode.US, 21), (PackCode.UK, 21)])
def test_window_defers_to_the_next_opening(pack: PackCode, close: int) -> None:
    tz = ZONE[pack]
    for h, m in [(0, 0), (5, 30), (7, 59)]:
        deferred(ask(pack, attempt(), at(h, m, tz=tz)), f"{pack}.window", at(8, tz=tz))
    for h, m in [(8, 0), (13, 0), (close - 1, 59)]:
        allowed(ask(pack, attempt(), at(h, m, tz=tz)), pack)
    for h, m in [(close, 0), (23, 59)]:
        d = ask(pack, attempt("call"), at(h, m, tz=tz))
        deferred(d, f"{pack}.window", at(8, day=DAY + days(1), tz=tz))
        assert f"{close:02d}:00" in d.explanation


def test_window_narrowed_by_the_policy() -> None:
    limits = ContactRules().limits  # 09:00-20:00, the default policy
    deferred(ask("CN", attempt(), at(8, 30), limits=limits), "CN.window", at(9))
    deferred(ask("CN", attempt(), at(20), limits=limits), "CN.window", at(9, day=DAY + days(1)))
    allowed(ask("CN", attempt(), at(19, 59), limits=limits), "CN")


def test_window_next_opening_across_dst_keeps_local_eight() -> None:
    # New York springs forward on 2026-03-08: deferred at 22:00 EST, the window opens at 08:00 EDT.
    d = ask("US", attempt(), at(22, day=date(2026, 3, 7), tz=NY))
    assert d.rule == "US.window" and d.until is not None and d.until.isoformat() == "2026-03-08T08:00:00-04:00"
    # London falls back on 2026-10-25: at 01:30 (either occurrence) the window opens at 08:00 GMT.
    for fold in (0, 1):
        d = ask("UK", attempt(), at(1, 30, day=date(2026, 10, 25), tz=LDN, fold=fold))
        assert d.until is not None and d.until.isoformat() == "2026-10-25T08:00:00+00:00"


# ----------------------------------------------------------------------------- daily limit


def test_cn_daily_limit_counts_every_contact_of_the_borrower_today() -> None:
    today = [past(at(9), "sms", "L-1"), past(at(10), "call", "L-2", actor="agency"),
             past(at(11), "visit", "L-3", actor="agent")]
    for channel in ALL_CHANNELS:
        d = ask("CN", attempt(channel), at(15), rec=record(*today))
        deferred(d, "CN.daily_limit", at(8, day=DAY + days(1)))
        assert "3" in d.explanation
    # Two today, and any number yesterday: allowed.
    yesterday = [past(at(h, day=DAY - days(1))) for h in (9, 10, 11, 12)]
    allowed(ask("CN", attempt("call"), at(15), rec=record(*today[:2], *yesterday)), "CN")


def test_cn_daily_limit_uses_the_borrowers_local_day() -> None:
    # 23:30 UTC the evening before is 07:30 in Shanghai today: those count today.
    utc_eve = datetime(2026, 11, 17, 23, 30, tzinfo=ZONE[PackCode.UK].__class__("UTC"))
    rec = record(*(past(utc_eve.replace(minute=30 + i), "email", key=f"E{i}") for i in range(3)))
    assert ask("CN", attempt(), at(10), rec=rec).rule == "CN.daily_limit"
    assert ContactRecord.contacts_today(rec, at(10)) == 3


def test_daily_limit_narrowed_and_in_packs_without_a_cap() -> None:
    rec = record(past(at(9, tz=NY)), past(at(10, tz=NY), "email"))
    one = ContactRules(rule_pack="US", max_direct_contacts_per_day=2).limits
    deferred(ask("US", attempt("call"), at(12, tz=NY), rec=rec, limits=one), "US.daily_limit",
             at(9, day=DAY + days(1), tz=NY))  # the policy's 09:00 window start
    assert narrow("US").max_contacts_per_day is None
    allowed(ask("US", attempt("call"), at(12, tz=NY), rec=record(*(past(at(9, i, tz=NY)) for i in range(9)))), "US")


# ----------------------------------------------------------------------------- US calls


def calls(*day_offsets: int, loan_id: str = "L-1", channel: str = "call", h: int = 10) -> list:
    return [past(at(h, i, day=DAY + days(o), tz=NY), channel, loan_id, key=f"C{loan_id}{i}")
            for i, o in enumerate(day_offsets)]


def test_us_seven_in_seven_defers_until_the_oldest_call_leaves_the_seven_days() -> None:
    week = calls(-6, -5, -4, -3, -2, -1, 0)
    for channel in ("call", "voice"):
        d = ask("US", attempt(channel), at(15, tz=NY), rec=record(*week))
        # The oldest of the 7 (DAY-6) leaves the period on DAY+1.
        deferred(d, "US.seven_in_seven", at(8, day=DAY + days(1), tz=NY))
    # Messages and visits are not telephone calls.
    allowed(ask("US", attempt("sms"), at(15, tz=NY), rec=record(*week)), "US")
    allowed(ask("US", attempt("visit"), at(15, tz=NY), rec=record(*week)), "US")
    # Six calls: the seventh may go; one of them a week ago: it has left the period.
    allowed(ask("US", attempt("call"), at(15, tz=NY), rec=record(*week[1:])), "US")
    allowed(ask("US", attempt("call"), at(15, tz=NY), rec=record(*calls(-7, -5, -4, -3, -2, -1, 0))), "US")


def test_us_seven_in_seven_counts_per_loan_any_actor_and_automated_calls() -> None:
    mixed = [*calls(-3, -3, -2, loan_id="L-1"), *calls(-1, -1, loan_id="L-1", channel="voice"),
             past(at(9, day=DAY, tz=NY), "call", "L-1", key="bot", actor="bot"),
             past(at(9, 5, day=DAY, tz=NY), "call", "L-1", key="agy", actor="agency")]
    deferred(ask("US", attempt("call"), at(15, tz=NY), rec=record(*mixed)), "US.seven_in_seven",
             at(8, day=DAY + days(4), tz=NY))
    # Another loan of the same borrower has its own seven.
    other = loan("US", loan_id="L-2")
    allowed(ask("US", attempt("call", loan_id="L-2"), at(15, tz=NY), ln=other, rec=record(*mixed)), "US")


def test_us_after_conversation_defers_calls_for_seven_days_counting_the_day_of_it() -> None:
    talk = past(at(11, day=DAY - days(3), tz=NY), "call", "L-1", key="talk", conversation=True)
    for channel in ("call", "voice"):
        d = ask("US", attempt(channel), at(15, tz=NY), rec=record(talk))
        deferred(d, "US.after_conversation", at(8, day=DAY + days(4), tz=NY))  # day 1 = DAY-3, free on DAY+4
    # Later the same day as the conversation is inside the period too.
    deferred(ask("US", attempt("call"), at(16, day=DAY - days(3), tz=NY), rec=record(talk)),
             "US.after_conversation", at(8, day=DAY + days(4), tz=NY))
    allowed(ask("US", attempt("sms"), at(15, tz=NY), rec=record(talk)), "US")
    # Day seven of the period (DAY+3) at its last minute is still inside; the next morning is not.
    assert ask("US", attempt("call"), at(20, 59, day=DAY + days(3), tz=NY), rec=record(talk)).rule == (
        "US.after_conversation")
    allowed(ask("US", attempt("call"), at(8, day=DAY + days(4), tz=NY), rec=record(talk)), "US")
    other = loan("US", loan_id="L-2")
    allowed(ask("US", attempt("call", loan_id="L-2"), at(15, tz=NY), ln=other, rec=record(talk)), "US")
    # A conversation recorded after the fact (flag_conversation) counts the same.
    rec, changed = record(past(at(11, day=DAY - days(1), tz=NY), "call", key="c1")).flag_conversation(
        "c1", loan_id="L-1", at=at(11, day=DAY - days(1), tz=NY))
    assert changed
    assert ask("US", attempt("call"), at(15, tz=NY), rec=rec).rule == "US.after_conversation"


def test_us_telephone_conversations_are_the_outcomes_the_contract_names() -> None:
    for outcome in ("promise_to_pay", "refused", "plan_agreed", "conversation", "hardship"):
        assert counts_as_conversation("US", outcome)
        assert not counts_as_conversation("CN", outcome) and not counts_as_conversation("UK", outcome)
    for outcome in ("no_answer", "wrong_number"):
        assert not counts_as_conversation("US", outcome)


def test_us_validation_first_blocks_everything_but_the_validation_notice() -> None:
    fresh = LoanContext(loan_id="L-1")
    for channel in ALL_CHANNELS:
        blocked(ask("US", attempt(channel), at(12, tz=NY), ln=fresh), "US.validation_first")
    allowed(ask("US", attempt("email", purpose="validation", notice="validation"), at(12, tz=NY), ln=fresh), "US")
    sent = fresh.model_copy(update={"validation_sent_at": at(10, tz=NY)})
    allowed(ask("US", attempt("sms"), at(12, tz=NY), ln=sent), "US")
    # Not in CN or UK.
    allowed(ask("CN", attempt(), at(12), ln=fresh), "CN")


def test_us_opt_out_text_on_every_sms_and_email() -> None:
    assert requires_opt_out_text("US", "sms") and requires_opt_out_text("US", ContactChannel.EMAIL)
    assert not requires_opt_out_text("US", "call") and not requires_opt_out_text("US", "voice")
    assert not any(requires_opt_out_text(p, c) for p in ("CN", "UK") for c in ALL_CHANNELS)
    with pytest.raises(ValueError, match="rule_pack"):
        requires_opt_out_text("FR", "sms")


def test_us_validation_period_end() -> None:
    # Sent Friday 2026-11-20: receipt assumed five weekdays later (Fri 27th), plus 30 days.
    sent = at(10, day=date(2026, 11, 20), tz=NY)
    assert validation_period_end(sent, narrow("US")) == date(2026, 12, 27)
    # A legal public holiday in between (Thanksgiving, 26th) moves receipt to Monday the 30th.
    assert validation_period_end(sent, narrow("US"), frozenset({date(2026, 11, 26)})) == date(2026, 12, 30)
    with pytest.raises(ValueError, match="validation_period_days"):
        validation_period_end(sent, narrow("CN"))


# ----------------------------------------------------------------------------- bureau gate


def test_cn_first_negative_report_waits_seven_days_after_the_warning() -> None:
    lim, ln, flags, rec = narrow("CN"), loan("CN"), BorrowerFlags(), ContactRecord()
    blocked(bureau_gate("CN", ln, rec, flags, lim, at(12), None), "CN.credit_report_warning")
    warned = at(12, day=DAY - days(6))
    deferred(bureau_gate("CN", ln, rec, flags, lim, at(12), warned), "CN.credit_report_warning",
             at(12, day=DAY + days(1)))
    d = bureau_gate("CN", ln, rec, flags, lim, at(12), at(12, day=DAY - days(7)))
    assert (d.verdict, d.rule) == (Verdict.ALLOW, "CN.bureau_allowed")


def test_us_passive_reporting_waits_fourteen_days_after_the_first_message() -> None:
    lim, flags, rec = narrow("US"), BorrowerFlags(), ContactRecord()
    blocked(bureau_gate("US", LoanContext(loan_id="L-1"), rec, flags, lim, at(12, tz=NY), None), "US.passive_reporting")
    first = at(9, day=DAY - days(13), tz=NY)
    first_sent = LoanContext(loan_id="L-1", first_message_at=first)
    deferred(bureau_gate("US", first_sent, rec, flags, lim, at(12, tz=NY), None),
             "US.passive_reporting", at(9, day=DAY + days(1), tz=NY))
    d = bureau_gate("US", LoanContext(loan_id="L-1", first_message_at=at(9, day=DAY - days(14), tz=NY)), rec, flags,
                    lim, at(12, tz=NY), None)
    assert (d.verdict, d.rule) == (Verdict.ALLOW, "US.bureau_allowed")


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_no_negative_report_while_disputed_bankrupt_or_deceased(pack: PackCode) -> None:
    lim, rec, warned = narrow(pack), ContactRecord(), at(12, day=DAY - days(30), tz=ZONE[pack])
    now = noon(pack)
    blocked(bureau_gate(pack, loan(pack, disputed=True), rec, BorrowerFlags(), lim, now, warned), f"{pack}.dispute")
    blocked(bureau_gate(pack, loan(pack), rec, BorrowerFlags(bankruptcy="BK"), lim, now, warned), f"{pack}.bankruptcy")
    blocked(bureau_gate(pack, loan(pack), rec, BorrowerFlags(deceased="D"), lim, now, warned), f"{pack}.deceased")
    # cease_contact and a breathing space do not stop reporting (contract: reporting goes on).
    flags, _ = BorrowerFlags(cease_contact="stop").with_breathing_space(DAY, 60)
    d = bureau_gate(pack, loan(pack), rec, flags, lim, now, warned)
    assert (d.verdict, d.rule) == (Verdict.ALLOW, f"{pack}.bureau_allowed")


# ----------------------------------------------------------------------------- escalation gate


@pytest.mark.parametrize("pack", PACKS_ALL)
@pytest.mark.parametrize("stage", [Stage.AGENCY, Stage.LEGAL])
def test_escalation_waits_seven_days_after_its_warning(pack: PackCode, stage: Stage) -> None:
    lim, ln, flags, tz = narrow(pack), loan(pack), BorrowerFlags(), ZONE[pack]
    rule = f"{pack}.{stage.value}_warning"
    d = escalation_gate(pack, stage, ln, flags, lim, noon(pack), None)
    blocked(d, rule)
    assert f"{stage.value}_warning" in d.explanation
    deferred(escalation_gate(pack, stage, ln, flags, lim, noon(pack), at(18, day=DAY - days(3), tz=tz)), rule,
             at(18, day=DAY + days(4), tz=tz))
    d = escalation_gate(pack, stage.value, ln, flags, lim, noon(pack), at(12, day=DAY - days(7), tz=tz))
    assert (d.verdict, d.rule) == (Verdict.ALLOW, f"{pack}.escalation_allowed")


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_escalation_stops_for_the_person_and_the_dispute(pack: PackCode) -> None:
    lim, tz, warned = narrow(pack), ZONE[pack], at(12, day=DAY - days(20), tz=ZONE[pack])
    now = noon(pack)
    space, _ = BorrowerFlags().with_breathing_space(DAY - days(5), 60)
    for stage in (Stage.AGENCY, Stage.LEGAL):
        deferred(escalation_gate(pack, stage, loan(pack), space, lim, now, warned), f"{pack}.breathing_space",
                 at(0, day=DAY + days(55), tz=tz))
        blocked(escalation_gate(pack, stage, loan(pack, disputed=True), BorrowerFlags(), lim, now, warned),
                f"{pack}.dispute")
        blocked(escalation_gate(pack, stage, loan(pack), BorrowerFlags(bankruptcy="B"), lim, now, warned),
                f"{pack}.bankruptcy")
        blocked(escalation_gate(pack, stage, loan(pack), BorrowerFlags(deceased="D"), lim, now, warned),
                f"{pack}.deceased")
    # cease_contact refuses an agency placement but lets the legal referral go on.
    ceased = BorrowerFlags(cease_contact="stop")
    blocked(escalation_gate(pack, Stage.AGENCY, loan(pack), ceased, lim, now, warned), f"{pack}.cease_contact")
    d = escalation_gate(pack, Stage.LEGAL, loan(pack), ceased, lim, now, warned)
    assert (d.verdict, d.rule) == (Verdict.ALLOW, f"{pack}.escalation_allowed")


def test_uk_hardship_holds_escalation_thirty_days() -> None:
    lim, warned = narrow("UK"), at(12, day=DAY - days(20), tz=LDN)
    until = hardship_hold_until(DAY - days(10), lim)
    assert until == DAY + days(20)
    held = LoanContext(loan_id="L-1", hardship_until=until)
    for stage in (Stage.AGENCY, Stage.LEGAL):
        deferred(escalation_gate("UK", stage, held, BorrowerFlags(), lim, at(12, tz=LDN), warned), "UK.hardship",
                 at(0, day=DAY + days(20), tz=LDN))
        d = escalation_gate("UK", stage, held, BorrowerFlags(), lim, at(0, day=DAY + days(20), tz=LDN), warned)
        assert d.verdict == Verdict.ALLOW
    # Contact goes on: the borrower is offered a plan.
    allowed(ask("UK", attempt(), at(12, tz=LDN), ln=held), "UK")
    # The hold is the UK pack's: CN and US have none.
    assert hardship_hold_until(DAY, narrow("CN")) is None
    d = escalation_gate("CN", Stage.AGENCY, held, BorrowerFlags(), narrow("CN"), at(12), at(12, day=DAY - days(20)))
    assert d.verdict == Verdict.ALLOW


def test_escalation_gate_covers_agency_and_legal_only() -> None:
    with pytest.raises(ValueError, match="agency or legal"):
        escalation_gate("CN", "call", loan("CN"), BorrowerFlags(), narrow("CN"), at(12), None)


# ----------------------------------------------------------------------------- inputs refused


def test_decide_refuses_a_naive_now_and_a_foreign_loan() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(attempt(), loan(), ContactRecord(), BorrowerFlags(), narrow("CN"), "CN", datetime(2026, 11, 18, 12))
    with pytest.raises(ValueError, match="loan_id"):
        decide(attempt(loan_id="L-9"), loan(), ContactRecord(), BorrowerFlags(), narrow("CN"), "CN", at(12))
    with pytest.raises(ValueError, match="rule_pack"):
        decide(attempt(), loan(), ContactRecord(), BorrowerFlags(), narrow("CN"), "XX", at(12))


def test_attempts_must_make_sense() -> None:
    with pytest.raises(ValueError, match="visit needs actor agent or agency"):
        ContactAttempt(key="k", loan_id="L", channel="visit", actor="system")
    with pytest.raises(ValueError, match="notice must be one of"):
        ContactAttempt(key="k", loan_id="L", channel="sms", actor="system", purpose="warning")
    with pytest.raises(ValueError, match="extra"):
        ContactAttempt.model_validate({"key": "k", "loan_id": "L", "channel": "sms", "actor": "system", "x": 1})


# ----------------------------------------------------------------------------- flags and record


def test_flags_signals_are_idempotent() -> None:
    f = BorrowerFlags()
    f1, c1 = f.apply("opt_out", {"channel": "sms"})
    f2, c2 = f1.apply("opt_out", {"channel": "sms"})
    assert (c1, c2) == (True, False) and f2 == f1 and f1.opted_out == [ContactChannel.SMS]
    f3, c3 = f2.apply("opt_in", {"channel": "sms"})
    assert c3 and f3.opted_out == [] and f3.apply("opt_in", {"channel": "sms"}) == (f3, False)
    for signal, body, field in [("cease_contact", {"reason": "letter"}, "cease_contact"),
                                ("bankruptcy", {"reference": "BK-1"}, "bankruptcy"),
                                ("deceased", {"reference": "DC-1"}, "deceased")]:
        g, changed = f.apply(signal, body)
        assert changed and getattr(g, field) == list(body.values())[0]
        assert g.apply(signal, body) == (g, False)
        assert g.apply(signal, {list(body)[0]: "another"}) == (g, False)  # the first reason stands
        h, cleared = g.without(field)
        assert cleared and getattr(h, field) is None and h.without(field) == (h, False)
    g, changed = f.apply("breathing_space", {"start": "2026-11-01"})
    assert changed and g.breathing_space is not None and g.breathing_space.end == date(2026, 12, 31)
    assert g.apply("breathing_space", {"start": "2026-11-01", "days": 60}) == (g, False)
    h, changed = g.apply("breathing_space", {"start": "2026-11-01", "days": 90})
    assert changed and h.breathing_space is not None and h.breathing_space.end == date(2027, 1, 30)


@pytest.mark.parametrize(("signal", "body", "message"), [
    ("opt_out", {"channel": "visit"}, "channel must be one of sms, email, voice, call"),
    ("opt_out", {}, "opt_out.channel is required"),
    ("opt_in", {"channel": "fax"}, "channel must be one of"),
    ("cease_contact", {"reason": "  "}, "reason must be a non-empty text"),
    ("breathing_space", {"start": "01/11/2026"}, "breathing_space.start must be a date"),
    ("breathing_space", {"start": "2026-11-01", "days": 0}, "breathing_space.days must be a whole number"),
    ("breathing_space", {"start": "2026-11-01", "days": "60"}, "breathing_space.days must be a whole number"),
    ("bankruptcy", {"reference": "B", "court": "x"}, "bankruptcy.court is not a field"),
    ("hibernate", {}, "unknown borrower signal"),
])
def test_flags_refuse_bad_bodies_naming_the_field(signal: str, body: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BorrowerFlags().apply(signal, body)


def test_record_is_idempotent_by_key_and_prunes_what_no_rule_needs() -> None:
    rec = ContactRecord()
    c = past(at(10), key="K")
    rec, changed = rec.add(c)
    assert changed and rec.add(c) == (rec, False)
    old = past(at(10, day=DAY - days(9)), key="old")
    week = past(at(10, day=DAY - days(7)), key="week")
    rec, _ = rec.add(old)
    rec, _ = rec.add(week)
    pruned, changed = rec.prune(at(12))
    assert changed and [x.key for x in pruned.contacts] == ["K", "week"]
    assert pruned.prune(at(12)) == (pruned, False)
    assert rec.contacts_today(at(12)) == 1


def test_policy_channels_map_to_contact_channels() -> None:
    assert [contact_channel(c) for c in Channel] == [ContactChannel.SMS, ContactChannel.EMAIL, ContactChannel.VOICE,
                                                     ContactChannel.CALL, ContactChannel.VISIT, None, None]
    with pytest.raises(ValueError, match="not a policy channel"):
        contact_channel("fax")


# ----------------------------------------------------------------------------- narrowing


def test_the_default_policy_narrows_cn() -> None:
    lim = Policy().contact.limits
    assert (lim.window_start, lim.window_end, lim.max_contacts_per_day) == (time(9), time(20), 3)
    assert lim.credit_report_warning_days == 7 and lim.escalation_warning_days == 7
    assert narrow("CN") == BOUNDS[PackCode.CN]


@pytest.mark.parametrize(("contact", "message"), [
    ({"rule_pack": "US", "window_start": "07:00:00"},
     "contact.window_start 07:00 would widen US.window: the earliest Regulation F"),
    ({"window_end": "22:30:00"}, "contact.window_end 22:30 would widen CN.window: the latest"),
    ({"rule_pack": "UK", "window_end": "21:30:00"}, "contact.window_end 21:30 would widen UK.window"),
    ({"max_direct_contacts_per_day": 4}, "contact.max_direct_contacts_per_day 4 would widen CN.daily_limit"),
    ({"rule_pack": "US", "max_calls_per_7_days": 8}, "contact.max_calls_per_7_days 8 would widen US.seven_in_seven"),
    ({"rule_pack": "US", "call_cooloff_days": 6}, "contact.call_cooloff_days 6 would widen US.after_conversation"),
    ({"rule_pack": "US", "bureau_wait_days": 10}, "contact.bureau_wait_days 10 would widen US.passive_reporting"),
    ({"rule_pack": "US", "validation_period_days": 20}, "contact.validation_period_days 20 would widen"),
    ({"escalation_warning_days": 5}, "contact.escalation_warning_days 5 would widen CN.agency_warning/legal_warning"),
    ({"credit_report_warning_days": 3}, "contact.credit_report_warning_days 3 would widen CN.credit_report_warning"),
    ({"rule_pack": "UK", "hardship_hold_days": 14}, "contact.hardship_hold_days 14 would widen UK.hardship"),
    ({"breathing_space_days": 30}, "contact.breathing_space_days 30 would widen CN.breathing_space"),
    ({"rule_pack": "CN", "hardship_hold_days": 40}, "contact.hardship_hold_days 40 has no meaning in the CN pack"),
    ({"rule_pack": "UK", "call_cooloff_days": 10}, "contact.call_cooloff_days 10 has no meaning in the UK pack"),
    ({"rule_pack": "FR"}, "rule_pack"),
])
def test_a_policy_that_widens_a_pack_is_refused_naming_the_field(contact: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Policy.model_validate({"contact": contact})


def test_a_policy_may_narrow_every_limit() -> None:
    rules = ContactRules(rule_pack="US", window_start=time(9, 30), window_end=time(18), max_direct_contacts_per_day=2,
                         max_calls_per_7_days=3, call_cooloff_days=10, escalation_warning_days=14,
                         bureau_wait_days=30, validation_period_days=45, breathing_space_days=90)
    lim = rules.limits
    assert (lim.window_start, lim.window_end, lim.max_contacts_per_day, lim.max_calls_per_7_days) == (
        time(9, 30), time(18), 2, 3)
    assert (lim.call_cooloff_days, lim.escalation_warning_days, lim.bureau_wait_days) == (10, 14, 30)
    assert (lim.validation_period_days, lim.breathing_space_days) == (45, 90)
    # Narrowed limits drive the rules: three calls a week, ten days after a conversation.
    rec = record(*calls(-2, -1, 0))
    assert ask("US", attempt("call"), at(12, tz=NY), rec=rec, limits=lim).rule == "US.seven_in_seven"


def test_narrow_names_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match="contact.speed is not a contact limit"):
        narrow("CN", {"speed": 1})
    with pytest.raises(ValueError, match="contact.window_end 09:00 must be after contact.window_start 10:00"):
        narrow("CN", {"window_start": time(10), "window_end": time(9)})
    with pytest.raises(ValueError, match="contact.max_contacts_per_day"):
        narrow("CN", {"max_contacts_per_day": 0})
    assert narrow("UK", {"window_start": "09:15"}).window_start == time(9, 15)


# ----------------------------------------------------------------------------- the packs themselves


@pytest.mark.parametrize("pack", PACKS_ALL)
def test_every_rule_names_its_pack_and_cites_its_source(pack: PackCode) -> None:
    p = PACKS[pack]
    for rule in (*p.contact_rules, *p.bureau_rules, *p.escalation_rules):
        doc = rule.__doc__ or ""
        assert doc.startswith(f"{pack.value}.") and "Source:" in doc and len(doc) > 40, (rule, doc)
    names = p.rule_names()
    assert len(names) == len(set(names)) and all(n.startswith(f"{pack.value}.") for n in names)
    for shared in ("deceased", "bankruptcy", "breathing_space", "cease_contact", "opt_out", "dispute", "window",
                   "daily_limit", "agency_warning", "legal_warning"):
        assert f"{pack.value}.{shared}" in names
    assert p.bound == BOUNDS[pack]


def test_pack_specific_rules() -> None:
    assert {"CN.credit_report_warning"} <= set(PACKS[PackCode.CN].rule_names())
    assert {"US.seven_in_seven", "US.after_conversation", "US.validation_first", "US.passive_reporting"} <= set(
        PACKS[PackCode.US].rule_names())
    assert "UK.hardship" in PACKS[PackCode.UK].rule_names()
    assert not any("seven_in_seven" in n for n in PACKS[PackCode.CN].rule_names() + PACKS[PackCode.UK].rule_names())


def test_actor_does_not_change_the_caps() -> None:
    # An agency's visit counts against the CN cap exactly like our own SMS.
    rec = record(past(at(9)), past(at(10)), past(at(11), "visit", actor="agency"))
    for actor in Actor:
        channel = "visit" if actor in (Actor.AGENT, Actor.AGENCY) else "sms"
        assert ask("CN", attempt(channel, actor=actor.value), at(15), rec=rec).rule == "CN.daily_limit"


def test_the_compliance_doc_names_every_rule_and_every_test_it_cites() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "compliance.md").read_text(encoding="utf-8")
    for p in PACKS.values():
        for name in p.rule_names():
            if not name.endswith("allowed"):
                assert f"`{name}`" in doc, name
    tests = (root / "tests" / "test_domain_rules.py").read_text(encoding="utf-8") + (
        root / "tests" / "test_domain_rules_props.py").read_text(encoding="utf-8")
    # `tests/<file>.py::test_name` names a test in that file; a bare `::test_name` one of the rules' own
    for path, cited in set(re.findall(r"(tests/\w+\.py)?::(test_\w+)", doc)):
        source = (root / path).read_text(encoding="utf-8") if path else tests
        assert f"def {cited}(" in source, (path, cited)
