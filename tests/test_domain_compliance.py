"""The compliance door: contact window, daily limit, opt-out, dispute; the decision names its rule."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.compliance import ContactHistory, ContactRequest, PastContact, Verdict, decide
from domain.policy import Channel, ContactRules

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
RULES = ContactRules()
DAY = date(2026, 11, 20)
FAST = settings(max_examples=200, deadline=None)

DIRECT = [Channel.SMS, Channel.EMAIL, Channel.VOICE]
TASKS = [Channel.CALL_TASK, Channel.VISIT_TASK]
NOT_CONTACT = [Channel.AGENCY, Channel.LEGAL]


def at(h: int, m: int = 0, day: date = DAY, tz: ZoneInfo = SH) -> datetime:
    return datetime.combine(day, time(h, m), tzinfo=tz)


def req(channel: Channel, purpose: str = "collection") -> ContactRequest:
    return ContactRequest(loan_id="L-1", borrower_id="B-1", channel=channel, purpose=purpose)  # type: ignore[arg-type]


def history(n: int = 0, day: date = DAY, disputed: bool = False, tz: ZoneInfo = SH) -> ContactHistory:
    contacts = [PastContact(at=at(10, i, day, tz), channel=Channel.SMS, loan_id=f"L-{i}") for i in range(n)]
    return ContactHistory(contacts=contacts, disputed=disputed)


# ----------------------------------------------------------------------------- window


@pytest.mark.parametrize("channel", DIRECT + TASKS)
def test_inside_the_window_allowed(channel: Channel) -> None:
    for h, m in [(9, 0), (12, 30), (19, 59)]:
        d = decide(req(channel), history(), RULES, at(h, m))
        assert d.verdict == Verdict.ALLOW and d.rule == "CN.window" and d.until is None and d.explanation


@pytest.mark.parametrize("channel", DIRECT + TASKS)
def test_before_nine_deferred_to_nine_the_same_day(channel: Channel) -> None:
    for h, m in [(0, 0), (6, 15), (8, 59)]:
        d = decide(req(channel), history(), RULES, at(h, m))
        assert d.verdict == Verdict.DEFER and d.rule == "CN.window"
        assert d.until == at(9) and "09:00" in d.explanation


@pytest.mark.parametrize("channel", DIRECT + TASKS)
def test_from_eight_pm_deferred_to_nine_the_next_day(channel: Channel) -> None:
    for h, m in [(20, 0), (22, 30), (23, 59)]:
        d = decide(req(channel), history(), RULES, at(h, m))
        assert d.verdict == Verdict.DEFER and d.rule == "CN.window"
        assert d.until == at(9, day=DAY + timedelta(days=1)) and "20:00" in d.explanation


@FAST
@given(minute=st.integers(min_value=0, max_value=24 * 60 - 1), channel=st.sampled_from(DIRECT + TASKS),
       start=st.integers(min_value=8, max_value=20), length=st.integers(min_value=1, max_value=13))
def test_window_decision_for_any_minute(minute: int, channel: Channel, start: int, length: int) -> None:
    # Any window a US policy may set: inside Regulation F's 08:00-21:00 (a wider one is refused).
    length = min(length, 21 - start)
    rules = ContactRules(rule_pack="US", window_start=time(start), window_end=time(start + length))
    now = at(minute // 60, minute % 60)
    d = decide(req(channel), history(), rules, now)
    assert d.rule == "US.window"
    if start <= minute // 60 < start + length:
        assert d.verdict == Verdict.ALLOW
    else:
        assert d.verdict == Verdict.DEFER and d.until is not None
        assert d.until > now and d.until.time() == time(start)
        assert d.until - now <= timedelta(hours=24)
        # The next window start: nothing in between is inside the window.
        assert d.until.date() == (DAY if minute // 60 < start else DAY + timedelta(days=1))


def test_next_window_across_dst_keeps_local_nine() -> None:
    # New York springs forward on 2025-03-09: deferred at 21:00 EST, the window opens at 09:00 EDT.
    d = decide(req(Channel.SMS), history(tz=NY), RULES, at(21, day=date(2025, 3, 8), tz=NY))
    assert d.verdict == Verdict.DEFER and d.until is not None
    assert d.until.isoformat() == "2025-03-09T09:00:00-04:00"


# ----------------------------------------------------------------------------- daily limit


@FAST
@given(n=st.integers(min_value=0, max_value=6), limit=st.integers(min_value=1, max_value=3),
       channel=st.sampled_from(DIRECT))
def test_daily_limit_on_direct_contacts(n: int, limit: int, channel: Channel) -> None:
    rules = ContactRules(max_direct_contacts_per_day=limit)
    d = decide(req(channel), history(n), rules, at(15))
    if n < limit:
        assert d.verdict == Verdict.ALLOW
    else:
        assert d.verdict == Verdict.DEFER and d.rule == "CN.daily_limit"
        assert d.until == at(9, day=DAY + timedelta(days=1)) and str(limit) in d.explanation


def test_daily_limit_counts_the_local_day_only_and_not_agent_work() -> None:
    # Three contacts yesterday do not count today.
    assert decide(req(Channel.SMS), history(3, day=DAY - timedelta(days=1)), RULES, at(10)).verdict == Verdict.ALLOW
    # 23:30 UTC on the day before is 07:30 in Shanghai today: it counts.
    utc_late = datetime.combine(DAY - timedelta(days=1), time(23, 30), tzinfo=ZoneInfo("UTC"))
    h = ContactHistory(contacts=[PastContact(at=utc_late + timedelta(minutes=i), channel=Channel.EMAIL, loan_id="X")
                                 for i in range(3)])
    assert decide(req(Channel.SMS), h, RULES, at(10)).rule == "CN.daily_limit"
    # A call task is agent work, not a direct message: no daily limit on it.
    assert decide(req(Channel.CALL_TASK), history(10), RULES, at(10)).verdict == Verdict.ALLOW


# ----------------------------------------------------------------------------- opt-out and dispute


@pytest.mark.parametrize("channel", list(Channel))
def test_opt_out_blocks_the_channel(channel: Channel) -> None:
    rules = ContactRules(opted_out_channels=[channel])
    for purpose in ("collection", "plan_reminder", "agent_task"):
        d = decide(req(channel, purpose), history(), rules, at(12))
        assert d.verdict == Verdict.BLOCK and d.rule == "CN.opt_out" and channel.value in d.explanation
    other = Channel.EMAIL if channel != Channel.EMAIL else Channel.SMS
    assert decide(req(other), history(), rules, at(12)).verdict == Verdict.ALLOW


@pytest.mark.parametrize("channel", list(Channel))
def test_dispute_blocks_collection_but_not_plan_reminders(channel: Channel) -> None:
    d = decide(req(channel), history(disputed=True), RULES, at(12))
    assert d.verdict == Verdict.BLOCK and d.rule == "CN.dispute" and "disputed" in d.explanation
    if channel.is_direct_contact:
        assert decide(req(channel, "plan_reminder"), history(disputed=True), RULES, at(12)).verdict == Verdict.ALLOW


@pytest.mark.parametrize("channel", NOT_CONTACT)
def test_non_contact_channels_allowed_any_time(channel: Channel) -> None:
    for h in (3, 12, 22):
        d = decide(req(channel), history(20), RULES, at(h))
        assert d.verdict == Verdict.ALLOW and d.rule == "CN.not_contact" and channel.value in d.explanation


@FAST
@given(channel=st.sampled_from(list(Channel)), hour=st.integers(min_value=0, max_value=23),
       n=st.integers(min_value=0, max_value=5), disputed=st.booleans(),
       opted=st.lists(st.sampled_from(list(Channel)), max_size=3, unique=True),
       purpose=st.sampled_from(["collection", "plan_reminder", "agent_task"]))
def test_every_decision_names_its_rule_and_defers_into_the_future(channel: Channel, hour: int, n: int, disputed: bool,
                                                                 opted: list[Channel], purpose: str) -> None:
    rules = ContactRules(rule_pack="UK", opted_out_channels=opted)
    now = at(hour)
    d = decide(req(channel, purpose), history(n, disputed=disputed), rules, now)
    assert d.rule.startswith("UK.") and d.explanation
    assert d.rule in {"UK.opt_out", "UK.dispute", "UK.not_contact", "UK.window", "UK.daily_limit"}
    assert (d.until is not None) == (d.verdict == Verdict.DEFER)
    if d.until is not None:
        assert d.until > now
    # Precedence: opt-out, then dispute.
    if channel in opted:
        assert d.rule == "UK.opt_out"
    elif disputed and purpose != "plan_reminder":
        assert d.rule == "UK.dispute"
    elif channel in NOT_CONTACT:
        assert d.verdict == Verdict.ALLOW
