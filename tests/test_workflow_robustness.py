"""What the review found: loans that must never spin, hot-loop, wedge or lose input."""

from __future__ import annotations

import asyncio
from datetime import time, timedelta
from decimal import Decimal

from temporalio.exceptions import ApplicationError

from activities import Filed
from domain.commands import BureauReport
from domain.models import LoanState, Pause, PaymentPlanProposal, Resume, Stage
from workflows import CollectionWorkflow
from tests.harness import align, events_of, loan_input, running_worker, settle


async def _history_length(handle) -> int:
    return len([e async for e in handle.fetch_history_events()])


async def test_a_deferral_made_stale_by_escalation_does_not_spin(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai", at=time(21, 0))  # after the window: notices deferred
        handle = await h.start(loan_input("STALE-1", today=now.date(), dpd=7))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        deferred = [e.details["key"] for e in events_of(st, "contact_deferred")]
        assert sorted(k for k in deferred if ":warn:" not in k) == ["STALE-1:notice:email:0", "STALE-1:notice:sms:0"]
        await ts_env.sleep(timedelta(days=2))  # the next morning: call stage; the stale notice time passes
        st = await h.status(handle)
        assert st.stage == Stage.CALL and [t.kind for t in st.open_tasks] == ["call"]
        # the deferred notices of the old stage never went out (the credit report warning did: it is due)
        assert [e for e in events_of(st, "notice_sent") if "notice" not in e.details] == []
        assert await _history_length(handle) < 120  # a spinning loop would add hundreds of events
        await handle.terminate("done")


class FailingBureau:
    def __init__(self) -> None:
        self.calls = 0

    async def report(self, req: BureauReport) -> Filed:
        self.calls += 1
        raise ApplicationError("bureau gateway refused the file", type="PermanentDeliveryFailure",
                               non_retryable=True)


async def test_a_failing_bureau_is_retried_daily_and_blocks_no_contact(ts_env, ts_client, tmp_path):
    bureau = FailingBureau()
    async with running_worker(ts_client, tmp_path, bureau=bureau) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("BFAIL-1", today=now.date(), dpd=40))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        assert [t.kind for t in st.open_tasks] == ["visit"] and bureau.calls == 0  # the warning first
        await ts_env.sleep(timedelta(days=7, hours=1))  # 7 days after the credit report warning
        st = await h.status(handle)
        [failed] = events_of(st, "action_failed")
        assert failed.details["action"] == "bureau" and failed.details["retry_at"] and not failed.details["gave_up"]
        assert [t.kind for t in st.open_tasks] == ["visit"]  # not stuck behind the bureau report
        calls = bureau.calls
        await ts_env.sleep(timedelta(days=3))
        assert bureau.calls == calls + 3  # then once a day
        assert await _history_length(handle) < 150
        await handle.terminate("done")


async def test_a_plan_accepted_during_an_activity_starts_its_child_at_once(ts_env, ts_client, tmp_path):
    class SlowBureau:
        async def report(self, req: BureauReport) -> Filed:
            await asyncio.sleep(2)
            return Filed(reference="slow")

    async with running_worker(ts_client, tmp_path, bureau=SlowBureau()) as h:
        now = await align(ts_env, "Asia/Shanghai")
        # UK rules: the bureau report needs no prior warning, so it is what runs at intake
        handle = await h.start(loan_input("RACE-1", today=now.date(), dpd=40,
                                          policy={"contact": {"rule_pack": "UK"}}))
        await asyncio.sleep(0.5)  # the bureau report is running
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan, PaymentPlanProposal(
            installments=3, first_due_date=now.date() + timedelta(days=5), interval_days=30))
        assert d.accepted
        await asyncio.sleep(4)  # no time skipped: the loop must not wait for its midnight timer
        child = ts_client.get_workflow_handle(f"{handle.id}-plan-1")
        assert (await child.describe()).status.name == "RUNNING"
        await handle.terminate("done")


async def test_a_pause_holds_the_plan_reminders_and_break(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PPAUSE-1", today=now.date(), dpd=20))
        await ts_env.sleep(timedelta(seconds=5))
        first = now.date() + timedelta(days=5)
        d = await handle.execute_update(CollectionWorkflow.propose_payment_plan, PaymentPlanProposal(
            installments=3, first_due_date=first, interval_days=30))
        assert d.accepted
        await settle()
        await handle.signal(CollectionWorkflow.pause, Pause(reason="complaint under review"))
        await ts_env.sleep(timedelta(days=20))  # the first installment fell due and its grace passed
        st = await h.status(handle)
        assert st.state == LoanState.PAUSED and events_of(st, "plan_broken") == []
        assert [r for r in h.outbox.read("sms") if ":reminder:" in r["key"]] == []  # no contact on hold
        await handle.signal(CollectionWorkflow.resume, Resume())
        await ts_env.sleep(timedelta(days=3))
        st = await h.status(handle)
        assert st.state == LoanState.RESTRUCTURING  # the full grace again from the resume
        await ts_env.sleep(timedelta(days=6))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and len(events_of(st, "plan_broken")) == 1
        accepted, broken = events_of(st, "plan_accepted")[0].at, events_of(st, "plan_broken")[0].at
        # nothing accrued during the plan, on hold or not; accrual resumed after the break
        assert all(not accepted < e.at < broken for e in events_of(st, "accrued"))
        assert st.balance.principal == Decimal("10000.00")
        await handle.terminate("done")
