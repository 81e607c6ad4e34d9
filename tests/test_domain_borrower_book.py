"""The borrower's book and a borrower-v1 loan's book, property-tested without Temporal.

- `BorrowerBook.decide`: however the person's loans interleave their attempts, the allowed ones never
  break a cap; the same attempt asked again is answered the same and counted once; a failed contact
  stops counting; flags apply idempotently; the entity ends only when it may.
- A borrower-v1 `LoanBook` driven through random lives (the loop the workflow runs, with a borrower
  entity that allows what the rules allow): a placement, a referral or a first negative report never
  comes less than 7 days after its warning; nothing is sent while contact is barred; a breathing space
  accrues nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.book import BORROWER_V1, ActionKind, LoanBook
from domain.borrower import BorrowerBook, BorrowerInput, ContactFailed, ContactQuestion, LoanNote
from domain.models import LoanState, PaymentReceived
from domain.rules import Actor, ContactAttempt, ContactChannel, LoanContext, PackCode, Purpose, Verdict, narrow
from tests.test_domain_book import START, loan_input

SH = ZoneInfo("Asia/Shanghai")


def question(loan: str, key: str, channel: ContactChannel = ContactChannel.SMS, actor: Actor = Actor.SYSTEM,
             pack: str = "CN") -> ContactQuestion:
    return ContactQuestion(attempt=ContactAttempt(key=key, loan_id=loan, channel=channel, actor=actor,
                                                  purpose=Purpose.COLLECTION),
                           loan=LoanContext(loan_id=loan), pack=PackCode(pack), limits=narrow(pack, {}),
                           state=LoanState.COLLECTING)


attempts = st.lists(st.tuples(st.sampled_from(["L1", "L2", "L3"]), st.integers(0, 40),
                              st.sampled_from(list(ContactChannel)), st.integers(0, 3)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(attempts=attempts)
def test_the_persons_caps_hold_however_their_loans_interleave(attempts):
    book = BorrowerBook.open(BorrowerInput(borrower_id="B", timezone="Asia/Shanghai"))
    base = datetime(2026, 12, 7, 8, 30, tzinfo=SH)
    allowed: dict[date, int] = {}
    for n, (loan, minutes, channel, repeat) in enumerate(attempts):
        now = base + timedelta(minutes=30 * minutes)
        actor = Actor.AGENT if channel in (ContactChannel.CALL, ContactChannel.VISIT) else Actor.SYSTEM
        key = f"{loan}:{n - repeat if n >= repeat else n}"
        q = question(loan, key, channel, actor)
        first = book.decide(q, now)
        again = book.decide(q, now)  # a retried activity: same answer, counted once
        assert again.verdict == first.verdict or first.verdict != Verdict.ALLOW
        if first.verdict == Verdict.ALLOW:
            day = now.date()
            allowed[day] = len({c.key for c in book.record.contacts if c.at.astimezone(SH).date() == day})
            assert allowed[day] <= 3  # CN: at most 3 contacts a day for the person, every loan together
        elif first.verdict == Verdict.DEFER:
            assert first.until is not None and first.until > now
    for c in book.record.contacts:
        assert c.key in book.allowed


def test_a_contact_that_failed_stops_counting_and_the_entity_ends_only_when_it_may():
    book = BorrowerBook.open(BorrowerInput(borrower_id="B", timezone="Asia/Shanghai", retention_days=30))
    now = datetime(2026, 12, 7, 10, tzinfo=SH)
    book.note(LoanNote(loan_id="L1", state=LoanState.COLLECTING, at=now))
    for k in range(3):
        assert book.decide(question("L1", f"k{k}"), now).verdict == Verdict.ALLOW
    assert book.decide(question("L1", "k3"), now).rule == "CN.daily_limit"
    assert book.contact_failed(ContactFailed(key="k1"), now)
    assert book.decide(question("L1", "k3"), now).verdict == Verdict.ALLOW  # the failed one no longer counts
    assert not book.finished(now)
    changed, error = book.apply_flag("opt_out", {"channel": "sms"}, now)
    assert changed and error is None and book.flags_seq == 1
    assert book.apply_flag("opt_out", {"channel": "sms"}, now) == (False, None)  # idempotent
    assert book.apply_flag("opt_out", {"channel": "fax"}, now)[1] is not None  # refused, named
    book.note(LoanNote(loan_id="L1", state=LoanState.CLOSED, at=now + timedelta(days=1)))
    assert not book.finished(now + timedelta(days=2))  # it keeps the opt-out for the person's next loan
    assert book.finished(now + timedelta(days=32))  # until its retention is over
    book.apply_flag("opt_in", {"channel": "sms"}, now + timedelta(days=2))
    assert book.finished(now + timedelta(days=2))


lives = st.lists(st.tuples(st.integers(min_value=1, max_value=24 * 100),
                           st.sampled_from(["pay", "cease", "breathing", "dispute", "resolve", "optout"])),
                 max_size=5).map(sorted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dpd=st.integers(min_value=1, max_value=95), lives=lives)
def test_a_borrower_v1_loan_keeps_the_rules_through_random_lives(dpd, lives):
    inp = loan_input(dpd)
    book = LoanBook.open(inp, START)
    assert BORROWER_V1 in book.features
    from domain.borrower import FlagsNotice
    from domain.models import Dispute, DisputeResolved
    from domain.rules import BorrowerFlags

    person = BorrowerBook.open(BorrowerInput(borrower_id="B-1", timezone="Asia/Shanghai"))
    real = START
    flags = BorrowerFlags()
    seq = 0
    sent: list[tuple[datetime, str]] = []

    def run(now: datetime) -> None:
        for _ in range(40):
            book.advance(now)
            due = [a for a in book.due_actions(now) if not (a.key in book.deferred and book.deferred[a.key] > now)
                   and a.key not in book.held]
            if not due:
                return
            a = due[0]
            screened = book.screen(a, now, book.own_record(now))
            if screened is not None and screened.verdict != Verdict.ALLOW:
                book.refuse(a, screened, now)
                continue
            if a.kind in (ActionKind.NOTICE, ActionKind.BOT_CALL):
                d = person.decide(book.question(book.attempt(a)), now)
                if d.verdict != Verdict.ALLOW:
                    book.refuse(a, d, now)
                    continue
                barred = book.contact_barred(now.date())
                assert not barred or a.purpose in ("warning", "plan_reminder", "confirmation"), (a, barred)
            book.record(a, now)
            sent.append((now, a.key))
        raise AssertionError("the loop did not settle")

    events = [(START + timedelta(hours=h), what) for h, what in lives]
    for at, what in events + [(START + timedelta(days=130), "end")]:
        while True:
            wake, _ = book.next_wake(book.now(real))
            if wake is None or book.clock.real_time(wake) >= at or book.closed:
                break
            real = book.clock.real_time(wake)
            run(book.now(real))
        real = at
        now = book.now(real)
        book.advance(now)
        if what == "pay" and not book.closed:
            book.apply_payment(PaymentReceived(payment_id=f"P{len(sent)}", amount="100.00"), now)
        elif what in ("cease", "breathing", "optout"):
            body = {"cease": ("cease_contact", {"reason": "asked"}),
                    "breathing": ("breathing_space", {"start": now.date().isoformat(), "days": 20}),
                    "optout": ("opt_out", {"channel": "sms"})}[what]
            changed, _ = person.apply_flag(body[0], body[1], now)
            if changed:
                seq += 1
                book.apply_borrower_flags(FlagsNotice(seq=person.flags_seq, flags=person.flags, change=body[0],
                                                      at=now), now)
        elif what == "dispute":
            book.open_dispute(Dispute(reason="not mine"), now)
        elif what == "resolve" and book.dispute is not None:
            book.resolve_dispute(DisputeResolved(upheld=False), now)
        if not book.closed:
            run(now)
    # The gates held: every placement, referral and first negative report came 7 days after its warning.
    warned = {e.details["notice"]: e.at for e in book.events if e.kind == "notice_sent" and "notice" in e.details
              and e.details["notice"].endswith("_warning")}
    for kind, warning in (("agency_placed", "agency_warning"), ("legal_referred", "legal_warning")):
        for e in [e for e in book.events if e.kind == kind]:
            assert warning in warned and e.at - warned[warning] >= timedelta(days=7), (kind, e.at, warned)
    first_report = next((e for e in book.events if e.kind == "bureau_reported"
                         and e.details["status"] == "delinquent"), None)
    if first_report is not None:
        assert first_report.at - warned["credit_report_warning"] >= timedelta(days=7)
    # A breathing space accrues nothing: every accrual segment says how many days were frozen.
    for e in book.events:
        if e.kind == "accrued" and e.details.get("frozen_days"):
            assert int(e.details["days"]) + int(e.details["frozen_days"]) == (
                date.fromisoformat(e.details["end"]) - date.fromisoformat(e.details["start"])).days
    assert book.owed.interest >= 0 and book.paid_total >= Decimal("0")
    assert all(at.tzinfo is not None for at, _ in sent) and START.tzinfo is UTC
