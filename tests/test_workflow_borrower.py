"""The borrower entity and the contact rule packs, end to end on the time-skipping server.

Each test is a row of the contract's v2 tables: two loans of one person share a cap; a notice due at
23:00 goes in the morning; the 8th US call attempt in 7 days and the 4th CN contact in a day are
refused; opt-out, cease contact, a dispute held and released, a breathing space freezing accrual,
bankruptcy pausing every loan, the US validation notice first, UK hardship holding escalation. Every
deferral and block is in the loan's events with its rule.
"""

from __future__ import annotations

import asyncio
from datetime import time, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus

from domain.models import ContactOutcome, Dispute, DisputeResolved, LoanState, Outcome, PaymentReceived, Stage
from workflows import CollectionWorkflow, search
from tests.harness import align, event_status, events_of, loan_input, running_worker, settle


async def borrower_status(h, borrower_id: str) -> dict:
    return await h.borrower(borrower_id).query("status")


def rules_of(st, kind: str) -> list[str]:
    return [e.details["rule"] for e in events_of(st, kind)]


async def eventually(check, limit: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_two_loans_of_one_borrower_share_one_daily_cap(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        one = await h.start(loan_input("TWO-1", today=now.date(), dpd=3, borrower_id="B-TWO"))
        two = await h.start(loan_input("TWO-2", today=now.date(), dpd=3, borrower_id="B-TWO"))
        await ts_env.sleep(timedelta(minutes=5))
        b = await borrower_status(h, "B-TWO")
        assert sorted(loan["loan_id"] for loan in b["loans"]) == ["TWO-1", "TWO-2"]  # the second joined
        assert b["contacts_today"] == 3 and b["rule_pack"] == "CN"  # one person, one cap of 3
        sts = [await h.status(one), await h.status(two)]
        sent = sum(len(events_of(st, "notice_sent")) for st in sts)
        assert sent == 3
        deferred = [r for st in sts for r in rules_of(st, "contact_deferred")]
        assert "CN.daily_limit" in deferred  # the other loan's contacts wait for tomorrow, with the rule
        # tomorrow morning they go (at most 3 again)
        await ts_env.sleep(timedelta(days=1))
        sts = [await h.status(one), await h.status(two)]
        assert sum(len(events_of(st, "notice_sent")) for st in sts) > 3
        b = await borrower_status(h, "B-TWO")
        assert b["contacts_today"] <= 3
        # search attribute: a person's loans in one filter
        desc = await one.describe()
        assert desc.typed_search_attributes.get(search.BORROWER_ID) == "B-TWO"


@pytest.mark.parametrize("pack,zone,opens,closes", [("CN", "Asia/Shanghai", time(8), time(22)),
                                                     ("US", "America/New_York", time(8), time(21)),
                                                     ("UK", "Europe/London", time(8), time(21))])
async def test_a_notice_due_outside_the_window_goes_out_when_it_opens(ts_env, ts_client, tmp_path, pack, zone,
                                                                      opens, closes):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, zone, at=time(23, 0))  # a notice due at 23:00 local
        handle = await h.start(loan_input(f"NIGHT-{pack}", today=now.date(), dpd=3, tz=zone,
                                          locale="en" if pack != "CN" else "zh-CN",
                                          policy={"contact": {"rule_pack": pack}}))
        await ts_env.sleep(timedelta(minutes=5))
        st = await h.status(handle)
        assert events_of(st, "notice_sent") == []
        assert set(rules_of(st, "contact_deferred")) == {f"{pack}.window"}
        until = {e.details["until"][:10] for e in events_of(st, "contact_deferred")}
        assert until == {(now.date() + timedelta(days=1)).isoformat()}
        await ts_env.sleep(timedelta(hours=12))
        st = await h.status(handle)
        sent = events_of(st, "notice_sent")
        assert sent and all(opens <= e.at.timetz().replace(tzinfo=None) < closes for e in sent)
        assert all(e.at.date() == now.date() + timedelta(days=1) for e in sent)


async def test_us_first_report_waits_14_days_after_the_first_message(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "America/New_York")
        handle = await h.start(loan_input("PASSIVE-US", today=now.date(), dpd=40, tz="America/New_York", locale="en",
                                          policy={"contact": {"rule_pack": "US"}}))
        st = await event_status(h, handle, "notice_sent")
        first = events_of(st, "notice_sent")[0]
        assert first.details["notice"] == "validation" and events_of(st, "bureau_reported") == []
        await ts_env.sleep(timedelta(days=13))
        assert events_of(await h.status(handle), "bureau_reported") == []
        await ts_env.sleep(timedelta(days=2))
        [reported] = events_of(await h.status(handle), "bureau_reported")
        assert reported.at - first.at >= timedelta(days=14)


async def test_the_4th_cn_contact_in_a_day_is_refused(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("CAP-CN", today=now.date(), dpd=10))  # call stage: a task, 2 warnings
        st = await event_status(h, handle, "notice_sent", 2)
        b = await borrower_status(h, "B-CAP-CN")
        assert b["contacts_today"] == 2  # the credit report warning by sms and email
        ask = lambda: handle.execute_update(CollectionWorkflow.request_contact,  # noqa: E731
                                            {"channel": "call", "agent_id": "agent-cn-1"})
        first = await ask()
        assert first.allowed and first.rule == "CN.allowed"  # the 3rd contact
        fourth = await ask()
        assert not fourth.allowed and fourth.rule == "CN.daily_limit"
        assert fourth.until is not None and fourth.until.date() == now.date() + timedelta(days=1)
        st = await h.status(handle)
        assert rules_of(st, "contact_allowed") == ["CN.allowed"] and rules_of(st, "contact_deferred")[-1] == "CN.daily_limit"
        # an agency asks too, and counts with everyone else
        visit = await handle.execute_update(CollectionWorkflow.request_contact,
                                            {"channel": "visit", "agent_id": "agency-east-7", "actor": "agency"})
        assert not visit.allowed and visit.rule == "CN.daily_limit"


async def test_the_8th_us_call_attempt_in_7_days_is_refused(ts_env, ts_client, tmp_path):
    us = {"contact": {"rule_pack": "US", "window_start": "09:00:00", "window_end": "20:00:00",
                      "max_direct_contacts_per_day": 20}}
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "America/New_York")
        handle = await h.start(loan_input("CAP-US", today=now.date(), dpd=10, tz="America/New_York", locale="en",
                                          policy=us))
        st = await event_status(h, handle, "notice_sent", 1)
        # the first message is the validation notice (12 CFR 1006.34)
        first = events_of(st, "notice_sent")[0]
        assert first.details["notice"] == "validation"
        answers = []
        for day in range(3):
            for _ in range(3 if day < 2 else 2):
                answers.append(await handle.execute_update(CollectionWorkflow.request_contact,
                                                           {"channel": "call", "agent_id": "agent-intl-1"}))
            await ts_env.sleep(timedelta(days=1))
        assert [a.allowed for a in answers[:7]] == [True] * 7
        eighth = answers[7]
        assert not eighth.allowed and eighth.rule == "US.seven_in_seven"
        # a conversation starts the 7-day cool-off: no call the next day either
        st = await h.status(handle)
        task = st.open_tasks[0]
        await handle.execute_update(CollectionWorkflow.record_contact_outcome,
                                    ContactOutcome(task_id=task.task_id, agent_id="agent-intl-1", outcome="conversation"))
        await settle()
        after = await handle.execute_update(CollectionWorkflow.request_contact,
                                            {"channel": "call", "agent_id": "agent-intl-1"})
        assert not after.allowed and after.rule in ("US.after_conversation", "US.seven_in_seven")


