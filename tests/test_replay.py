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

FOLDER = Path(__file__).parent / "histories"
HISTORIES = sorted(p for p in FOLDER.rglob("*.json") if "retired" not in p.relative_to(FOLDER).parts)
"""Every history ever recorded: the first ones at the top level (loans from before any generation
marker), then one folder per generation of new loans (`money-v1/`, ...): never deleted. `retired/`
holds histories a deprecated patch no longer replays (docs/versioning.md), kept but not replayed."""


def test_there_are_recorded_histories():
    names = {p.stem for p in HISTORIES}
    # the main scenarios: the ladder, payments, pause, plans kept, broken and paid off early
    for wanted in ("loan-LAD-1", "loan-PAY-1", "loan-PAU-1", "loan-V-40", "loan-PL-OK", "loan-PL-OK-plan-1",
                   "loan-PL-BRK", "loan-PL-BRK-plan-1", "loan-PL-EARLY",
                   # agents (recorded with the agents-v1 patch; the ones above predate it)
                   "loan-SLA-1", "loan-PTP-OK", "loan-PTP-BRK", "loan-WRONG-1", "loan-BOT-NA", "loan-AG-PAY",
                   "loan-AG-ROT", "loan-LEG-1", "loan-LEG-1-plan-1"):
        assert wanted in names


def test_the_newest_generation_guards_the_path_new_loans_take():
    """The code that runs today is replayed too: the newest feature's folder holds every main scenario
    recorded with it (`make record-histories`), the borrower's entity and the plan's child included."""
    from domain.book import FEATURES

    newest = {p.stem for p in (FOLDER / FEATURES[-1]).glob("*.json")}
    for wanted in ("loan-LAD-1", "loan-COST-1", "loan-PAY-1", "loan-V-40", "loan-PL-OK", "loan-PL-OK-plan-1",
                   "loan-PL-BRK", "loan-PL-EARLY", "loan-SLA-1", "loan-PTP-BRK", "loan-AG-PAY", "loan-LEG-1",
                   "loan-CAN-1", "loan-TWO-1", "loan-DSP-1", "loan-BRE-1", "loan-BK-1", "loan-REV-WIN",
                   "loan-REV-PL", "loan-CURE-1", "borrower-B-TWO", "borrower-B-OPT", "borrower-B-CAN"):
        assert wanted in newest, wanted


@pytest.mark.parametrize("path", HISTORIES, ids=[str(p.relative_to(FOLDER)) for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(Settings()))
    await replayer.replay_workflow(history)
