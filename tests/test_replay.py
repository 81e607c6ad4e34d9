"""Replay every recorded history against the current workflow code.

The histories under tests/histories/ were recorded from the workflow tests
(`make record-histories`). A change to workflow code that would make a loan in flight take a
different path fails here: use `workflow.patched(...)` for such changes and keep the old histories.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from runtime.config import Settings
from runtime.converter import data_converter
from workflows import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_recorded_histories():
    names = {p.stem for p in HISTORIES}
    # the main scenarios: the ladder, payments, pause, plans kept, broken and paid off early
    for wanted in ("loan-LAD-1", "loan-PAY-1", "loan-PAU-1", "loan-V-40", "loan-PL-OK", "loan-PL-OK-plan-1",
                   "loan-PL-BRK", "loan-PL-BRK-plan-1", "loan-PL-EARLY",
                   # agents (recorded with the agents-v1 patch; the ones above predate it)
                   "loan-SLA-1", "loan-PTP-OK", "loan-PTP-BRK", "loan-WRONG-1", "loan-BOT-NA", "loan-AG-PAY",
                   "loan-AG-ROT", "loan-LEG-1", "loan-LEG-1-plan-1"):
        assert wanted in names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(Settings()))
    await replayer.replay_workflow(history)
