"""Referral for legal action, with the case file a lawyer needs.

`LegalDesk` is the interface to the bank's legal department or panel firm; `OutboxLegalDesk`, the
embedded default, writes the referral to ``<outbox>/legal.jsonl`` and the case file to
``<outbox>/legal/<case_id>.json`` (everything, machine-readable) and ``<outbox>/legal/<case_id>.html``
(a readable document): borrower, loan, balance, payments, and every contact attempt, outcome and
notice from the loan's audit trail.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from temporalio import activity

from domain.commands import LegalReferral, Receipt
from domain.contract import QUERY_EVENTS
from domain.models import Event
from domain.money import fmt

from ._common import invalid
from ._filing import Filed, file_once
from ._temporal import LazyClient
from .outbox import Outbox

CHANNEL = "legal"
LEDGER_CHANNEL = "legal_filed"
_CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@runtime_checkable
class LegalDesk(Protocol):
    async def refer(self, req: LegalReferral) -> Filed:
        """Open the case (idempotent by ``req.key``); `Filed.reference`: the case id."""
        ...


class OutboxLegalDesk:
    """The embedded default: the referral in ``legal.jsonl``, the case file under ``legal/``."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def case_paths(self, case_id: str) -> tuple[Path, Path]:
        folder = self.outbox.directory / "legal"
        return folder / f"{case_id}.json", folder / f"{case_id}.html"

    async def refer(self, req: LegalReferral) -> Filed:
        json_path, html_path = self.case_paths(req.case_id)
        details = {"case_file_json": str(json_path), "case_file_html": str(html_path)}
        if await self.outbox.contains(CHANNEL, req.key):
            return Filed(reference=req.case_id, details=details, duplicate=True)

        prepared_at = datetime.now(UTC)
        case = case_file(req, prepared_at)
        document = case_file_html(req, prepared_at)
        await asyncio.to_thread(_write_atomic, json_path, json.dumps(case, ensure_ascii=False, indent=2) + "\n")
        await asyncio.to_thread(_write_atomic, html_path, document)

        payments = [e for e in req.events if _is_payment(e)]
        record = {
            "case_id": req.case_id,
            "loan_id": req.loan_id,
            "borrower_id": req.borrower_id,
            "borrower_name": req.borrower_name,
            "currency": req.currency,
            "total_owed": fmt(req.balance.total),
            "paid_total": fmt(req.paid_total),
            "due_date": req.due_date.isoformat(),
            "days_past_due": req.days_past_due,
            "events": len(req.events),
            "payments": len(payments),
            **details,
        }
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.case_id, details=details, duplicate=not added)


class WorkflowTrail(LazyClient):
    """Reads a loan's whole audit trail from its workflow (query `events`, a page at a time): a referral
    carries a reference to the trail, not the trail itself."""

    PAGE = 1000

    async def read(self, workflow_id: str) -> list[Event]:
        handle = (await self.client()).get_workflow_handle(workflow_id)
        events: list[Event] = []
        while True:
            page = await handle.query(QUERY_EVENTS, args=[len(events), self.PAGE], result_type=list[Event])
            events += page
            if len(page) < self.PAGE:
                return events


class LegalActivities:
    """The ``refer_to_legal`` activity."""

    def __init__(self, outbox: Outbox, desk: LegalDesk | None = None, trail: WorkflowTrail | None = None) -> None:
        self.outbox = outbox
        self.desk: LegalDesk = desk if desk is not None else OutboxLegalDesk(outbox)
        self.trail = trail
        """Fetches the audit trail of a referral that carries it by reference (`trail_workflow_id`)."""

    @activity.defn(name="refer_to_legal")
    async def refer_to_legal(self, req: LegalReferral) -> Receipt:
        if not _CASE_ID_RE.match(req.case_id):
            raise invalid(
                f"case_id: {req.case_id!r} must be 1-128 characters of letters, digits, '_', '.' or '-' "
                f"(it names the case file) (key {req.key})"
            )
        if req.trail_workflow_id and not req.events:
            if self.trail is None:
                raise invalid(f"trail_workflow_id: this worker cannot read the trail of {req.trail_workflow_id} "
                              f"(no Temporal client wired to the legal adapter) (key {req.key})")
            req = req.model_copy(update={"events": await self.trail.read(req.trail_workflow_id)})
        return await file_once(
            activity_name="refer_to_legal",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"refer case {req.case_id}",
            call=lambda: self.desk.refer(req),
        )


