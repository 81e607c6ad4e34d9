"""Reporting a loan's status to the credit bureau: delinquent, restructured, cured, written off.

`CreditBureau` is the interface to the bureau's submission (usually a batch file or an API);
`OutboxCreditBureau`, the embedded default, writes each report to ``<outbox>/bureau.jsonl``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from temporalio import activity

from domain.commands import BureauReport, Receipt

from ._common import stable_id
from ._filing import Filed, file_once
from .outbox import Outbox

CHANNEL = "bureau"
LEDGER_CHANNEL = "bureau_filed"


@runtime_checkable
class CreditBureau(Protocol):
    async def report(self, req: BureauReport) -> Filed:
        """Submit the report (idempotent by ``req.key``); `Filed.reference`: the submission id."""
        ...


class OutboxCreditBureau:
    """The embedded default: reports land in ``bureau.jsonl``."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def report(self, req: BureauReport) -> Filed:
        reference = stable_id("BR", req.key)
        record = {"reference": reference, **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=reference, details={"status": req.status.value}, duplicate=not added)


class BureauActivities:
    """The ``report_to_credit_bureau`` activity."""

    def __init__(self, outbox: Outbox, bureau: CreditBureau | None = None) -> None:
        self.outbox = outbox
        self.bureau: CreditBureau = bureau if bureau is not None else OutboxCreditBureau(outbox)

    @activity.defn(name="report_to_credit_bureau")
    async def report_to_credit_bureau(self, req: BureauReport) -> Receipt:
        return await file_once(
            activity_name="report_to_credit_bureau",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"report {req.status.value} as of {req.as_of.isoformat()}",
            call=lambda: self.bureau.report(req),
        )