async def test_opt_out_and_cease_contact_reach_every_loan(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        notice = await h.start(loan_input("OPT-1", today=now.date(), dpd=1, borrower_id="B-OPT",
                                          policy={"ladder": [{"stage": "notice", "enter_at_dpd": 1,
                                                              "channels": ["sms", "email"], "repeat_every_days": 2}]}))
        placed = await h.start(loan_input("OPT-2", today=now.date(), dpd=62, borrower_id="B-OPT"))
        await ts_env.sleep(timedelta(minutes=5))
        await h.borrower("B-OPT").signal("opt_out", {"channel": "sms"})
        await h.borrower("B-OPT").signal("opt_out", {"channel": "sms"})  # idempotent

        async def both_taken():
            b = await borrower_status(h, "B-OPT")
            return any(e["kind"] == "flag_unchanged" for e in b["events"])
        assert await eventually(both_taken)
        st = await event_status(h, notice, "borrower_flag")
        flags = events_of(st, "borrower_flag")
        assert len(flags) == 1 and flags[0].details["flags"]["opted_out"] == ["sms"]
        await ts_env.sleep(timedelta(days=2))  # the repeat notice: email goes, sms is blocked with its rule
        st = await h.status(notice)
        assert "CN.opt_out" in rules_of(st, "contact_blocked")
        sms_keys = [r["key"] for r in h.outbox.read("sms") if r["key"].startswith("OPT-1:notice")]
        assert sms_keys == ["OPT-1:notice:sms:0"]
        # wait for the placement (7 days after the agency warning), then cease contact
        await ts_env.sleep(timedelta(days=6))
        assert [r["action"] for r in h.outbox.read("agency")] == ["place"]
        await h.borrower("B-OPT").signal("cease_contact", {"reason": "please write to my lawyer",
                                                          "operator_id": "ops-7"})
        st = await event_status(h, placed, "agency_recalled")
        assert events_of(st, "agency_recalled")[0].details["reason"] == "contact barred: cease_contact"
        assert events_of(st, "borrower_flag")[-1].details["operator_id"] == "ops-7"
        b = await borrower_status(h, "B-OPT")
        assert b["flags"]["cease_contact"] == "please write to my lawyer" and b["flags"]["opted_out"] == ["sms"]
        asked = await placed.execute_update(CollectionWorkflow.request_contact,
                                            {"channel": "call", "agent_id": "agency-east-1", "actor": "agency"})
        assert not asked.allowed and asked.rule == "CN.cease_contact"
        # legal referral goes on (after its warning, which a cease request still lets through)
        await ts_env.sleep(timedelta(days=30))
        st = await h.status(placed)
        assert st.stage == Stage.LEGAL and len(events_of(st, "legal_referred")) == 1
        assert [r["action"] for r in h.outbox.read("agency")] == ["place", "recall"]  # never placed again


async def test_a_dispute_holds_the_loan_until_it_is_resolved(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        kept = await h.start(loan_input("DSP-1", today=now.date(), dpd=5))
        upheld = await h.start(loan_input("DSP-2", today=now.date(), dpd=5))
        await ts_env.sleep(timedelta(minutes=5))
        for handle in (kept, upheld):
            await handle.signal(CollectionWorkflow.dispute, Dispute(reason="I never took this loan"))
        await settle()
        await ts_env.sleep(timedelta(days=5))  # DPD 10: no call stage while disputed, no task, no contact
        st = await h.status(kept)
        assert st.stage == Stage.NOTICE and st.open_tasks == [] and events_of(st, "dispute_opened")
        notices = [e for e in events_of(st, "notice_sent") if e.at.date() > now.date()]
        assert notices == []
        await kept.signal(CollectionWorkflow.dispute_resolved, DisputeResolved(upheld=False, note="signed contract"))
        st = await event_status(h, kept, "task_created")
        assert st.stage == Stage.CALL and [t.kind for t in st.open_tasks] == ["call"]
        await upheld.signal(CollectionWorkflow.dispute_resolved, DisputeResolved(upheld=True, note="identity theft"))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, upheld.id).result()
        assert result.outcome == Outcome.WRITTEN_OFF
        assert events_of(result, "closed")[0].details["reason"] == "dispute upheld"


async def test_a_breathing_space_freezes_accrual_and_contact(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("BRE-1", today=now.date(), dpd=20))
        await ts_env.sleep(timedelta(minutes=5))
        before = (await h.status(handle)).balance.total
        await h.borrower("B-BRE-1").signal("breathing_space", {"start": now.date().isoformat(), "days": 30})
        await ts_env.sleep(timedelta(days=20))  # DPD 40: no visit while the moratorium runs
        st = await h.status(handle)
        assert st.balance.total == before  # no interest, no penalty, no fee
        assert st.stage == Stage.CALL and st.open_tasks == []  # no escalation, the call task withdrawn
        assert [e.details["reason"] for e in events_of(st, "task_cancelled")] == ["contact barred: breathing_space"]
        await ts_env.sleep(timedelta(days=11))  # it ended: collection resumes at the DPD's stage
        st = await h.status(handle)
        assert st.stage == Stage.VISIT
        assert st.balance.total == before + Decimal("7.50")  # one day accrued since it ended
        frozen = [e.details["frozen_days"] for e in st.events if e.kind == "accrued" and e.details.get("frozen_days")]
        assert sum(frozen) == 30  # every day of the moratorium, said in the audit trail


async def test_bankruptcy_pauses_every_loan_of_the_borrower(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        loans = [await h.start(loan_input(f"BK-{n}", today=now.date(), dpd=20 + n, borrower_id="B-BK")) for n in (1, 2)]
        await ts_env.sleep(timedelta(minutes=5))
        await h.borrower("B-BK").signal("bankruptcy", {"reference": "court case 2026-119"})
        for handle in loans:
            st = await event_status(h, handle, "paused")
            assert st.state == LoanState.PAUSED
            assert events_of(st, "paused")[0].details["reason"] == "bankruptcy: court case 2026-119"
        await ts_env.sleep(timedelta(days=15))  # no negative report, no contact, no escalation
        for handle in loans:
            st = await h.status(handle)
            assert st.state == LoanState.PAUSED and events_of(st, "bureau_reported") == []
            assert [e for e in events_of(st, "notice_sent") if e.at.date() > now.date()] == []


async def test_uk_hardship_offers_a_plan_and_holds_escalation_30_days(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Europe/London")
        handle = await h.start(loan_input("HS-UK", today=now.date(), dpd=25, tz="Europe/London", locale="en",
                                          policy={"contact": {"rule_pack": "UK"}}))
        st = await event_status(h, handle, "task_created")
        task = st.open_tasks[0]
        await handle.execute_update(CollectionWorkflow.record_contact_outcome,
                                    ContactOutcome(task_id=task.task_id, agent_id="agent-intl-1", outcome="hardship"))
        st = await event_status(h, handle, "notice_sent")
        [report] = events_of(st, "hardship_reported")
        assert report.details["hold_until"] == (now.date() + timedelta(days=30)).isoformat()
        assert {e.details["notice"] for e in events_of(st, "notice_sent") if "notice" in e.details} >= {"plan_offer"}
        await ts_env.sleep(timedelta(days=10))  # DPD 35: would be visit, held
        st = await h.status(handle)
        assert st.stage == Stage.CALL
        await ts_env.sleep(timedelta(days=21))  # the hold is over: the DPD's stage
        st = await h.status(handle)
        assert st.stage == Stage.VISIT


async def test_the_entity_ends_when_the_last_loan_closes(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        loans = [await h.start(loan_input(f"END-{n}", today=now.date(), dpd=2, borrower_id="B-END")) for n in (1, 2)]
        await ts_env.sleep(timedelta(minutes=5))
        for n, handle in enumerate(loans):
            await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id=f"P{n}", amount="20000.00"))
            result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
            assert result.outcome == Outcome.PAID_IN_FULL
            desc = await h.borrower("B-END").describe()
            assert desc.status == (WorkflowExecutionStatus.RUNNING if n == 0 else desc.status)
        async def ended():
            return (await h.borrower("B-END").describe()).status == WorkflowExecutionStatus.COMPLETED
        assert await eventually(ended)
        final = await h.borrower("B-END").result()
        assert [loan["outcome"] for loan in final["loans"]] == ["paid_in_full", "paid_in_full"]


async def test_the_entity_bounds_its_history_and_keeps_the_person_across_runs(ts_env, ts_client, tmp_path):
    from domain.borrower import BorrowerInput, ContactQuestion
    from domain.rules import ContactAttempt, LoanContext, narrow
    from workflows import BorrowerWorkflow

    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await ts_client.start_workflow(
            BorrowerWorkflow.run, BorrowerInput(borrower_id="B-CAN", continue_as_new_after_events=100),
            id="borrower-B-CAN", task_queue=h.task_queue, start_signal="loan_changed",
            start_signal_args=[{"loan_id": "CAN-L", "state": "collecting", "stage": "notice", "at": now.isoformat()}])
        h.borrowers.add("B-CAN")
        await handle.signal("opt_out", {"channel": "voice"})
        answers = []
        for day in range(12):
            for n in range(3):
                q = ContactQuestion(attempt=ContactAttempt(key=f"CAN-L:{day}:{n}", loan_id="CAN-L", channel="sms",
                                                           actor="system"),
                                    loan=LoanContext(loan_id="CAN-L"), pack="CN", limits=narrow("CN", {}))
                answers.append(await handle.execute_update("decide_contact", q))
            await ts_env.sleep(timedelta(days=1))
        assert all(a["verdict"] == "allow" for a in answers)
        desc = await handle.describe()
        assert desc.run_id != handle.first_execution_run_id  # continued as new, at least once
        b = await borrower_status(h, "B-CAN")
        assert b["flags"]["opted_out"] == ["voice"] and [loan["loan_id"] for loan in b["loans"]] == ["CAN-L"]
        assert 0 < len(b["contacts"]) <= 3 * 9  # pruned to what the rules can need
