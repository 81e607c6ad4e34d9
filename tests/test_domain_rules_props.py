"""Properties of every rule pack (hypothesis): decisions are deterministic; a stream of attempts whose
allowed ones are recorded never breaks a cap, per person or per loan, over any window; a deferral is
always to an instant strictly ahead and inside the window; narrowing never widens; DST days, skipped
and repeated wall times are handled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.policy import Policy
from domain.rules import (
    BOUNDS,
    LIMIT_FIELDS,
    Actor,
    BorrowerFlags,
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactRecord,
    Limits,
    LoanContext,
    PackCode,
    PastContact,
    Purpose,
    Verdict,
    bureau_gate,
    decide,
    escalation_gate,
    narrow,
)
from domain.rules.clock import in_window

FAST = settings(max_examples=150)
STREAMS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Streams of up to 120 decisions per example: no per-example deadline on a shared, busy machine."""
ZONES = [ZoneInfo(z) for z in ("Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe",
                               "Pacific/Chatham", "Asia/Kolkata")]
DST_DAYS = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 3, 29), date(2026, 10, 25), date(2026, 4, 5),
            date(2026, 10, 4), date(2026, 7, 15)]
"""New York and London spring forward / fall back, Lord Howe's half-hour shifts, and a plain summer day."""
LOANS = ["L-1", "L-2"]

packs = st.sampled_from(list(PackCode))
zones = st.sampled_from(ZONES)


@st.composite
def limits_for(draw: st.DrawFn, pack: PackCode) -> Limits:
    """Any limits a policy may narrow `pack` to."""
    b = BOUNDS[pack]
    start = (datetime.combine(DST_DAYS[0], b.window_start) + timedelta(minutes=30 * draw(st.integers(0, 8)))).time()
    end = (datetime.combine(DST_DAYS[0], b.window_end) - timedelta(minutes=30 * draw(st.integers(0, 8)))).time()
    over: dict[str, Any] = {"window_start": start, "window_end": end}
    cap = b.max_contacts_per_day
    over["max_contacts_per_day"] = draw(st.integers(1, cap) if cap else st.none() | st.integers(1, 6))
    if b.max_calls_per_7_days:
        over["max_calls_per_7_days"] = draw(st.integers(1, b.max_calls_per_7_days))
        over["call_cooloff_days"] = draw(st.integers(b.call_cooloff_days or 1, 10))
    return narrow(pack, over)


@st.composite
def instants(draw: st.DrawFn, zone: ZoneInfo) -> datetime:
    """A local instant on (or next to) a DST day, any minute, either fold: skipped and repeated wall
    times included."""
    day = draw(st.sampled_from(DST_DAYS)) + timedelta(days=draw(st.integers(-1, 1)))
    minute = draw(st.integers(0, 24 * 60 - 1))
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone).replace(fold=draw(st.integers(0, 1)))


steps = st.lists(st.tuples(st.integers(1, 600), st.sampled_from(list(ContactChannel)), st.sampled_from(list(Actor)),
                           st.sampled_from(LOANS), st.sampled_from([Purpose.COLLECTION, Purpose.PLAN_REMINDER,
                                                                    Purpose.CONFIRMATION]), st.booleans()),
                 min_size=1, max_size=80)


def make_attempt(i: int, channel: ContactChannel, actor: Actor, loan_id: str, purpose: Purpose) -> ContactAttempt:
    if channel == ContactChannel.VISIT and actor not in (Actor.AGENT, Actor.AGENCY):
        actor = Actor.AGENT
    return ContactAttempt(key=f"A{i}", loan_id=loan_id, channel=channel, actor=actor, purpose=purpose)


def ready_loan(loan_id: str) -> LoanContext:
    sent = datetime(2026, 1, 2, 12, tzinfo=UTC)
    return LoanContext(loan_id=loan_id, validation_sent_at=sent, first_message_at=sent)


