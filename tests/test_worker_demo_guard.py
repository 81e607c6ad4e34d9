"""A worker refuses a loan whose policy compresses time unless it runs in demo mode (runtime.demo,
worker.demo_guard): a real worker (worker.main.run_worker) on the dev server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from domain import contract
from domain.models import Status
from runtime.config import Settings
from runtime.demo import COMPRESSED_DAY_REFUSED, demo_mode
from tests.harness import LINK_SECRET, loan_input
from tests.test_portal_support import ALWAYS_OPEN, today
from worker.main import run_worker

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[1]
COMPRESSED = ALWAYS_OPEN | {"day_length_seconds": 1.5}


async def _start(client, task_queue: str, loan_id: str, policy: dict):  # noqa: ANN001, ANN202
    # As `collections demo` starts them: the contract's input as JSON (a dict inside the workflow).
    body = loan_input(loan_id, today=today(), dpd=3, policy=policy).model_dump(mode="json")
    return await client.start_workflow(contract.COLLECTION_WORKFLOW, body, id=contract.workflow_id(loan_id),
                                       task_queue=task_queue)


async def _with_worker(dev_env, tmp_path: Path, demo: bool | None, body) -> None:  # noqa: ANN001
    task_queue = f"guard-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    settings = Settings(task_queue=task_queue, outbox_dir=tmp_path / "outbox", link_secret=LINK_SECRET)
    worker = asyncio.create_task(run_worker(settings, dev_env.client, stop, demo=demo))
    try:
        await body(task_queue)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_a_compressed_day_fails_its_workflow_outside_the_demo(dev_env, tmp_path, monkeypatch):
    monkeypatch.delenv("COLLECTIONS_DEMO", raising=False)
    run = uuid.uuid4().hex[:6]

    async def body(task_queue: str) -> None:
        fast = await _start(dev_env.client, task_queue, f"GD{run}-fast", COMPRESSED)
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(fast.result(), 30)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == COMPRESSED_DAY_REFUSED and cause.non_retryable
        assert "policy.day_length_seconds is 1.5" in cause.message and "demo" in cause.message
        assert cause.details and cause.details[0]["field"] == "policy.day_length_seconds"
        # a real day (the default, or 86400 said out loud) runs as ever
        for name, policy in (("real", ALWAYS_OPEN | {"day_length_seconds": 86400}), ("default", ALWAYS_OPEN)):
            handle = await _start(dev_env.client, task_queue, f"GD{run}-{name}", policy)
            status = await handle.query(contract.QUERY_STATUS, result_type=Status)
            assert status.state == "collecting"
            await handle.terminate("test done")

    await _with_worker(dev_env, tmp_path, None, body)


async def test_a_compressed_day_runs_in_demo_mode(dev_env, tmp_path):
    run = uuid.uuid4().hex[:6]

    async def body(task_queue: str) -> None:
        handle = await _start(dev_env.client, task_queue, f"GD{run}-demo", COMPRESSED)
        status = await handle.query(contract.QUERY_STATUS, result_type=Status)
        assert status.state == "collecting" and status.stage is not None
        await asyncio.sleep(2)  # a loan day and more: the loop runs on the compressed clock
        assert (await handle.describe()).status.name == "RUNNING"
        await handle.terminate("test done")

    await _with_worker(dev_env, tmp_path, True, body)


def test_demo_mode_switch():
    assert demo_mode({}) is False and demo_mode({"COLLECTIONS_DEMO": "0"}) is False
    assert demo_mode({"COLLECTIONS_DEMO": "1"}) is True and demo_mode({"COLLECTIONS_DEMO": "true"}) is True
    with pytest.raises(ValueError, match="COLLECTIONS_DEMO must be 1 or 0"):
        demo_mode({"COLLECTIONS_DEMO": "maybe"})


def test_python_m_worker_has_a_demo_flag_and_refuses_a_bad_switch(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLLECTIONS_OUTBOX_DIR=str(tmp_path / "outbox"))
    out = subprocess.run([sys.executable, "-m", "worker", "--help"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--demo" in out.stdout
    out = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env | {"COLLECTIONS_DEMO": "maybe"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "COLLECTIONS_DEMO must be 1 or 0" in out.stderr
