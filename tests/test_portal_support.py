"""Shared pieces of the portal tests (no tests here): a real worker with the project's workflows and
activities on the dev server, loans, tokens, and waiting for the workflow to catch up."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities import AgentTaskActivities, Filed, Outbox, OutboxAgentDesk
from domain.commands import AgentTaskRequest
from domain.contract import workflow_id
from domain.models import Status
from portal.auth import mint_token
from portal.config import PortalConfig
from portal.devstaff import DevStaffIssuer
from portal.payments import NOTIFICATION_PATH, signed_headers
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


WEBHOOK_SECRET = "payments-webhook-test-secret-0123456789-abcdef"


@functools.cache
def staff_issuer() -> DevStaffIssuer:
    """The tests' staff identity provider (portal.devstaff, DEV ONLY): one key for every test run of
    this user, kept in the temp folder (made once, atomically)."""
    return DevStaffIssuer.ensure(Path(tempfile.gettempdir()) / f"collections-test-staff-{os.getuid()}")


def portal_config(**values: Any) -> PortalConfig:
    """The portal's configuration in tests: the tests' staff issuer trusted, a known webhook secret."""
    issuer = staff_issuer()
    base: dict[str, Any] = {"staff_jwks": str(issuer.jwks_path), "staff_issuer": issuer.issuer,
                            "staff_audience": issuer.audience, "payments_webhook_secret": WEBHOOK_SECRET}
    return PortalConfig(**(base | values))


def token(sub: str, role: str = "borrower", ttl: int = 600, **extra: Any) -> str:
    """A borrower's HS256 token; for a staff role, a staff token from the tests' identity provider."""
    if role == "borrower":
        return mint_token(SECRET, sub, role, ttl, **extra)
    return staff_issuer().token(sub, role, ttl_seconds=ttl, **extra)


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
                         policy: dict[str, Any] | None = None, **extra: Any) -> WorkflowHandle[Any, Any]:
        inp = loan_input(loan_id, today=today(), dpd=dpd, principal=principal, policy=policy or ALWAYS_OPEN, tz=TZ,
                         **extra)
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


def notification(loan_id: str, payment_id: str, amount: str, *, kind: str = "payment.succeeded",
                 currency: str = "CNY", reason: str | None = None, **fields: Any) -> bytes:
    """A payment provider's notification body (portal.payments.notifications), as raw bytes."""
    now = datetime.now(ZoneInfo(TZ)).isoformat()
    body: dict[str, Any] = {"type": kind, "notification_id": f"evt-{uuid.uuid4().hex[:8]}", "provider": "test",
                            "payment_id": payment_id, "loan_id": loan_id, "amount": amount, "currency": currency}
    if kind == "payment.succeeded":
        body["paid_at"] = now
    else:
        body |= {"reversed_at": now, "reason": reason or "returned by the bank"}
    return json.dumps(body | fields).encode("utf-8")


async def notify(http: httpx.AsyncClient, loan_id: str, payment_id: str, amount: str, *,
                 secret: str = WEBHOOK_SECRET, at: float | None = None, **options: Any) -> httpx.Response:
    """POST a notification signed as the contract says (X-Timestamp, X-Signature) to the portal."""
    body = notification(loan_id, payment_id, amount, **options)
    return await http.post(NOTIFICATION_PATH, content=body, headers=signed_headers(secret.encode(), body, now=at))


@asynccontextmanager
async def serve(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """The app under uvicorn on 127.0.0.1 (real HTTP), on `port` or a free one; its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


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


def workflow_has(signal: str | None = None, update: str | None = None) -> bool:
    """Whether this checkout's CollectionWorkflow handles the signal (and) update: the portal's side of
    a handler the workflow gains in another change is tested as soon as the workflow has it."""
    definition = workflow._Definition.must_from_class(CollectionWorkflow)  # noqa: SLF001 - the SDK's registry
    return (signal is None or signal in definition.signals) and (update is None or update in definition.updates)


REVERSALS = workflow_has(signal="payment_reversed", update="reverse_payment")
"""The workflow's payment_reversed and reverse_payment (contract v2): the lead's, landing on main."""