def check_deferral(d: ContactDecision, now: datetime, limits: Limits) -> None:
    if d.verdict != Verdict.DEFER:
        assert d.until is None
        return
    assert d.until is not None
    assert d.until.astimezone(UTC) > now.astimezone(UTC), (d, now)
    assert in_window(d.until, limits), (d, limits)
    assert d.until.tzinfo is now.tzinfo or d.until.utcoffset() == d.until.astimezone(now.tzinfo).utcoffset()


# ----------------------------------------------------------------------------- determinism


@STREAMS
@given(data=st.data(), pack=packs, zone=zones, stream=steps)
def test_decisions_are_deterministic(data: st.DataObject, pack: PackCode, zone: ZoneInfo, stream: list) -> None:
    limits = data.draw(limits_for(pack))
    now = data.draw(instants(zone))
    rec = ContactRecord(contacts=[
        PastContact(at=now - timedelta(minutes=17 * i), key=f"P{i}", loan_id=loan, channel=ch,
                    actor=Actor.AGENT if ch == ContactChannel.VISIT else act, conversation=talk)
        for i, (_, ch, act, loan, _, talk) in enumerate(stream)])
    flags = BorrowerFlags(opted_out=data.draw(st.lists(st.sampled_from(["sms", "email", "voice", "call"]),
                                                       max_size=2)))
    a = make_attempt(0, stream[0][1], stream[0][2], stream[0][3], stream[0][4])
    ln = ready_loan(a.loan_id).model_copy(update={"disputed": data.draw(st.booleans())})
    first = decide(a, ln, rec, flags, limits, pack, now)
    again = decide(a.model_copy(deep=True), ln.model_copy(deep=True), rec.model_copy(deep=True),
                   flags.model_copy(deep=True), limits.model_copy(deep=True), pack.value, now)
    assert first == again
    assert first.rule.startswith(f"{pack.value}.") and first.explanation and first.citation
    check_deferral(first, now, limits)


# ----------------------------------------------------------------------------- the caps hold


@STREAMS
@given(data=st.data(), pack=packs, zone=zones, stream=steps)
def test_an_allowed_contact_never_breaks_a_cap(data: st.DataObject, pack: PackCode, zone: ZoneInfo,
                                              stream: list) -> None:
    check_caps(pack, zone, data.draw(limits_for(pack)), data.draw(instants(zone)), stream, minutes_per_gap=7)


call_steps = st.lists(st.tuples(st.integers(1, 600), st.sampled_from([ContactChannel.CALL, ContactChannel.VOICE]),
                                st.sampled_from([Actor.AGENT, Actor.BOT, Actor.AGENCY]), st.sampled_from(LOANS),
                                st.just(Purpose.COLLECTION), st.integers(0, 11).map(lambda x: x == 0)),
                      min_size=10, max_size=120)
"""Conversations are rare (1 in 12), so the 7-in-7 cap is reached between them."""


@STREAMS
@given(data=st.data(), zone=zones, stream=call_steps)
def test_us_calls_never_break_seven_in_seven_nor_the_cool_off(data: st.DataObject, zone: ZoneInfo,
                                                               stream: list) -> None:
    # Dense telephone calls only, a few hours apart: the US call rules are what stops them.
    check_caps(PackCode.US, zone, data.draw(limits_for(PackCode.US)), data.draw(instants(zone)), stream,
               minutes_per_gap=2)


