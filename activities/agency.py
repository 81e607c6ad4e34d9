"""Placement with an outside collection agency, and its recall.

`Agency` is the interface to the agency's intake (an API, an SFTP drop, a portal);
`OutboxAgency`, the embedded default, writes placements (``"action": "place"``) and recalls
(``"action": "recall"``) to ``<outbox>/agency.jsonl``. A placement carries only what the agency
needs to collect: name, phone, address, amount owed, days past due.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from temporalio import activity

from domain.commands import AgencyPlacementRequest, AgencyRecall, Receipt

from ._filing import Filed, file_once
from .outbox import Outbox

CHANNEL = "agency"
LEDGER_CHANNEL = "agency_filed"


@runtime_checkable
class Agency(Protocol):
    async def place(self, req: AgencyPlacementRequest) -> Filed:
        """Place the account (idempotent by ``req.key``); `Filed.reference`: the placement id."""
        ...

    async def recall(self, req: AgencyRecall) -> Filed:
        """Take the account back from the agency (idempotent by ``req.key``)."""
        ...


class OutboxAgency:
    """The embedded default: placements and recalls land in ``agency.jsonl``."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def place(self, req: AgencyPlacementRequest) -> Filed:
        record = {"action": "place", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.placement_id, details={"agency_id": req.agency_id}, duplicate=not added)

    async def recall(self, req: AgencyRecall) -> Filed:
        record = {"action": "recall", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.placement_id, details={"agency_id": req.agency_id}, duplicate=not added)


class AgencyActivities:
    """The ``place_with_agency`` and ``recall_agency_placement`` activities."""

    def __init__(self, outbox: Outbox, agency: Agency | None = None) -> None:
        self.outbox = outbox
        self.agency: Agency = agency if agency is not None else OutboxAgency(outbox)

    @activity.defn(name="place_with_agency")
    async def place_with_agency(self, req: AgencyPlacementRequest) -> Receipt:
        return await file_once(
            activity_name="place_with_agency",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"place {req.placement_id} with {req.agency_id}",
            call=lambda: self.agency.place(req),
        )

    @activity.defn(name="recall_agency_placement")
    async def recall_agency_placement(self, req: AgencyRecall) -> Receipt:
        return await file_once(
            activity_name="recall_agency_placement",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"recall {req.placement_id} from {req.agency_id}",
            call=lambda: self.agency.recall(req),
        )
