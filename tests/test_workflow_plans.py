"""Restructuring: plans proposed by update or signal, kept, broken, paid off early, refused, and races."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio.client import WorkflowExecutionStatus

from domain.contract import plan_workflow_id
from domain.models import (
    LoanState,
    Outcome,
    Pause,
    PaymentPlanProposal,
    PaymentReceived,
    Stage,
    WriteOff,
)
from workflows import CollectionWorkflow, RestructuringWorkflow
from tests.harness import align, event_status, events_of, loan_input, running_worker, settle


def plan(first_due, n=6, interval=30, down="0.00") -> PaymentPlanProposal:
    return PaymentPlanProposal(installments=n, first_due_date=first_due, interval_days=interval, down_payment=down)


async def test_six_installments_paid_on_time_complete_the_plan(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PL-OK", today=now.date(), dpd=40))
        await ts_env.sleep(timedelta(seconds=5))
        assert [t.kind for t in (await h.status(handle)).open_tasks] == ["visit"]
        first = now.date() + timedelta(days=10)
        decision = await handle.execute_update(CollectionWorkflow.propose_payment_plan, plan(first))
        assert decision.accepted and decision.reason is None
        amounts = [i.amount for i in decision.schedule]
        assert sum(amounts) == Decimal("10000.00") and amounts == [Decimal("1666.66")] * 5 + [Decimal("1666.70")]
        assert [i.due_date for i in decision.schedule] == [first + timedelta(days=30 * k) for k in range(6)]
        await settle()
        st = await h.status(handle)
        assert st.state == LoanState.RESTRUCTURING and st.plan is not None
        assert st.plan.workflow_id == plan_workflow_id("PL-OK", 1)
        assert st.open_tasks == []  # accepting a plan cancels open agent tasks
        assert [r["status"] for r in h.outbox.read("bureau")][-1] == "restructured"
        child = ts_client.get_workflow_handle(plan_workflow_id("PL-OK", 1))
        assert (await child.describe()).status == WorkflowExecutionStatus.RUNNING

        for k, inst in enumerate(decision.schedule):
            # travel to the installment's due day, pay it
            now_local = (await ts_env.get_current_time()).astimezone(now.tzinfo)
            await ts_env.sleep(max(timedelta(0), (inst.due_date - now_local.date()) + timedelta(hours=1)))
            await handle.signal(CollectionWorkflow.payment_received,
                                PaymentReceived(payment_id=f"I-{k}", amount=str(inst.amount)))
            await settle()
            if k < 5:
                st = await h.status(handle)
                assert st.plan.paid_installments == k + 1 and st.state == LoanState.RESTRUCTURING
                assert st.balance.penalty == 0 and st.balance.interest == 0  # nothing accrues during the plan
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PLAN_COMPLETED and result.balance.total == 0
        child_result = await ts_client.get_workflow_handle_for(RestructuringWorkflow.run, child.id).result()
        assert child_result.outcome == "completed" and child_result.paid_installments == 6
        assert [r["status"] for r in h.outbox.read("bureau")][-1] == "cured"
        reminders = [r for r in h.outbox.read("sms") if ":reminder:" in r["key"]]
        assert len(reminders) == 6  # one reminder before each installment
        # no collection notices or tasks during the plan
        assert all(e.at.date() < now.date() + timedelta(days=1) for e in events_of(result, "task_created"))


async def test_plan_broken_at_installment_3_resumes_collections(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PL-BRK", today=now.date(), dpd=20))
        await ts_env.sleep(timedelta(seconds=5))
        first = now.date() + timedelta(days=7)
        # the same effect by signal, without an answer
        await handle.signal(CollectionWorkflow.payment_plan_proposed, plan(first, n=6, interval=14))
        await settle()
        st = await h.status(handle)
        assert st.state == LoanState.RESTRUCTURING
        schedule = st.plan.schedule
        for k in range(2):
            await handle.signal(CollectionWorkflow.payment_received,
                                PaymentReceived(payment_id=f"I-{k}", amount=str(schedule[k].amount)))
        await settle()
        assert (await h.status(handle)).plan.paid_installments == 2
        # installment 3 (index 2) is due first + 28 days; unpaid 7 days after, the plan breaks
        due3 = schedule[2].due_date
        await ts_env.sleep((due3 - now.date()) + timedelta(days=8, hours=1))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and st.plan is None
        broken = events_of(st, "plan_broken")
        assert len(broken) == 1 and broken[0].details["installment"] == 3
        dpd = st.days_past_due
        assert dpd == 20 + (due3 - now.date()).days + 8
        assert st.stage == (Stage.AGENCY if dpd >= 61 else Stage.VISIT if dpd >= 31 else Stage.CALL)
        paid = schedule[0].amount + schedule[1].amount
        # accrual resumes on what is still owed: principal 10000 - paid, from the break day on
        assert st.balance.principal == Decimal("10000.00") - paid and st.balance.interest == 0
        await ts_env.sleep(timedelta(days=2))
        st2 = await h.status(handle)
        assert st2.balance.interest > 0 and st2.balance.penalty > 0
        # a new plan may be proposed
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan,
                                        plan(st2.events[-1].at.date() + timedelta(days=5), n=3, interval=30))
        assert d.accepted
        # an operator write-off during the plan ends the plan's child with the loan
        await handle.signal(CollectionWorkflow.write_off, WriteOff(reason="uncollectable"))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.WRITTEN_OFF and result.state == LoanState.CLOSED
        assert [r["status"] for r in h.outbox.read("bureau")][-1] == "written_off"
        child = ts_client.get_workflow_handle(plan_workflow_id("PL-BRK", 2))
        assert (await child.describe()).status != WorkflowExecutionStatus.RUNNING


async def test_early_payoff_during_a_plan_closes_paid_in_full(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PL-EARLY", today=now.date(), dpd=15))
        await ts_env.sleep(timedelta(seconds=5))
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan,
                                        plan(now.date() + timedelta(days=5), n=4, interval=30, down="1000.00"))
        assert d.accepted and sum(i.amount for i in d.schedule) == Decimal("9000.00")
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="D", amount="1000.00"))
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="ALL", amount="9000.00"))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL and result.balance.total == 0


async def test_refusals_and_races_have_defined_answers(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        en = await h.start(loan_input("PL-R-EN", today=now.date(), dpd=10, tz="Asia/Shanghai", locale="en"))
        await ts_env.sleep(timedelta(seconds=5))
        ask = lambda p: en.execute_update(CollectionWorkflow.propose_payment_plan, p)  # noqa: E731
        d = await ask(plan(now.date() + timedelta(days=5), n=13))
        assert not d.accepted and "between 2 and 12 installments" in d.reason and d.schedule == []
        d = await ask(plan(now.date() + timedelta(days=5), interval=45))
        assert not d.accepted and "days apart" in d.reason
        d = await ask(plan(now.date() + timedelta(days=45)))
        assert not d.accepted and "must fall due by" in d.reason
        st = await h.status(en)
        assert st.state == LoanState.COLLECTING and len(events_of(st, "plan_refused")) == 3

        # a proposal while paused is refused, in the borrower's language
        zh = await h.start(loan_input("PL-R-ZH", today=now.date(), dpd=10))
        await ts_env.sleep(timedelta(seconds=5))
        await zh.signal(CollectionWorkflow.pause, Pause(reason="ops review"))
        await settle()
        d = await zh.execute_update(CollectionWorkflow.propose_payment_plan, plan(now.date() + timedelta(days=5)))
        assert not d.accepted and "暂停" in d.reason

        # a payment and a proposal at the same moment: applied in arrival order, the plan fixes what is left
        await en.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="X", amount="400.00"))
        d = await ask(plan(now.date() + timedelta(days=5), n=4))
        assert d.accepted and sum(i.amount for i in d.schedule) == Decimal("9600.00")
        # a proposal while a plan already runs
        d = await ask(plan(now.date() + timedelta(days=5), n=4))
        assert not d.accepted and "already running" in d.reason

        # a plan proposed on the day a stage escalates: DPD 30 -> visit on the next day once contact may
        # start (a contact stage starts at the loan's contact opening, 09:00-10:00); the plan comes at 00:30
        esc = await h.start(loan_input("PL-R-ESC", today=now.date(), dpd=30, locale="en"))
        await ts_env.sleep(timedelta(hours=14, minutes=30))  # just past midnight: DPD 31, still at call
        d = await esc.execute_update(CollectionWorkflow.propose_payment_plan,
                                     plan(now.date() + timedelta(days=10), n=3))
        assert d.accepted
        await settle()
        st = await h.status(esc)
        assert st.state == LoanState.RESTRUCTURING and st.stage == Stage.CALL and st.days_past_due == 31
        # the proposal was evaluated after the day's accrual: 1 boundary of interest and penalty
        assert sum(i.amount for i in d.schedule) == Decimal("10007.50")
        # it started at call (DPD 30); the visit task never went out: the plan came first
        assert [e.details["task_kind"] for e in events_of(st, "task_created")] == ["call"]
        assert st.open_tasks == []

        # after the loan closed: the workflow is gone; the portal answers from the status (see docs)
        await en.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="Y", amount="9600.00"))
        res = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, en.id).result()
        assert res.outcome == Outcome.PAID_IN_FULL
        for wf in (zh, esc):
            await wf.terminate("done")


async def test_accepting_a_plan_recalls_the_agency_placement(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PL-AGY", today=now.date(), dpd=62))
        await ts_env.sleep(timedelta(days=7, hours=1))  # the agency warning, then the placement 7 days later
        assert [r["action"] for r in h.outbox.read("agency")] == ["place"]
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan,
                                        plan(now.date() + timedelta(days=7), n=3, interval=30, down="500.00"))
        assert d.accepted
        st = await event_status(h, handle, "agency_recalled")
        assert st.state == LoanState.RESTRUCTURING
        recalled = [r for r in h.outbox.read("agency") if r["action"] == "recall"]
        assert len(recalled) == 1 and recalled[0]["reason"] == "payment plan accepted"
        assert events_of(st, "agency_recalled")[0].details["reason"] == "payment plan accepted"
        # the down payment is due on acceptance: unpaid 7 days later, the plan breaks
        await ts_env.sleep(timedelta(days=8, hours=15))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and events_of(st, "plan_broken")[0].details["installment"] == "down_payment"
        # back at the agency stage, warned afresh, and placed afresh 7 days after that warning
        assert st.stage == Stage.AGENCY
        assert [r["action"] for r in h.outbox.read("agency")] == ["place", "recall"]
        await ts_env.sleep(timedelta(days=7, hours=1))
        assert [r["action"] for r in h.outbox.read("agency")] == ["place", "recall", "place"]
        st = await h.status(handle)
        warnings = [e.at for e in events_of(st, "notice_sent") if e.details.get("notice") == "agency_warning"]
        assert len({w.date() for w in warnings}) == 2  # one warning per collection episode