def check_caps(pack: PackCode, zone: ZoneInfo, limits: Limits, now: datetime, stream: list,
               minutes_per_gap: int) -> None:
    rec, flags = ContactRecord(), BorrowerFlags()
    allowed: list[PastContact] = []
    for i, (gap, channel, actor, loan_id, purpose, talk) in enumerate(stream):
        now = (now.astimezone(UTC) + timedelta(minutes=gap * minutes_per_gap)).astimezone(zone)
        a = make_attempt(i, channel, actor, loan_id, purpose)
        d = decide(a, ready_loan(loan_id), rec, flags, limits, pack, now)
        check_deferral(d, now, limits)
        if d.verdict == Verdict.ALLOW:
            contact = PastContact.of(a, now, conversation=talk and channel.is_telephone_call)
            rec, _ = rec.add(contact)
            allowed.append(contact)
        rec, _ = rec.prune(now, limits.retention_days)  # what the borrower's entity does to stay bounded

    # Every allowed contact was inside the window.
    assert all(in_window(c.at.astimezone(zone), limits) for c in allowed)
    # Per person, per local day.
    if limits.max_contacts_per_day is not None:
        per_day = Counter(c.at.astimezone(zone).date() for c in allowed)
        assert max(per_day.values(), default=0) <= limits.max_contacts_per_day
    # Per loan, telephone calls in any 7 consecutive local days; and none in the cool-off after a talk.
    calls: dict[str, list[PastContact]] = defaultdict(list)
    for c in allowed:
        if c.channel.is_telephone_call:
            calls[c.loan_id].append(c)
    for loan_calls in calls.values():
        dates = [c.at.astimezone(zone).date() for c in loan_calls]
        if limits.max_calls_per_7_days is not None:
            for first in set(dates):
                assert sum(first <= d < first + timedelta(days=7) for d in dates) <= limits.max_calls_per_7_days
        if limits.call_cooloff_days is not None:
            for talk in (c for c in loan_calls if c.conversation):
                day = talk.at.astimezone(zone).date()
                later = [c for c in loan_calls if c.at > talk.at]
                assert all(c.at.astimezone(zone).date() >= day + timedelta(days=limits.call_cooloff_days)
                           for c in later), (talk, later)


@FAST
@given(data=st.data(), pack=packs, zone=zones)
def test_a_deferral_is_always_ahead_and_inside_the_window(data: st.DataObject, pack: PackCode, zone: ZoneInfo) -> None:
    limits = data.draw(limits_for(pack))
    now = data.draw(instants(zone))
    n = data.draw(st.integers(0, 12))
    rec = ContactRecord(contacts=[
        PastContact(at=now - timedelta(hours=data.draw(st.integers(0, 24 * 8))), key=f"P{i}",
                    loan_id=data.draw(st.sampled_from(LOANS)), channel=data.draw(st.sampled_from(["call", "voice",
                                                                                                  "sms"])),
                    actor=Actor.AGENT, conversation=data.draw(st.booleans())) for i in range(n)])
    channel = data.draw(st.sampled_from(list(ContactChannel)))
    a = make_attempt(0, channel, Actor.AGENT, "L-1", Purpose.COLLECTION)
    d = decide(a, ready_loan("L-1"), rec, BorrowerFlags(), limits, pack, now)
    check_deferral(d, now, limits)
    # Asking again at the deferral's instant never defers back to the same or an earlier instant.
    if d.until is not None:
        d2 = decide(a, ready_loan("L-1"), rec, BorrowerFlags(), limits, pack, d.until)
        check_deferral(d2, d.until, limits)


@FAST
@given(data=st.data(), pack=packs, zone=zones)
def test_the_gates_defer_ahead_and_allow_only_after_the_wait(data: st.DataObject, pack: PackCode,
                                                            zone: ZoneInfo) -> None:
    limits = data.draw(limits_for(pack))
    now = data.draw(instants(zone))
    warned = data.draw(st.none() | st.integers(0, 24 * 20).map(lambda h: now - timedelta(hours=h)))
    ln = ready_loan("L-1").model_copy(update={"first_message_at": warned})
    report = bureau_gate(pack, ln, ContactRecord(), BorrowerFlags(), limits, now, warned)
    for stage in ("agency", "legal"):
        esc = escalation_gate(pack, stage, ln, BorrowerFlags(), limits, now, warned)
        for d in (report, esc):
            if d.until is not None:
                assert d.until.astimezone(UTC) > now.astimezone(UTC)
        if esc.verdict == Verdict.ALLOW:
            assert warned is not None
            assert now.astimezone(UTC) - warned.astimezone(UTC) >= timedelta(days=limits.escalation_warning_days)
    wait = limits.credit_report_warning_days or limits.bureau_wait_days
    if report.verdict == Verdict.ALLOW and wait is not None:
        assert warned is not None and now.astimezone(UTC) - warned.astimezone(UTC) >= timedelta(days=wait)


