"""Shared pieces of the portal tests (no tests here): a real worker with the project's workflows and
activities on the dev server, loans, tokens, and waiting for the workflow to catch up."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities import AgentTaskActivities, Filed, Outbox, OutboxAgentDesk
from domain.commands import AgentTaskRequest
from domain.contract import workflow_id
from domain.models import Status
from portal.auth import mint_token
from tests.harness import _Keep, build_activities, loan_input
from workflows import WORKFLOWS, CollectionWorkflow

SECRET = "portal-test-secret-0123456789-abcdefghijklmnop"


def _midday_zone() -> str:
    """A fixed-offset zone in which it is now about 13:00, so that a contact window every rule pack
    allows is open for hours whatever the wall clock (Etc/GMT signs are inverted: Etc/GMT-8 is +08:00)."""
    offset = (13 - datetime.now(UTC).hour + 12) % 24 - 12  # local = UTC + offset, in -12..+11
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


TZ = _midday_zone()
ALWAYS_OPEN = {"contact": {"rule_pack": "UK", "window_start": "08:00:00", "window_end": "21:00:00",
                           "max_direct_contacts_per_day": 20}}
"""Policy override for loans whose borrower lives in TZ: the widest window a pack allows (a policy may
not widen it), around the borrower's midday, and no daily cap to speak of (the UK pack has none), so
the tests never depend on the wall clock."""

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def today() -> date:
    return datetime.now(ZoneInfo(TZ)).date()


def token(sub: str, role: str = "borrower", ttl: int = 600, **extra: Any) -> str:
    return mint_token(SECRET, sub, role, ttl, **extra)


def bearer(sub: str, role: str = "borrower", **extra: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, role, **extra)}"}


class AssigningDesk(OutboxAgentDesk):
    """An agent desk that gives every task to one agent (as a dialer's routing would)."""

    def __init__(self, outbox: Outbox, agent_id: str) -> None:
        super().__init__(outbox)
        self.agent_id = agent_id

    async def create_task(self, req: AgentTaskRequest) -> Filed:
        filed = await super().create_task(req)
        return Filed(reference=filed.reference, details={**filed.details, "assigned_to": self.agent_id},
                     duplicate=filed.duplicate)


@dataclass
class World:
    client: Client
    task_queue: str
    outbox_dir: Path
    mail: _Keep

    async def start_loan(self, loan_id: str, *, dpd: int, principal: str = "10000.00",
                         **extra: Any) -> WorkflowHandle[Any, Any]:
        inp = loan_input(loan_id, today=today(), dpd=dpd, principal=principal, policy=ALWAYS_OPEN, tz=TZ, **extra)
        return await self.client.start_workflow(
            CollectionWorkflow.run, inp, id=workflow_id(loan_id), task_queue=self.task_queue
        )


@asynccontextmanager
async def portal_worker(client: Client, tmp_path: Path, *, assign_to: str | None = None,
                        task_queue: str | None = None) -> AsyncIterator[World]:
    """The project's workflows and activities (SMTP to a local aiosmtpd, the rest to an outbox)."""
    keep = _Keep()
    port = free_port()
    controller = Controller(keep, hostname="127.0.0.1", port=port)
    controller.start()
    outbox_dir = tmp_path / "outbox"
    outbox = Outbox(outbox_dir)
    tq = task_queue or f"portal-{uuid.uuid4().hex[:8]}"
    activities = build_activities(outbox, port, client=client, task_queue=tq)
    if assign_to is not None:
        desk = AgentTaskActivities(outbox, AssigningDesk(outbox, assign_to))
        activities = [a for a in activities if a.__name__ not in ("create_agent_task", "cancel_agent_task")]
        activities += [desk.create_agent_task, desk.cancel_agent_task]
    try:
        async with Worker(client, task_queue=tq, workflows=WORKFLOWS, activities=activities):
            yield World(client=client, task_queue=tq, outbox_dir=outbox_dir, mail=keep)
    finally:
        controller.stop()


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll `probe` until `check` holds; the last value otherwise (the caller's assert shows it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = await probe()
    while not check(value) and loop.time() < deadline:
        await asyncio.sleep(interval)
        value = await probe()
    assert check(value), f"condition not met within {timeout} s; last value: {value!r}"
    return value


async def status_of(handle: WorkflowHandle[Any, Any]) -> Status:
    return await handle.query("status", result_type=Status)


async def settled_status(handle: WorkflowHandle[Any, Any], quiet_for: float = 1.0, limit: float = 20.0) -> Status:
    """The status once the loan has done what it does on its own for now (its trail still for `quiet_for`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last = await status_of(handle)
    while loop.time() < deadline:
        await asyncio.sleep(quiet_for)
        now = await status_of(handle)
        if now.events == last.events:
            return now
        last = now
    return last
