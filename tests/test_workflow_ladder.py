"""The collection ladder end to end on the time-skipping server with the real activities."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain.models import LoanState, Stage
from tests.harness import align, events_of, loan_input, running_worker


async def test_whole_ladder_from_dpd_1_to_120(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("LAD-1", today=now.date(), dpd=1))
        await ts_env.sleep(timedelta(seconds=5))
        st = await h.status(handle)
        assert st.state == LoanState.COLLECTING and st.stage == Stage.NOTICE and st.days_past_due == 1

        await ts_env.sleep(timedelta(days=119, hours=1))
        st = await h.status(handle)
        assert st.days_past_due == 120
        assert st.stage == Stage.LEGAL

        entered = [(e.details["stage"], e.details["dpd"]) for e in events_of(st, "stage_entered")]
        assert entered == [("notice", 1), ("call", 8), ("visit", 31), ("agency", 61), ("legal", 91)]

        # Each stage's action once, in order, on the right day (loan days from the audit trail).
        due = now.date() - timedelta(days=1)
        sent = [(e.details["channel"], (e.at.date() - due).days) for e in events_of(st, "notice_sent")
                if "notice" not in e.details]
        assert sent == [("sms", 1), ("email", 1)]  # the next notice would be DPD 8, by then the loan is at call
        # The warnings the rules require ride on contacts the loan makes anyway, at least 7 days ahead:
        # credit report (DPD 30) with the first notice, agency (DPD 61) with the visit, legal (DPD 91) with
        # the placement.
        warned = {}
        for e in events_of(st, "notice_sent"):
            if "notice" in e.details:
                warned.setdefault(e.details["notice"], (e.at.date() - due).days)
        assert warned == {"credit_report_warning": 1, "agency_warning": 31, "legal_warning": 61}
        tasks = [(e.details["task_kind"], (e.at.date() - due).days) for e in events_of(st, "task_created")]
        assert tasks == [("call", 8), ("visit", 31)]
        assert [(e.at.date() - due).days for e in events_of(st, "agency_placed")] == [61]
        assert [(e.at.date() - due).days for e in events_of(st, "legal_referred")] == [91]
        # Contacts happen in the window: the stage is entered at midnight, the action at 09:00.
        for e in events_of(st, "notice_sent")[1:] + events_of(st, "task_created"):
            assert e.at.hour >= 9

        # The outside world saw each action exactly once.
        sms = [r["key"] for r in h.outbox.read("sms")]
        assert [k for k in sms if ":warn:" not in k] == ["LAD-1:notice:sms:0"] and len(sms) == len(set(sms))
        mails = h.emails_to("lad-1@example.com")
        assert len({m["Message-ID"] for m in mails}) == len(mails) == 4  # the notice and three warnings
        assert all(m["List-Unsubscribe"] and m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                   for m in mails)
        creates = [r for r in h.outbox.read("agent_tasks") if r.get("action", "create") == "create"]
        assert [r["kind"] for r in creates] == ["call", "visit"]
        assert len(h.outbox.read("agency")) >= 1
        assert len(h.outbox.read("legal")) == 1
        bureau = [r["status"] for r in h.outbox.read("bureau")]
        assert bureau == ["delinquent"]

        # Money: 10,000.00 at 18.25% accrues 5.00 interest and 2.50 penalty a day, 119 boundaries passed.
        assert st.balance.interest == Decimal("595.00")
        assert st.balance.penalty == Decimal("297.50")
        assert st.balance.total == Decimal("10892.50")
        await handle.terminate("test done")
