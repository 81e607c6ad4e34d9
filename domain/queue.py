"""The agents' and agencies' queues as search attributes: one visibility query answers a desk.

A loan writes its open tasks into the search attributes `OpenTasks` (one keyword per task) and
`TaskAgents` (their holders, `unassigned` for the pool) whenever its tasks change, and `AgencyId`
while it is placed; a desk lists its queue with one query (`TaskAgents = 'agent-cn-1'`), every page,
without reading any loan. Pure: the workflow writes with `task_entries`, the portal and the CLI read
with `parse_task_entry`.
"""

from __future__ import annotations

from datetime import datetime

from .base import Stage
from .contract import UNASSIGNED
from .models import OpenTask

SEP = "|"


def task_entries(tasks: list[OpenTask]) -> list[str]:
    """`kind|task_id|holder|team|stage|created_at|due_by|escalations`, one per open task."""
    return [SEP.join([t.kind, t.task_id, t.assigned_to or "", t.team or "", t.stage.value, t.created_at.isoformat(),
                      t.due_by.isoformat() if t.due_by else "", str(t.escalations)]) for t in tasks]


def task_agents(tasks: list[OpenTask]) -> list[str]:
    """Who holds the loan's open tasks (`unassigned` for a task nobody holds yet)."""
    return sorted({t.assigned_to or UNASSIGNED for t in tasks})


def parse_task_entry(entry: str) -> OpenTask:
    kind, task_id, holder, team, stage, created, due, escalations = entry.split(SEP)
    return OpenTask(task_id=task_id, kind=kind, stage=Stage(stage),  # type: ignore[arg-type]
                    created_at=datetime.fromisoformat(created), assigned_to=holder or None, team=team or None,
                    due_by=datetime.fromisoformat(due) if due else None, escalations=int(escalations))
