"""Payments, pause/resume, bad bodies, a start at 40 DPD, and the email notice over SMTP."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowUpdateFailedError

from domain.contract import SIGNAL_PAYMENT_RECEIVED
from domain.models import LoanState, Outcome, PaymentReceived, Pause, Resume, Stage
from workflows import CollectionWorkflow
from tests.harness import align, events_of, loan_input, running_worker, settle


async def test_start_at_40_dpd_is_visit_and_money_after_n_days(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("V-40", today=now.date(), dpd=40))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        assert (st.stage, st.days_past_due, st.state) == (Stage.VISIT, 40, LoanState.COLLECTING)
        assert [e.details["task_kind"] for e in events_of(st, "task_created")] == ["visit"]
        # No reminder and no call (it starts at visit), but the notices the rules require: the bureau
        # hears of the loan only 7 days after the borrower was warned (CN, Credit Reporting Regulation
        # art. 15), and the agency warning rides along (the placement at DPD 61 is inside its window).
        notices = events_of(st, "notice_sent")
        assert {e.details["notice"] for e in notices} == {"credit_report_warning", "agency_warning"}
        assert [o["kind"] for o in h.outbox.read("agent_tasks")] == ["visit"]
        assert [t.kind for t in st.open_tasks] == ["visit"]
        assert h.outbox.read("bureau") == []
        held = [e for e in st.events if e.kind == "action_held" and e.details["rule"] == "CN.credit_report_warning"]
        assert held == [] or held[0].at <= notices[0].at

        await ts_env.sleep(timedelta(days=10))
        st = await h.status(handle)
        assert [r["status"] for r in h.outbox.read("bureau")] == ["delinquent"]
        [reported] = events_of(st, "bureau_reported")
        warned = min(e.at for e in notices if e.details["notice"] == "credit_report_warning")
        assert reported.at - warned >= timedelta(days=7)
        assert st.days_past_due == 50 and st.stage == Stage.VISIT
        assert st.balance.interest == Decimal("50.00") and st.balance.penalty == Decimal("25.00")
        assert st.balance.total == Decimal("10075.00")
        await handle.terminate("done")


async def test_partial_then_full_payment_closes_and_stops_contact(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PAY-1", today=now.date(), dpd=58))
        await ts_env.sleep(timedelta(days=8))  # DPD 66: warned at intake, placed 7 days later
        st = await h.status(handle)
        assert st.stage == Stage.AGENCY and st.agency is not None
        # 8 boundaries: 40.00 interest, 20.00 penalty
        assert st.balance.total == Decimal("10060.00")

        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="1060.00"))
        await settle()
        st = await h.status(handle)
        assert st.balance.fees == 0 and st.balance.penalty == 0 and st.balance.interest == 0
        assert st.balance.principal == Decimal("9000.00") and st.paid_total == Decimal("1060.00")
        assert st.state == LoanState.COLLECTING

        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-2", amount="9000.00"))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL and result.state == LoanState.CLOSED
        assert result.stage is None and result.balance.total == 0 and result.paid_total == Decimal("10060.00")
        # Closing: open tasks cancelled, agency recalled, cure reported.
        assert result.open_tasks == []
        assert [r["action"] for r in h.outbox.read("agency")] == ["place", "recall"]
        assert [r["status"] for r in h.outbox.read("bureau")] == ["delinquent", "cured"]
        contacts_before = len(h.outbox.read("sms")) + len(h.mail.messages)
        await ts_env.sleep(timedelta(days=30))
        assert len(h.outbox.read("sms")) + len(h.mail.messages) == contacts_before  # no contact after payment


async def test_duplicate_payment_id_and_bad_bodies_change_nothing(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("DUP-1", today=now.date(), dpd=3))
        await ts_env.sleep(timedelta(seconds=5))
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="100.00"))
        await settle()
        before = await h.status(handle)
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="100.00"))
        # Bad bodies, sent raw by name as a careless portal would: a float, an unknown field, a missing id.
        await handle.signal(SIGNAL_PAYMENT_RECEIVED, {"payment_id": "P-2", "amount": 100.5})
        await handle.signal(SIGNAL_PAYMENT_RECEIVED, {"payment_id": "P-3", "amount": "1.00", "channel": "x"})
        await handle.signal(SIGNAL_PAYMENT_RECEIVED, {"amount": "5.00"})
        await handle.signal(SIGNAL_PAYMENT_RECEIVED, "not an object")
        await settle()
        after = await h.status(handle)
        assert after.balance == before.balance and after.paid_total == Decimal("100.00") == before.paid_total
        assert after.state == before.state and after.stage == before.stage
        assert len(events_of(after, "payment_duplicate")) == 1
        rejected = [e.details["reason"] for e in events_of(after, "rejected")]
        assert len(rejected) == 4
        assert "amount" in rejected[0] and "not a JSON number" in rejected[0]
        assert "channel" in rejected[1] and "Extra inputs are not permitted" in rejected[1]
        assert "payment_id" in rejected[2] and "Field required" in rejected[2]
        assert "JSON object" in rejected[3]
        # A malformed update is refused by the validator and writes nothing, not even an event.
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update("propose_payment_plan", {"installments": "six"})
        assert "installments" in str(info.value.cause)
        assert len((await h.status(handle)).events) == len(after.events)
        desc = await handle.describe()
        assert desc.status.name == "RUNNING"
        await handle.terminate("done")


async def test_pause_holds_contact_and_escalation_until_resume(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PAU-1", today=now.date(), dpd=5))
        await ts_env.sleep(timedelta(seconds=5))
        await handle.signal(CollectionWorkflow.pause, Pause(reason="borrower disputes the amount"))
        await settle()
        assert (await h.status(handle)).state == LoanState.PAUSED
        sms_before = len(h.outbox.read("sms"))
        await ts_env.sleep(timedelta(days=10))  # DPD 15: would be at call, but paused
        st = await h.status(handle)
        assert st.state == LoanState.PAUSED and st.stage == Stage.NOTICE and st.days_past_due == 15
        assert len(h.outbox.read("sms")) == sms_before and h.outbox.read("agent_tasks") == []
        assert st.balance.interest == Decimal("50.00")  # money still accrues while on hold
        assert st.next_action_at is None

        await handle.signal(CollectionWorkflow.resume, Resume())
        await ts_env.sleep(timedelta(hours=1))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and st.stage == Stage.CALL
        assert [e.kind for e in st.events if e.kind in ("paused", "resumed")] == ["paused", "resumed"]
        assert [r["kind"] for r in h.outbox.read("agent_tasks")] == ["call"]
        await handle.terminate("done")


async def test_email_notice_is_delivered_over_smtp_in_the_borrowers_language(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Europe/London")
        en = await h.start(loan_input("EM-EN", today=now.date(), dpd=2, tz="Europe/London", locale="en",
                                      email_addr="jane@example.co.uk"))
        zh = await h.start(loan_input("EM-ZH", today=now.date(), dpd=2, email_addr="zhang@example.cn"))
        await ts_env.sleep(timedelta(hours=1))
        [msg_en] = [m for m in h.emails_to("jane@example.co.uk") if "EM-EN:notice:" in m["X-Collections-Key"]]
        body_en = msg_en.get_payload(decode=True) if not msg_en.is_multipart() else \
            msg_en.get_payload(0).get_payload(decode=True)
        text_en = body_en.decode("utf-8")
        assert "10000.00" in text_en and "EM-EN" in text_en
        [msg_zh] = [m for m in h.emails_to("zhang@example.cn") if "EM-ZH:notice:" in m["X-Collections-Key"]]
        part = msg_zh.get_payload(0) if msg_zh.is_multipart() else msg_zh
        text_zh = part.get_payload(decode=True).decode("utf-8")
        assert "10000.00" in text_zh and "逾期" in text_zh
        await en.terminate("done")
        await zh.terminate("done")
