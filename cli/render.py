"""Rich renderings of the contract's payloads (status, plan decisions) for the operator's terminal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from domain.models import PlanDecision, Status
from domain.money import fmt

STATE_STYLE = {
    "collecting": "yellow",
    "restructuring": "cyan",
    "paused": "magenta",
    "closed": "green",
}
STAGE_STYLE = {
    "notice": "white",
    "call": "yellow",
    "visit": "dark_orange",
    "agency": "red",
    "legal": "bold red",
}


def styled(value: str | None, styles: dict[str, str]) -> Text:
    if value is None:
        return Text("—", style="dim")
    return Text(value, style=styles.get(value, ""))


def money(amount: Decimal | None, currency: str = "") -> str:
    if amount is None:
        return "—"
    return f"{fmt(amount)} {currency}".strip()


def _details(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        if isinstance(value, (dict, list)):
            continue
        parts.append(f"{key}={value}")
    text = ", ".join(parts)
    return text if len(text) <= 120 else text[:117] + "…"


def status_renderable(status: Status, *, events: int = 10) -> Group:
    """The loan's status: a summary table, its plan, open tasks and the last `events` events."""
    head = Table(title=f"Loan {status.loan_id}", show_header=False, title_justify="left", box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("state", styled(status.state.value, STATE_STYLE))
    head.add_row("stage", styled(status.stage.value if status.stage else None, STAGE_STYLE))
    head.add_row("days past due", str(status.days_past_due))
    b = status.balance
    head.add_row("principal", money(b.principal))
    head.add_row("interest", money(b.interest))
    head.add_row("penalty", money(b.penalty))
    head.add_row("fees", money(b.fees))
    head.add_row("total owed", Text(money(b.total), style="bold"))
    head.add_row("paid", money(status.paid_total))
    head.add_row("next action", status.next_action_at.isoformat() if status.next_action_at else "—")
    head.add_row("outcome", status.outcome.value if status.outcome else "—")
    parts: list[Any] = [head]

    if status.plan is not None:
        plan = status.plan
        pt = Table(
            title=(
                f"Plan #{plan.plan_number}: total {money(plan.total)}, down payment {money(plan.down_payment)}"
                f" ({'paid' if plan.down_payment_paid else 'unpaid'}), paid {money(plan.paid_amount)}"
            ),
            title_justify="left",
        )
        pt.add_column("#", justify="right")
        pt.add_column("due date")
        pt.add_column("amount", justify="right")
        pt.add_column("paid")
        for i, inst in enumerate(plan.schedule, start=1):
            pt.add_row(str(i), inst.due_date.isoformat(), money(inst.amount), "yes" if i <= plan.paid_installments else "")
        parts.append(pt)

    if status.open_tasks:
        tt = Table(title="Open tasks", title_justify="left")
        for col in ("task", "kind", "stage", "created", "assigned to", "due by"):
            tt.add_column(col)
        for t in status.open_tasks:
            tt.add_row(
                t.task_id,
                t.kind,
                t.stage.value,
                t.created_at.isoformat(timespec="seconds"),
                t.assigned_to or "—",
                t.due_by.isoformat(timespec="seconds") if t.due_by else "—",
            )
        parts.append(tt)

    if events and status.events:
        shown = status.events[-events:]
        et = Table(
            title=f"Events (last {len(shown)} of {len(status.events)})",
            title_justify="left",
        )
        et.add_column("at")
        et.add_column("kind")
        et.add_column("details")
        for e in shown:
            et.add_row(e.at.isoformat(timespec="seconds"), e.kind, _details(e.details))
        parts.append(et)
    return Group(*parts)


def decision_renderable(decision: PlanDecision) -> Group:
    if not decision.accepted:
        return Group(Text(f"Plan refused: {decision.reason}", style="bold red"))
    table = Table(title="Plan accepted", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("due date")
    table.add_column("amount", justify="right")
    for i, inst in enumerate(decision.schedule, start=1):
        table.add_row(str(i), inst.due_date.isoformat(), money(inst.amount))
    return Group(table)
