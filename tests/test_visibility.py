"""On the dev server (what the Temporal UI reads): loans are listed and filtered on the contract's
search attributes, kept current as loans move."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from domain.models import PaymentReceived
from workflows import CollectionWorkflow
from tests.harness import loan_input, running_worker


async def _ids(client, query: str, expect: set[str], timeout: float = 15.0) -> set[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = {wf.id async for wf in client.list_workflows(query)}
        if expect <= found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_loans_filter_by_stage_state_dpd_and_amount(dev_env, tmp_path):
    client = dev_env.client
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    async with running_worker(client, tmp_path) as h:
        legal = await h.start(loan_input("VIS-LEGAL", today=today, dpd=95, principal="20000.00"))
        visit = await h.start(loan_input("VIS-VISIT", today=today, dpd=40))
        paid = await h.start(loan_input("VIS-PAID", today=today, dpd=3))
        await paid.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="P", amount="10000.00"))
        await paid.result()

        assert await _ids(client, 'CollectionStage = "legal"', {legal.id}) >= {legal.id}
        found = await _ids(client, 'CollectionStage = "legal" AND OutstandingAmount > 10000', {legal.id})
        assert legal.id in found and visit.id not in found
        found = await _ids(client, 'CollectionStage = "visit" AND DaysPastDue >= 31', {visit.id})
        assert visit.id in found and legal.id not in found
        found = await _ids(client, 'CollectionState = "closed" AND LoanId = "VIS-PAID"', {paid.id})
        assert found == {paid.id}
        desc = await legal.describe()
        sa = desc.typed_search_attributes
        assert {p.key.name: p.value for p in sa}["DaysPastDue"] == 95
        for handle in (legal, visit):
            await handle.terminate("test done")
