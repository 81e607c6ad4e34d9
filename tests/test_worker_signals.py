"""`python -m worker` as operators run it: a subprocess against a real dev server; SIGTERM and
SIGINT stop it gracefully with exit status 0; a bad configuration stops it with a clear message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.devserver


def _env(dev_env, tmp_path: Path, task_queue: str, **extra: str) -> dict[str, str]:
    target = dev_env.client.service_client.config.target_host
    env = dict(os.environ)
    env.update(
        TEMPORAL_ADDRESS=target,
        TEMPORAL_NAMESPACE=dev_env.client.namespace,
        COLLECTIONS_TASK_QUEUE=task_queue,
        COLLECTIONS_OUTBOX_DIR=str(tmp_path / "outbox"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


async def _wait_for_poller(client, task_queue: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"worker exited early: {proc.communicate()[1].decode()}"
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the worker never polled its task queue")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_worker_stops_gracefully_on_signal(dev_env, tmp_path, signum):
    task_queue = f"worker-signal-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=_env(dev_env, tmp_path, task_queue),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await _wait_for_poller(dev_env.client, task_queue, proc)
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = await asyncio.to_thread(proc.communicate, timeout=15)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = err.decode()
    assert proc.returncode == 0, log
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
    assert f"task queue '{task_queue}'" in log
    assert f"{signal.Signals(signum).name} received" in log
    assert "worker stopped" in log


def test_worker_refuses_bad_provider_configuration(dev_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=_env(dev_env, tmp_path, "unused", COLLECTIONS_SMS_PROVIDER="webhook"),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "COLLECTIONS_SMS_PROVIDER=webhook needs COLLECTIONS_SMS_WEBHOOK_URL" in proc.stderr.decode()


def test_worker_reports_unreachable_server(tmp_path):
    env = dict(os.environ, TEMPORAL_ADDRESS="127.0.0.1:1", PYTHONPATH=str(ROOT),
               COLLECTIONS_OUTBOX_DIR=str(tmp_path / "outbox"))
    proc = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot connect to Temporal at 127.0.0.1:1" in proc.stderr.decode()


async def test_sigterm_lets_an_in_flight_email_finish(dev_env, tmp_path):
    """SIGTERM while an email is being delivered: the worker waits for it, reports it, then exits 0."""
    import threading
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from aiosmtpd.controller import Controller
    from temporalio.api.enums.v1 import EventType

    from cli.intake import start_loan
    from domain import contract
    from domain.models import Borrower, CollectionInput, Loan
    from tests.harness import roster_policy
    from tests.test_cli_commands import _free_port, _office_hours_zone

    entered = threading.Event()
    delivered: list[bytes] = []

    class SlowMailServer:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
            entered.set()
            await asyncio.sleep(3)
            delivered.append(envelope.original_content)
            return "250 OK"

    smtp_port = _free_port()
    controller = Controller(SlowMailServer(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    task_queue = f"worker-inflight-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(dev_env, tmp_path, task_queue, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port)),
    )
    try:
        await _wait_for_poller(dev_env.client, task_queue, proc)
        zone = _office_hours_zone()
        today = datetime.now(tz=UTC).astimezone(ZoneInfo(zone)).date()
        loan_id = f"INFLIGHT-{uuid.uuid4().hex[:8].upper()}"
        inp = CollectionInput(loan=Loan(
            loan_id=loan_id, currency="CNY", principal="800.00", annual_interest_rate="0.1825",
            due_date=today - timedelta(days=3),
            borrower=Borrower(borrower_id="B-IF", name="Li Lei", email="lilei@example.com", timezone=zone, locale="en"),
        ), policy=roster_policy())
        await start_loan(dev_env.client, task_queue, inp)
        assert await asyncio.to_thread(entered.wait, 30), "no email was attempted"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        controller.stop()
    assert proc.returncode == 0, err.decode()
    # every email the worker had started (the notice, and the credit report warning with it) was finished
    assert delivered and all(b"lilei@example.com" in d for d in delivered)
    scheduled: dict[int, str] = {}
    completed: list[str] = []
    async for event in dev_env.client.get_workflow_handle(contract.workflow_id(loan_id)).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed.append(scheduled[event.activity_task_completed_event_attributes.scheduled_event_id])
    assert completed.count("send_email") == len(delivered), (scheduled, completed)
