"""Bounded history: the loan continues as new carrying its whole book, and nothing is lost or sent twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain.models import PaymentReceived, Stage
from workflows import CollectionWorkflow
from tests.harness import align, events_of, loan_input, running_worker, settle


async def test_a_long_loan_continues_as_new_and_keeps_its_book(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("CAN-1", today=now.date(), dpd=1,
                                          policy={"continue_as_new_after_events": 100}))
        await ts_env.sleep(timedelta(days=60, hours=1))
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="100.00"))
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="100.00"))
        await settle()
        await ts_env.sleep(timedelta(days=59))
        st = await h.status(handle)
        desc = await ts_client.get_workflow_handle(handle.id).describe()
        assert desc.run_id != handle.result_run_id  # continued as new at least once
        assert st.days_past_due == 120 and st.stage == Stage.LEGAL
        entered = [(e.details["stage"], e.details["dpd"]) for e in events_of(st, "stage_entered")]
        assert entered == [("notice", 1), ("call", 8), ("visit", 31), ("agency", 61), ("legal", 91)]
        assert st.paid_total == Decimal("100.00") and len(events_of(st, "payment_duplicate")) == 1
        # every action once across runs
        assert [r["kind"] for r in h.outbox.read("agent_tasks") if r["action"] == "create"] == ["call", "visit"]
        sms = [r["key"] for r in h.outbox.read("sms")]
        assert len(h.outbox.read("legal")) == 1 and len(sms) == len(set(sms))
        assert [k for k in sms if ":warn:" not in k] == ["CAN-1:notice:sms:0"]
        # accrual continued exactly: 59 boundaries before the payment on 10000, then 59 on 9900 (after
        # the 100.00 went to interest and penalty, principal stays 10000)
        assert st.balance.principal == Decimal("10000.00")
        assert st.balance.interest + st.balance.penalty == Decimal("7.50") * 119 - Decimal("100.00")
        await handle.terminate("done")


async def test_a_loan_continues_as_new_while_a_long_plan_runs(dev_env, tmp_path):
    """History stays bounded during a plan too: the plan's child outlives the loan's continue-as-new
    (abandoned on close, reached by its id) and tells the new run how the plan ended. On the dev server
    (the time-skipping server mishandles a child whose parent run continued as new), with compressed
    days: one loan day is 0.4 s."""
    import asyncio
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from domain.models import Outcome, PaymentPlanProposal

    client = dev_env.client
    async with running_worker(client, tmp_path) as h:
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        handle = await h.start(loan_input("CAN-PL", today=today, dpd=10, principal="1200.00",
                                          policy={"continue_as_new_after_events": 100, "day_length_seconds": 0.4}))
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan, PaymentPlanProposal(
            installments=4, first_due_date=today + timedelta(days=7), interval_days=7))
        assert d.accepted
        first_run = (await handle.describe()).run_id
        for k, inst in enumerate(d.schedule):  # paid in small parts, each its own signal
            parts = 8
            each = (inst.amount / parts).quantize(Decimal("0.01"))
            for part in range(parts):
                amount = each if part < parts - 1 else inst.amount - each * (parts - 1)
                await handle.signal(CollectionWorkflow.payment_received,
                                    PaymentReceived(payment_id=f"I{k}-{part}", amount=str(amount)))
            await asyncio.sleep(1.5)
        result = await asyncio.wait_for(
            client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result(), 60)
        assert result.outcome == Outcome.PLAN_COMPLETED and result.balance.total == 0
        desc = await client.get_workflow_handle(handle.id).describe()
        assert desc.run_id != first_run  # it continued as new while the plan ran
        child = client.get_workflow_handle(f"{handle.id}-plan-1")
        assert (await child.describe()).status.name == "COMPLETED"  # one child, across the runs