# --------------------------------------------------------------------------------------------
# The case file
# --------------------------------------------------------------------------------------------


def case_file(req: LegalReferral, prepared_at: datetime) -> dict[str, Any]:
    """The machine-readable case file: the whole referral, money as two-place strings."""
    body = req.model_dump(mode="json", exclude={"key"})
    return {
        "case_id": req.case_id,
        "prepared_at": prepared_at.isoformat(),
        "referral_key": req.key,
        **{k: v for k, v in body.items() if k != "case_id"},
        "payments": [e.model_dump(mode="json") for e in req.events if _is_payment(e)],
        "contact_history": [e.model_dump(mode="json") for e in req.events if not _is_payment(e)],
    }


def case_file_html(req: LegalReferral, prepared_at: datetime) -> str:
    """A readable case file for the legal department: one self-contained HTML document."""
    e = html.escape
    cur = req.currency

    def money(amount: Decimal) -> str:
        return e(f"{cur} {fmt(amount)}")

    def rows(pairs: list[tuple[str, str]]) -> str:
        return "\n".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs)

    def event_rows(events: list[Event]) -> str:
        if not events:
            return '<tr><td colspan="3"><em>None recorded.</em></td></tr>'
        return "\n".join(
            f"<tr><td>{e(ev.at.isoformat())}</td><td>{e(ev.kind)}</td><td>{_details_html(ev.details)}</td></tr>"
            for ev in events
        )

    payments = [ev for ev in req.events if _is_payment(ev)]
    contacts = [ev for ev in req.events if not _is_payment(ev)]
    b = req.balance
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Legal referral {e(req.case_id)}: loan {e(req.loan_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; line-height: 1.4 }}
table {{ border-collapse: collapse; margin-bottom: 1.5em }}
th, td {{ border: 1px solid #999; padding: 0.3em 0.6em; text-align: left; vertical-align: top }}
th {{ background: #eee }}
td.amount {{ text-align: right; font-variant-numeric: tabular-nums }}
ul {{ margin: 0; padding-left: 1.2em }}
</style>
</head>
<body>
<h1>Legal referral: case {e(req.case_id)}</h1>
<p>Prepared {e(prepared_at.isoformat())} by the collections engine (referral key {e(req.key)}).</p>

<h2>Borrower</h2>
<table>
{rows([("Borrower ID", e(req.borrower_id)), ("Name", e(req.borrower_name)), ("Address", e(req.address or "not on file"))])}
</table>

<h2>Loan</h2>
<table>
{rows([("Loan ID", e(req.loan_id)), ("Currency", e(cur)), ("First missed due date", e(req.due_date.isoformat())), ("Days past due", e(str(req.days_past_due)))])}
</table>

<h2>Balance owed</h2>
<table>
<tr><th>Principal</th><td class="amount">{money(b.principal)}</td></tr>
<tr><th>Interest</th><td class="amount">{money(b.interest)}</td></tr>
<tr><th>Penalty interest</th><td class="amount">{money(b.penalty)}</td></tr>
<tr><th>Fees</th><td class="amount">{money(b.fees)}</td></tr>
<tr><th>Total owed</th><td class="amount"><strong>{money(b.total)}</strong></td></tr>
<tr><th>Paid to date</th><td class="amount">{money(req.paid_total)}</td></tr>
</table>

<h2>Payments ({len(payments)})</h2>
<table>
<tr><th>At</th><th>Event</th><th>Details</th></tr>
{event_rows(payments)}
</table>

<h2>Contact attempts, outcomes and notices ({len(contacts)})</h2>
<table>
<tr><th>At</th><th>Event</th><th>Details</th></tr>
{event_rows(contacts)}
</table>
</body>
</html>
"""


def _is_payment(event: Event) -> bool:
    return "payment" in event.kind.lower() and "plan" not in event.kind.lower()


def _details_html(details: dict[str, Any]) -> str:
    if not details:
        return ""
    items = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(_value_text(v))}</li>" for k, v in details.items()
    )
    return f"<ul>{items}</ul>"


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
