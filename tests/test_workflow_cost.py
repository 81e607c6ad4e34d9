"""What a loan costs in Temporal: history events and billable actions, counted from real histories.

Counts, never times (the benchmark, `make bench`, measures throughput and memory). The targets are
the issue's for the unpaid 120-day ladder: at most 150 history events and at most 40 billable
actions, as runtime/cost.py counts them from Temporal Cloud's published definition.
"""

from __future__ import annotations

import os
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from runtime.cost import history_cost
from tests.harness import align, loan_input, running_worker


def show(hist) -> None:
    """SHOW_HISTORY=1: print the history, one event a line (to see where the cost goes)."""
    if not os.environ.get("SHOW_HISTORY"):
        return
    for e in hist.events:
        name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        extra = ""
        if e.HasField("activity_task_scheduled_event_attributes"):
            extra = e.activity_task_scheduled_event_attributes.activity_type.name
        if e.HasField("timer_started_event_attributes"):
            extra = str(e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
        print(e.event_id, e.event_time.ToDatetime(), name, extra)


async def test_an_unpaid_120_day_ladder_stays_within_its_cost(ts_env, ts_client, tmp_path):
    async with running_worker(ts_client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("COST-1", today=now.date(), dpd=1))
        await ts_env.sleep(timedelta(days=119, hours=1))
        st = await h.status(handle)
        assert st.days_past_due == 120 and st.stage is not None and st.stage.value == "legal"
        hist = await handle.fetch_history()
        show(hist)
        c = history_cost(hist.events)
        print(f"\nunpaid 120-day ladder: {c.events} events, {c.billable} billable actions: {dict(c.kinds)}")
        assert c.events <= 150, c.kinds
        assert c.billable <= 40, c.kinds
        await handle.terminate("test done")
