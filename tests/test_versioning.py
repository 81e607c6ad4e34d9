"""Changing workflow code with loans in flight, proven on the real SDK (docs/versioning.md).

The change under test is one a team could plausibly want: "wait a grace period after intake before
the first contact". It adds a durable timer in front of everything CollectionWorkflow did so far,
i.e. it changes the command sequence of every loan already running.

1. Unguarded, the change fails replay of a recorded history (tests/histories/loan-PAY-1.json) with
   NondeterminismError: a deployed worker would wedge every loan in flight.
2. Guarded by `workflow.patched(GRACE_PATCH)`, the same change replays that history cleanly (old
   loans keep the old path) and new loans take the new path: a history recorded on a real server
   carries the patch marker and the timer.
3. The patch is retired in two steps: `workflow.deprecate_patch(GRACE_PATCH)` with the new code
   unconditional replays the new-path history; it must not ship while old-path loans are open (it
   fails the old history), which is why the replay set keeps old histories until they are gone.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import pytest
    from aiosmtpd.controller import Controller
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer, Worker
    from temporalio.workflow import NondeterminismError

    from activities import Outbox
    from domain.book import LoanBook
    from domain.contract import COLLECTION_WORKFLOW, workflow_id
    from domain.models import CollectionInput, PaymentReceived, Status
    from runtime.config import Settings
    from runtime.converter import data_converter
    from tests.harness import build_activities, free_port, loan_input

from workflows import CollectionWorkflow, RestructuringWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = HISTORIES / "loan-PAY-1.json"
GRACE_PATCH = "grace-period-before-first-contact"
GRACE = timedelta(hours=1)


# ---------------------------------------------------------------- three versions of the same workflow
# Each is registered under the production name, as a redeployed worker would be.


@workflow.defn(name=COLLECTION_WORKFLOW)
class UnguardedChange(CollectionWorkflow):
    """The change as a developer might first write it: a new timer, no patch."""

    @workflow.run
    async def run(self, input: CollectionInput, carried: LoanBook | None = None) -> Status:
        if carried is None:
            await workflow.sleep(GRACE)
        return await super().run(input, carried)


@workflow.defn(name=COLLECTION_WORKFLOW)
class PatchedChange(CollectionWorkflow):
    """Step 1 of the procedure: the new code behind workflow.patched, the old path kept."""

    @workflow.run
    async def run(self, input: CollectionInput, carried: LoanBook | None = None) -> Status:
        if carried is None and workflow.patched(GRACE_PATCH):
            await workflow.sleep(GRACE)
        return await super().run(input, carried)


@workflow.defn(name=COLLECTION_WORKFLOW)
class DeprecatedPatch(CollectionWorkflow):
    """Step 2, once no loan on the old path is open: the old path removed, the patch deprecated."""

    @workflow.run
    async def run(self, input: CollectionInput, carried: LoanBook | None = None) -> Status:
        workflow.deprecate_patch(GRACE_PATCH)
        if carried is None:
            await workflow.sleep(GRACE)
        return await super().run(input, carried)


def _replayer(*workflows: type) -> Replayer:
    return Replayer(workflows=[*workflows, RestructuringWorkflow], data_converter=data_converter(Settings()))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _event_types(history: WorkflowHistory) -> list[str]:
    from temporalio.api.enums.v1 import EventType

    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


# ---------------------------------------------------------------- against a recorded loan


def test_the_recorded_history_is_of_the_current_code_and_starts_with_contact():
    history = _history(RECORDED)
    types = _event_types(history)
    assert types[0] == "WORKFLOW_EXECUTION_STARTED"
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == COLLECTION_WORKFLOW
    # The first command of the recorded loan is an activity (its first notice), not a timer.
    first_command = types[types.index("WORKFLOW_TASK_COMPLETED") + 1]
    assert first_command == "ACTIVITY_TASK_SCHEDULED"
    assert "MARKER_RECORDED" not in types


async def test_current_code_replays_the_recorded_loan():
    await _replayer(CollectionWorkflow).replay_workflow(_history(RECORDED))


async def test_an_unguarded_change_fails_replay_with_nondeterminism():
    with pytest.raises(NondeterminismError) as caught:
        await _replayer(UnguardedChange).replay_workflow(_history(RECORDED))
    # The SDK names what went wrong: the code asked for a timer where the history has an activity.
    message = str(caught.value).lower()
    assert "nondetermin" in message
    assert "timer" in message or "activity" in message, message


async def test_the_same_change_behind_patched_replays_the_recorded_loan():
    result = await _replayer(PatchedChange).replay_workflow(_history(RECORDED))
    assert result.replay_failure is None


async def _failures(replayer: Replayer, histories: list[WorkflowHistory]) -> dict[str, Exception]:
    """Replay a batch on one replayer worker: run id -> failure, for those that failed."""

    async def each():
        for history in histories:
            yield history

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    return dict(results.replay_failures)


def _run_id(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.original_execution_run_id


async def test_the_patch_breaks_no_recorded_history_the_current_code_replays():
    """Across the whole replay set (tests/test_replay.py runs it against the current code), the
    patched change replays every history the current code replays: the guard adds no divergence."""
    histories = [_history(p) for p in sorted(HISTORIES.glob("*.json"))]
    histories = [h for h in histories
                 if h.events[0].workflow_execution_started_event_attributes.workflow_type.name == COLLECTION_WORKFLOW]
    assert len(histories) >= 10
    broken_now = await _failures(_replayer(CollectionWorkflow), histories)  # tests/test_replay.py reports these
    compared = [h for h in histories if _run_id(h) not in broken_now]
    assert len(compared) >= 5
    assert await _failures(_replayer(PatchedChange), compared) == {}
    unguarded = await _failures(_replayer(UnguardedChange), compared)
    for history in compared:
        started = history.events[0].workflow_execution_started_event_attributes
        failure = unguarded.get(_run_id(history))
        if started.continued_execution_run_id:
            # A run after continue-as-new carries its book; the change only touches a loan's first
            # run, so such a history replays either way.
            assert failure is None, f"{history.workflow_id}: {failure}"
        else:
            assert isinstance(failure, NondeterminismError), f"{history.workflow_id} replayed the unguarded change"


# ---------------------------------------------------------------- a new loan under the patched code


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


@pytest.fixture(scope="module")
async def patched_history(ts_env, tmp_path_factory) -> WorkflowHistory:
    """A loan started and paid off on a worker that runs PatchedChange: its real history."""
    tmp = tmp_path_factory.mktemp("versioning")
    port = free_port()
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    client = ts_env.client
    task_queue = f"versioning-{uuid.uuid4()}"
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    loan_id = f"VER-{uuid.uuid4().hex[:8]}"
    inp = loan_input(loan_id, today=today, dpd=3, principal="1000.00")
    try:
        async with Worker(client, task_queue=task_queue, workflows=[PatchedChange, RestructuringWorkflow],
                          activities=build_activities(Outbox(tmp / "outbox"), port, client=client,
                                                      task_queue=task_queue)):
            handle = await client.start_workflow(COLLECTION_WORKFLOW, inp, id=workflow_id(loan_id),
                                                 task_queue=task_queue, result_type=Status)
            # Past the grace period: the first notices go out under the new code.
            await ts_env.sleep(GRACE + timedelta(minutes=5))
            before = await handle.query(CollectionWorkflow.status)
            await handle.signal(CollectionWorkflow.payment_received,
                                PaymentReceived(payment_id="P-VER-1", amount=str(before.balance.total)))
            final = await handle.result()
            assert final.outcome is not None and final.outcome.value == "paid_in_full"
            history = await handle.fetch_history()
    finally:
        controller.stop()
    (tmp / f"{handle.id}.json").write_text(history.to_json())
    return history


def _patch_markers(history: WorkflowHistory) -> dict[str, int]:
    """patch id -> index of its MARKER_RECORDED event."""
    found = {}
    for index, event in enumerate(history.events):
        if event.HasField("marker_recorded_event_attributes"):
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                found[json.loads(details["patch-data"].payloads[0].data)["id"]] = index
    return found


async def test_a_new_loan_takes_the_new_path_and_records_the_patch(patched_history):
    types = _event_types(patched_history)
    markers = _patch_markers(patched_history)
    assert GRACE_PATCH in markers, f"no {GRACE_PATCH} marker in {types}"
    # The marker precedes the grace timer, and the timer precedes the first contact.
    timer = types.index("TIMER_STARTED")
    assert markers[GRACE_PATCH] < timer < types.index("ACTIVITY_TASK_SCHEDULED")
    started = patched_history.events[timer].timer_started_event_attributes
    assert started.start_to_fire_timeout.ToTimedelta() == GRACE
    assert GRACE_PATCH not in _patch_markers(_history(RECORDED))


async def test_new_path_history_replays_with_the_patch_and_not_with_the_old_code(patched_history):
    await _replayer(PatchedChange).replay_workflow(patched_history)
    # Rolling the worker back to the old code would wedge the loans started under the patch.
    with pytest.raises(NondeterminismError):
        await _replayer(CollectionWorkflow).replay_workflow(patched_history)


async def test_deprecate_patch_replays_new_histories_but_not_old_ones(patched_history):
    await _replayer(DeprecatedPatch).replay_workflow(patched_history)
    # Deprecating while a loan on the old path is still open is the mistake the procedure forbids.
    with pytest.raises(NondeterminismError):
        await _replayer(DeprecatedPatch).replay_workflow(_history(RECORDED))
