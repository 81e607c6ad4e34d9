"""What a workflow's history costs: events, and Temporal Cloud's billable actions, counted from it.

Billable actions follow Temporal Cloud's published definition (docs.temporal.io, "Temporal Cloud
Actions"), as far as a history shows them: the workflow's start; each activity scheduled and each
retry of it (the started event's attempt - 1); each timer started; each search-attribute upsert
(except the SDK's `TemporalChangeVersion` upserts of patches, which are exempt); each signal this
workflow receives or sends; each child started (two actions: the intent and the start); each update
accepted; the markers of one workflow task (patches, local activities) as one action; a
continue-as-new. Queries and heartbeats are billed too but leave no event: they are not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType

_CHANGE_VERSION = "TemporalChangeVersion"


@dataclass
class HistoryCost:
    events: int = 0
    billable: int = 0
    bytes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, other: HistoryCost) -> HistoryCost:
        return HistoryCost(self.events + other.events, self.billable + other.billable, self.bytes + other.bytes,
                           self.kinds + other.kinds)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "billable_actions": self.billable, "bytes": self.bytes,
                "by_kind": dict(sorted(self.kinds.items()))}


def history_cost(events: list[Any]) -> HistoryCost:
    """Count a history's events (temporalio.api.history.v1.HistoryEvent protos)."""
    cost = HistoryCost()
    marker_tasks: set[int] = set()
    for e in events:
        t = e.event_type
        cost.events += 1
        cost.bytes += e.ByteSize()
        cost.kinds[EventType.Name(t).removeprefix("EVENT_TYPE_")] += 1
        if t in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                 EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                 EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
                 EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
                 EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW):
            cost.billable += 1
        elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            cost.billable += 2
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            cost.billable += max(0, e.activity_task_started_event_attributes.attempt - 1)
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = set(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            if fields - {_CHANGE_VERSION}:
                cost.billable += 1
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            task = e.marker_recorded_event_attributes.workflow_task_completed_event_id
            if task not in marker_tasks:
                marker_tasks.add(task)
                cost.billable += 1
    return cost
