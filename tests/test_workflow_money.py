"""Trusted money on the loan: reversals, the reversal window, and a closing that cannot lose its steps."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities import Filed
from domain.commands import BureauReport
from domain.models import LoanState, Outcome, PaymentPlanProposal, PaymentReceived, PaymentReversed, Stage
from workflows import CollectionWorkflow
from tests.harness import align, event_status, events_of, loan_input, running_worker, settle


async def test_a_reversal_puts_the_money_back_where_the_waterfall_took_it(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("REV-1", today=now.date(), dpd=10, fees="50.00"))
        await ts_env.sleep(timedelta(days=4))
        before = await h.status(handle)
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P-1", amount="1000.00"))
        paid = await event_status(h, handle, "payment_applied")
        assert paid.balance.total == before.balance.total - Decimal("1000.00")
        await handle.signal(CollectionWorkflow.payment_reversed, PaymentReversed(payment_id="P-1", reason="returned"))
        await handle.signal(CollectionWorkflow.payment_reversed, PaymentReversed(payment_id="P-1", reason="returned"))
        await handle.signal(CollectionWorkflow.payment_reversed, PaymentReversed(payment_id="P-404", reason="returned"))
        st = await event_status(h, handle, "reversal_refused")
        # fees, penalty, interest and principal back to what they were, to the cent
        assert st.balance == before.balance and st.paid_total == 0
        [rev] = events_of(st, "payment_reversed")
        assert rev.details["restored"]["fees"] == "50.00" and rev.details["reason"] == "returned"
        assert len(events_of(st, "reversal_duplicate")) == 1  # idempotent by payment_id
        assert "not a payment this loan received" in events_of(st, "reversal_refused")[0].details["reason"]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CollectionWorkflow.reverse_payment,
                                        PaymentReversed(payment_id="P-405", reason="chargeback", operator_id="ops-1"))
        assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "ReversalRefused"
        await handle.terminate("done")


async def test_a_reversal_after_a_plan_installment_reaches_the_plan(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("REV-PL", today=now.date(), dpd=10))
        await ts_env.sleep(timedelta(minutes=5))
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan, PaymentPlanProposal(
            installments=3, first_due_date=now.date() + timedelta(days=3), interval_days=30))
        assert d.accepted
        first = d.schedule[0].amount
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="I-1", amount=str(first)))
        await settle()
        st = await h.status(handle)
        assert st.plan is not None and st.plan.paid_installments == 1
        await handle.signal(CollectionWorkflow.payment_reversed, PaymentReversed(payment_id="I-1", reason="chargeback"))
        st = await event_status(h, handle, "payment_reversed")
        assert st.plan is not None and st.plan.paid_installments == 0 and st.plan.paid_amount == 0
        # the plan's child heard it too: the first installment is unpaid again, so the plan breaks
        await ts_env.sleep(timedelta(days=12))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and events_of(st, "plan_broken")
        await handle.terminate("done")


async def test_paid_in_full_stays_open_for_its_reversal_window_and_reopens(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        window = {"payments": {"reversal_window_days": 10}}
        handle = await h.start(loan_input("REV-WIN", today=now.date(), dpd=35, policy=window))
        short = await h.start(loan_input("REV-NOW", today=now.date(), dpd=35))
        await ts_env.sleep(timedelta(minutes=5))
        for hd in (handle, short):
            await hd.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="ALL", amount="20000.00"))
        st = await event_status(h, handle, "closed")
        assert st.state == LoanState.CLOSED and st.outcome == Outcome.PAID_IN_FULL
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # open to reversals
        # without a window (v1's default) the workflow ends and a late reversal is refused in words
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, short.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL
        await ts_env.sleep(timedelta(days=3))
        await handle.signal(CollectionWorkflow.payment_reversed, PaymentReversed(payment_id="ALL", reason="chargeback"))
        st = await event_status(h, handle, "payment_reversed")
        assert st.state == LoanState.COLLECTING and st.outcome is None and st.balance.total == Decimal("10000.00")
        assert st.stage == Stage.VISIT  # collected again at the stage its DPD calls for
        assert events_of(st, "payment_reversed")[0].details["reopened"] is True
        # paid again, and this time the window runs out: the workflow ends with its result
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="ALL-2", amount="20000.00"))
        await event_status(h, handle, "closed", 2)
        await ts_env.sleep(timedelta(days=11))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL and [r["status"] for r in h.outbox.read("bureau")
                                                          if r["loan_id"] == "REV-WIN"][-1] == "cured"


class FlakyBureau:
    """Refuses the first two cure reports, then takes it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def report(self, req: BureauReport) -> Filed:
        self.calls.append(req.status.value)
        if req.status.value == "cured" and self.calls.count("cured") <= 2:
            raise ApplicationError("bureau gateway down", type="PermanentDeliveryFailure", non_retryable=True)
        return Filed(reference=f"bureau-{len(self.calls)}")


async def test_a_closing_whose_bureau_report_fails_twice_still_reports_the_cure(ts_env, ts_client, tmp_path):
    bureau = FlakyBureau()
    async with running_worker(ts_client, tmp_path, bureau=bureau) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("CURE-1", today=now.date(), dpd=45, policy={"contact": {"rule_pack": "UK"}}))
        await event_status(h, handle, "bureau_reported")  # UK: the delinquency is reported at once
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P", amount="20000.00"))
        await event_status(h, handle, "action_failed")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # not ended with the step lost
        await ts_env.sleep(timedelta(minutes=10))  # the backoff retries
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL
        assert bureau.calls == ["delinquent", "cured", "cured", "cured"]
        assert [e.details["status"] for e in events_of(result, "bureau_reported")] == ["delinquent", "cured"]
        assert len(events_of(result, "action_failed")) == 2
