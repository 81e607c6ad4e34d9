"""Agent work end to end on the time-skipping server: SLA escalation, promises kept and broken, wrong
number, refused, bot then human, agency placement, recall and rotation, legal referral and settlement."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowUpdateFailedError

from domain.commands import AgentTaskRequest, BotCallResult
from domain.models import AgencyPayment, ContactOutcome, LegalOutcome, LoanState, Outcome, PaymentReceived, Stage
from workflows import CollectionWorkflow
from tests.harness import align, events_of, loan_input, running_worker, settle


def outcome(task_id: str, kind: str, **kw) -> ContactOutcome:
    return ContactOutcome(task_id=task_id, agent_id=kw.pop("agent_id", "agent-cn-1"), outcome=kind, **kw)


async def open_call_task(h, handle) -> str:
    st = await h.status(handle)
    [task] = [t for t in st.open_tasks if t.kind == "call"]
    return task.task_id


async def test_sla_escalation_reassigns_and_notifies_the_supervisor(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("SLA-1", today=now.date(), dpd=8))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        [task] = st.open_tasks
        assert task.kind == "call" and task.team == "cn-collections" and task.assigned_to == "agent-cn-1"
        await ts_env.sleep(timedelta(days=3, hours=1))  # untouched past the 3-day SLA
        st = await h.status(handle)
        [task] = st.open_tasks
        assert task.assigned_to == "agent-cn-2" and task.escalations == 1
        [esc] = events_of(st, "task_escalated")
        assert esc.details["from_agent"] == "agent-cn-1" and esc.details["to_agent"] == "agent-cn-2"
        [notice] = h.outbox.read("supervisor_notices")
        assert notice["supervisor"] == "supervisor-cn" and notice["task_id"] == task.task_id
        await ts_env.sleep(timedelta(days=7))
        st = await h.status(handle)
        assert st.open_tasks[0].escalations == 2  # the policy's most; then it stays with its agent
        assert len(h.outbox.read("supervisor_notices")) == 2
        await handle.terminate("done")


async def test_promise_kept_holds_escalation_then_it_resumes(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PTP-OK", today=now.date(), dpd=29))
        await ts_env.sleep(timedelta(seconds=5))
        task_id = await open_call_task(h, handle)
        st = await handle.execute_update(CollectionWorkflow.record_contact_outcome, outcome(
            task_id, "promise_to_pay", promised_amount="500.00", promised_date=now.date() + timedelta(days=5)))
        assert st.open_tasks == [] and events_of(st, "contact_outcome")[0].details["outcome"] == "promise_to_pay"
        await ts_env.sleep(timedelta(days=3))  # DPD 32 would be visit, but the promise holds escalation
        st = await h.status(handle)
        assert st.stage == Stage.CALL and st.days_past_due == 32
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="PTP", amount="500.00"))
        await ts_env.sleep(timedelta(days=1))
        st = await h.status(handle)
        assert events_of(st, "promise_kept") and st.stage == Stage.VISIT
        closes = [r for r in h.outbox.read("agent_tasks") if r["action"] == "close"]
        assert [c["task_id"] for c in closes] == [task_id]
        await handle.terminate("done")


async def test_promise_broken_escalates_at_once_and_is_counted(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("PTP-BRK", today=now.date(), dpd=10))
        await ts_env.sleep(timedelta(seconds=5))
        task_id = await open_call_task(h, handle)
        await handle.execute_update(CollectionWorkflow.record_contact_outcome, outcome(
            task_id, "promise_to_pay", promised_amount="800.00", promised_date=now.date() + timedelta(days=3)))
        await ts_env.sleep(timedelta(days=7, hours=1))  # promised +3, grace 3: broken at the boundary of +7
        st = await h.status(handle)
        [broken] = events_of(st, "promise_broken")
        assert broken.details["broken_promises"] == 1
        assert st.stage == Stage.VISIT and st.days_past_due == 17  # the DPD alone calls for call
        assert events_of(st, "stage_entered")[-1].details["reason"] == "promise to pay broken"
        await handle.terminate("done")


async def test_wrong_number_and_refused_move_on_at_once(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        wrong = await h.start(loan_input("WRONG-1", today=now.date(), dpd=10))
        refused = await h.start(loan_input("REF-1", today=now.date(), dpd=10))
        await ts_env.sleep(timedelta(seconds=5))
        await wrong.execute_update(CollectionWorkflow.record_contact_outcome,
                                   outcome(await open_call_task(h, wrong), "wrong_number"))
        await refused.execute_update(CollectionWorkflow.record_contact_outcome,
                                     outcome(await open_call_task(h, refused), "refused"))
        await ts_env.sleep(timedelta(hours=1))
        for handle, reason in ((wrong, "wrong number"), (refused, "refused")):
            st = await h.status(handle)
            assert st.stage == Stage.VISIT and reason in events_of(st, "stage_entered")[-1].details["reason"]
            assert [t.kind for t in st.open_tasks] == ["visit"]
        # an outcome for a task that is not open is refused and changes nothing
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await wrong.execute_update(CollectionWorkflow.record_contact_outcome, outcome("nope", "no_answer"))
        assert "task_id" in str(info.value.cause)
        for handle in (wrong, refused):
            await handle.terminate("done")


class ScriptedBot:
    """A voice bot that answers as scripted per loan (the bank's IVR would really talk)."""

    def __init__(self, script: dict[str, dict]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def call(self, req: AgentTaskRequest) -> BotCallResult:
        self.calls.append(req.loan_id)
        return BotCallResult(key=req.key, **self.script[req.loan_id])


async def test_bot_first_then_human(ts_env, ts_client, tmp_path):
    bot = ScriptedBot({})
    policy = {"agents": {"bot_first": True}}
    async with running_worker(ts_client, tmp_path, bot=bot) as h:
        now = await align(ts_env, "Asia/Shanghai")
        bot.script.update({"BOT-NA": {"outcome": "no_answer"},
                           "BOT-PTP": {"outcome": "promise_to_pay", "promised_amount": "300.00",
                                       "promised_date": now.date() + timedelta(days=40)}})
        na = await h.start(loan_input("BOT-NA", today=now.date(), dpd=8, policy=policy))
        ptp = await h.start(loan_input("BOT-PTP", today=now.date(), dpd=8, policy=policy))
        await ts_env.sleep(timedelta(hours=1))
        st = await h.status(na)
        assert [e.details["outcome"] for e in events_of(st, "bot_call")] == ["no_answer"]
        assert [t.kind for t in st.open_tasks] == ["call"]  # the human gets it after the bot
        st = await h.status(ptp)
        assert [e.details["outcome"] for e in events_of(st, "bot_call")] == ["promise_to_pay"]
        assert st.open_tasks == []  # the bot got a promise: no human call now
        assert sorted(bot.calls) == ["BOT-NA", "BOT-PTP"]  # once each
        for handle in (na, ptp):
            await handle.terminate("done")


async def test_agency_placement_commission_and_recall_on_payment(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("AG-PAY", today=now.date(), dpd=61))
        await ts_env.sleep(timedelta(seconds=5))
        # taken in at the agency stage: the borrower is warned first, the placement follows 7 days later
        st = await h.status(handle)
        assert st.stage == Stage.AGENCY and h.outbox.read("agency") == []
        # (with the credit report warning, three contacts fill the day: the warning goes by email at least)
        assert "email" in {e.details["channel"] for e in events_of(st, "notice_sent")
                           if e.details.get("notice") == "agency_warning"}
        await ts_env.sleep(timedelta(days=7, hours=1))
        [placed] = h.outbox.read("agency")
        assert placed["action"] == "place" and placed["agency_id"] == "agency-east"
        st = await h.status(handle)
        [placement] = events_of(st, "agency_placed")
        warned = min(e.at for e in events_of(st, "notice_sent") if e.details.get("notice") == "agency_warning")
        assert placement.at - warned >= timedelta(days=7)
        assert "email" not in placed and placed["amount_owed"] == placement.details["amount_owed"]  # no more personal data than needed
        await handle.signal(CollectionWorkflow.agency_payment, AgencyPayment(
            placement_id=placed["placement_id"], payment_id="AG-1", amount="4000.00"))
        await handle.signal(CollectionWorkflow.agency_payment, AgencyPayment(
            placement_id="someone-else", payment_id="AG-2", amount="1.00"))
        await settle()
        st = await h.status(handle)
        applied = events_of(st, "payment_applied")[0]
        assert applied.details["collected_by"] == {"agency_id": "agency-east", "placement_id": placed["placement_id"],
                                                   "commission": "800.00"}
        assert "placement_id" in events_of(st, "rejected")[0].details["reason"]
        rest = st.balance.total  # what the agency left (the days of warning accrued interest too)
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P", amount=str(rest)))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PAID_IN_FULL
        assert [r["action"] for r in h.outbox.read("agency")] == ["place", "recall"]


async def test_agency_period_end_rotates_agencies_then_goes_to_legal(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("AG-ROT", today=now.date(), dpd=61,
                                          policy={"agents": {"agency_placement_days": 10}}))
        await ts_env.sleep(timedelta(days=27, hours=1))  # 7 days' warning, then two placements of 10 days
        st = await h.status(handle)
        moves = [(r["action"], r["agency_id"]) for r in h.outbox.read("agency")]
        assert moves == [("place", "agency-east"), ("recall", "agency-east"), ("place", "agency-west"),
                         ("recall", "agency-west")]
        assert st.stage == Stage.LEGAL and st.days_past_due == 88  # before DPD 91: every agency has had it
        assert "every agency" in events_of(st, "stage_entered")[-1].details["reason"]
        await handle.terminate("done")


async def test_legal_referral_case_file_and_settlement_plan(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("LEG-1", today=now.date(), dpd=91))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        assert events_of(st, "legal_referred") == []  # the legal warning goes first
        await ts_env.sleep(timedelta(days=7, hours=1))
        st = await h.status(handle)
        [ref] = events_of(st, "legal_referred")
        case_id = ref.details["case_id"]
        assert (h.outbox_dir / "legal" / f"{case_id}.html").exists()
        # the referral carried a reference to the trail, not the trail: the adapter read it from the loan
        import json as _json
        case = _json.loads((h.outbox_dir / "legal" / f"{case_id}.json").read_text(encoding="utf-8"))
        kinds = {e["kind"] for e in case["contact_history"]}
        assert {"intake", "notice_sent"} <= kinds  # the legal warning is in the lawyer's file
        st = await handle.execute_update(CollectionWorkflow.record_legal_outcome,
                                         LegalOutcome(case_id=case_id, outcome="filed"))
        assert events_of(st, "legal_outcome")[0].details["outcome"] == "filed"
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(CollectionWorkflow.record_legal_outcome,
                                        LegalOutcome(case_id=case_id, outcome="settlement"))  # needs an amount
        first = now.date() + timedelta(days=17)
        st = await handle.execute_update(CollectionWorkflow.record_legal_outcome, LegalOutcome(
            case_id=case_id, outcome="settlement", amount="8000.00",
            plan={"installments": 2, "first_due_date": first.isoformat(), "interval_days": 30,
                  "down_payment": "0.00"}))
        assert st.state == LoanState.RESTRUCTURING and st.balance.total == Decimal("8000.00")
        assert [i.amount for i in st.plan.schedule] == [Decimal("4000.00"), Decimal("4000.00")]
        for k in range(2):
            await handle.signal(CollectionWorkflow.payment_received,
                                PaymentReceived(payment_id=f"S-{k}", amount="4000.00"))
        result = await ts_client.get_workflow_handle_for(CollectionWorkflow.run, handle.id).result()
        assert result.outcome == Outcome.PLAN_COMPLETED and result.balance.total == 0
        assert events_of(result, "legal_outcome")[-1].details["waived"]["principal"] == "2000.00"