# ----------------------------------------------------------------------------- narrowing


overrides = st.dictionaries(
    st.sampled_from(LIMIT_FIELDS),
    st.none() | st.integers(1, 100) | st.integers(0, 47).map(lambda k: time(k // 2, 30 * (k % 2))),
    max_size=6)


def within(lim: Limits, bound: Limits) -> None:
    assert lim.window_start >= bound.window_start and lim.window_end <= bound.window_end
    assert lim.window_start < lim.window_end
    for f in ("max_contacts_per_day", "max_calls_per_7_days"):
        if getattr(bound, f) is not None:
            assert getattr(lim, f) is not None and getattr(lim, f) <= getattr(bound, f)
    for f in ("call_cooloff_days", "escalation_warning_days", "credit_report_warning_days", "bureau_wait_days",
              "validation_period_days", "hardship_hold_days", "breathing_space_days"):
        if getattr(bound, f) is None:
            assert getattr(lim, f) is None  # a wait the pack has no rule for is refused, never silently kept
        else:
            assert getattr(lim, f) >= getattr(bound, f)


@settings(max_examples=400)
@given(pack=packs, over=overrides)
def test_narrowing_never_widens(pack: PackCode, over: dict[str, Any]) -> None:
    try:
        lim = narrow(pack, over)
    except ValueError as e:
        assert str(e).startswith("contact.")
        return
    within(lim, BOUNDS[pack])
    for f, v in over.items():
        if v is not None:
            assert getattr(lim, f) == v


@settings(max_examples=200)
@given(pack=packs, over=overrides)
def test_a_policy_either_narrows_or_is_refused(pack: PackCode, over: dict[str, Any]) -> None:
    contact = {("max_direct_contacts_per_day" if k == "max_contacts_per_day" else k): v for k, v in over.items()
               if v is not None}
    try:
        policy = Policy.model_validate({"contact": {"rule_pack": pack.value, **contact}})
    except ValueError as e:
        assert "contact" in str(e)
        return
    within(policy.contact.limits, BOUNDS[pack])


# ----------------------------------------------------------------------------- DST


@FAST
@given(data=st.data(), pack=packs, zone=st.sampled_from(ZONES[1:4]))
def test_skipped_and_repeated_wall_times_do_not_crash(data: st.DataObject, pack: PackCode, zone: ZoneInfo) -> None:
    day = data.draw(st.sampled_from(DST_DAYS[:6]))
    now = datetime.combine(day, time(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 59))),
                           tzinfo=zone).replace(fold=data.draw(st.integers(0, 1)))
    a = make_attempt(0, data.draw(st.sampled_from(list(ContactChannel))), Actor.AGENT, "L-1", Purpose.COLLECTION)
    rec = ContactRecord(contacts=[PastContact(at=now - timedelta(hours=h), key=f"P{h}", loan_id="L-1",
                                              channel=ContactChannel.CALL, actor=Actor.AGENT) for h in range(0, 30, 5)])
    d = decide(a, ready_loan("L-1"), rec, BorrowerFlags(), narrow(pack), pack, now)
    assert d.verdict == Verdict.DEFER and d.rule.endswith(".window")  # every wall time here is before 08:00
    assert d.until is not None and d.until.date() == day and d.until.time() == time(8)
    check_deferral(d, now, narrow(pack))
