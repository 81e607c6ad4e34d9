"""A real worker for workflow tests: the project's workflows and activities, an aiosmtpd SMTP server
that keeps what it receives, and a local outbox — on a real Temporal server."""

from __future__ import annotations

import asyncio
import os
import email
import socket
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import Message
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from google.protobuf.empty_pb2 import Empty
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import (
    AgencyActivities,
    AgentTaskActivities,
    BorrowerActivities,
    ContactGate,
    WorkflowTrail,
    BureauActivities,
    EmailActivities,
    LegalActivities,
    MessagingActivities,
    Outbox,
    OutboxSmsProvider,
    OutboxVoiceProvider,
)
from domain.contract import COLLECTION_WORKFLOW, borrower_workflow_id, workflow_id
from domain.freshness import as_of_now
from domain.models import CollectionInput, Status
from runtime.config import SmtpSettings
from runtime.links import OptOutLinks
from workflows import WORKFLOWS, CollectionWorkflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Keep:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclass
class Harness:
    client: Client
    task_queue: str
    outbox: Outbox
    mail: _Keep
    outbox_dir: Path
    handles: list[WorkflowHandle] = field(default_factory=list)
    borrowers: set[str] = field(default_factory=set)

    async def start(self, inp: CollectionInput) -> WorkflowHandle:
        handle = await self.client.start_workflow(
            CollectionWorkflow.run, inp, id=workflow_id(inp.loan.loan_id), task_queue=self.task_queue)
        self.handles.append(handle)
        self.borrowers.add(inp.loan.borrower.borrower_id)
        return handle

    def borrower(self, borrower_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(borrower_workflow_id(borrower_id))

    async def status(self, handle: WorkflowHandle) -> Status:
        """The status as of the server's current time, brought forward as the portal and the CLI do."""
        return as_of_now(await handle.query(CollectionWorkflow.status), await server_time(self.client))

    async def raw_status(self, handle: WorkflowHandle) -> Status:
        """The contract's `status` query: the figures as of the loan's last wake (`as_of`)."""
        return await handle.query(CollectionWorkflow.status)

    def emails_to(self, address: str) -> list[Message]:
        return [m for m in self.mail.messages if address in str(m["To"])]


async def server_time(client: Client) -> datetime:
    """The time-skipping server's virtual clock, or the wall clock where the server has no such clock."""
    try:
        resp = await client.test_service.get_current_time(Empty())
    except RPCError:
        return datetime.now(UTC)
    return resp.time.ToDatetime().replace(tzinfo=UTC)


LINK_SECRET = "test-link-secret-0123456789"
PORTAL = "https://portal.bank.example"


def build_activities(outbox: Outbox, smtp_port: int, bot: Any = None, bureau: Any = None,
                     client: Client | None = None, task_queue: str | None = None) -> list[Any]:
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_port, sender="collections@bank.example")
    gate = ContactGate(client, task_queue=task_queue) if client is not None else None
    links = OptOutLinks(LINK_SECRET, PORTAL)
    email_acts = EmailActivities(smtp, outbox, PORTAL, gate=gate, links=links)
    msg = MessagingActivities(OutboxSmsProvider(outbox), OutboxVoiceProvider(outbox), outbox, PORTAL, gate=gate,
                              links=links)
    agents = AgentTaskActivities(outbox, bot=bot, gate=gate)
    agency = AgencyActivities(outbox)
    legal = LegalActivities(outbox, trail=WorkflowTrail(client) if client is not None else None)
    bureau_acts = BureauActivities(outbox, bureau)
    acts = [email_acts.send_email, msg.send_sms, msg.send_voice, agents.create_agent_task, agents.cancel_agent_task,
            agents.reassign_agent_task, agents.close_agent_task, agents.place_bot_call,
            agency.place_with_agency, agency.recall_agency_placement, legal.refer_to_legal,
            bureau_acts.report_to_credit_bureau]
    if gate is not None:
        borrower = BorrowerActivities(gate)
        acts += [borrower.note_borrower, borrower.decide_contact, borrower.tell_conversation]
    return acts


@asynccontextmanager
async def running_worker(client: Client, tmp_path: Path, bot: Any = None, bureau: Any = None) -> AsyncIterator[Harness]:
    keep = _Keep()
    port = free_port()
    controller = Controller(keep, hostname="127.0.0.1", port=port)
    controller.start()
    outbox_dir = tmp_path / "outbox"
    outbox = Outbox(outbox_dir)
    task_queue = f"tq-{uuid.uuid4()}"
    try:
        async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS,
                          activities=build_activities(outbox, port, bot, bureau, client, task_queue)):
            harness = Harness(client=client, task_queue=task_queue, outbox=outbox, mail=keep, outbox_dir=outbox_dir)
            try:
                yield harness
            finally:
                await record_histories(harness)
                await stop_leftovers(harness)
    finally:
        controller.stop()


async def stop_leftovers(h: Harness) -> None:
    """Terminate what a test left running (plans first: the test server mishandles terminating a
    parent whose child still runs), so nothing is left for the next test's skipped time."""
    ids = [wid for handle in h.handles for wid in [f"{handle.id}-plan-{n}" for n in range(1, 4)] + [handle.id]]
    for wid in ids + [borrower_workflow_id(b) for b in sorted(h.borrowers)]:
        if True:
            try:
                desc = await h.client.get_workflow_handle(wid).describe()
                if desc.status is not None and desc.status.name == "RUNNING":
                    await h.client.get_workflow_handle(wid).terminate("test finished")
            except RPCError:
                continue


RECORD_DIR = os.environ.get("COLLECTIONS_RECORD_HISTORIES")


async def record_histories(h: Harness) -> None:
    """With COLLECTIONS_RECORD_HISTORIES=DIR, keep every workflow's history (and its plans') as JSON
    for the replay test, so that a non-deterministic change to workflow code fails CI."""
    if not RECORD_DIR:
        return
    out = Path(RECORD_DIR)
    out.mkdir(parents=True, exist_ok=True)
    ids = [wid for handle in h.handles for wid in [handle.id] + [f"{handle.id}-plan-{n}" for n in range(1, 4)]]
    ids += [borrower_workflow_id(b) for b in sorted(h.borrowers)]
    for wid in ids:
        try:
            history = await h.client.get_workflow_handle(wid).fetch_history()
        except RPCError:
            continue
        (out / f"{wid}.json").write_text(history.to_json())


async def align(env: WorkflowEnvironment, tz: str, at: time = time(10, 0)) -> datetime:
    """Skip the server's clock to the next `at` in zone `tz` so tests never depend on the wall clock."""
    now = (await env.get_current_time()).astimezone(ZoneInfo(tz))
    target = datetime.combine(now.date(), at, tzinfo=ZoneInfo(tz))
    if target <= now:
        target += timedelta(days=1)
    await env.sleep(target - now)
    return (await env.get_current_time()).astimezone(ZoneInfo(tz))


ROSTER = {
    "teams": [
        {"team_id": "cn-collections", "regions": ["Asia/", "上海", "北京"], "agents": ["agent-cn-1", "agent-cn-2"],
         "supervisor": "supervisor-cn"},
        {"team_id": "intl-collections", "regions": [], "agents": ["agent-intl-1", "agent-intl-2"],
         "supervisor": "supervisor-intl"},
    ],
    "agencies": [{"agency_id": "agency-east", "commission_rate": "0.20"},
                 {"agency_id": "agency-west", "commission_rate": "0.25"}],
}
"""The tests' lender: two collector teams and two agencies (a policy must name its own roster)."""


def with_roster(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The policy with the tests' roster where it names none."""
    policy = dict(policy or {})
    agents = dict(policy.get("agents") or {})
    for key, value in ROSTER.items():
        agents.setdefault(key, value)
    policy["agents"] = agents
    return policy


def roster_policy(**fields: Any) -> Any:
    """A Policy with the tests' roster (and any other fields)."""
    from domain.policy import Policy

    return Policy.model_validate(with_roster(fields))


def write_policy(path: Path, **fields: Any) -> Path:
    """A policy file (JSON is TOML-compatible only for flat tables, so this writes TOML) with the roster."""
    lines = [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in fields.items()]
    for team in ROSTER["teams"]:
        lines += ["", "[[agents.teams]]", f'team_id = "{team["team_id"]}"',
                  "regions = [" + ", ".join(f'"{r}"' for r in team["regions"]) + "]",
                  "agents = [" + ", ".join(f'"{a}"' for a in team["agents"]) + "]",
                  f'supervisor = "{team["supervisor"]}"']
    for agency in ROSTER["agencies"]:
        lines += ["", "[[agents.agencies]]", f'agency_id = "{agency["agency_id"]}"',
                  f'commission_rate = "{agency["commission_rate"]}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def loan_input(loan_id: str, *, today: date, dpd: int, principal: str = "10000.00", rate: str = "0.1825",
               tz: str = "Asia/Shanghai", locale: str = "zh-CN", email_addr: str | None = None,
               address: str | None = "上海市浦东新区世纪大道100号", policy: dict[str, Any] | None = None,
               borrower_id: str | None = None, **extra: str) -> CollectionInput:
    body: dict[str, Any] = {
        "loan": {
            "loan_id": loan_id, "currency": "CNY", "principal": principal, "annual_interest_rate": rate,
            "due_date": (today - timedelta(days=dpd)).isoformat(), **extra,
            "borrower": {"borrower_id": borrower_id or f"B-{loan_id}", "name": "张三", "phone": "+8613800000000",
                         "email": email_addr or f"{loan_id.lower()}@example.com", "address": address,
                         "timezone": tz, "locale": locale},
        },
        "policy": with_roster(policy),
    }
    return CollectionInput.model_validate(body)


def events_of(status: Status, kind: str) -> list[Any]:
    return [e for e in status.events if e.kind == kind]


async def event_status(h: Harness, handle: WorkflowHandle, kind: str, count: int = 1, limit: float = 10.0) -> Status:
    """The status once it shows `count` events of `kind` (a test's view of work still in flight);
    the last status read if that never happens within `limit` seconds (the caller's assert says why)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        st = await h.status(handle)
        if len(events_of(st, kind)) >= count or loop.time() > deadline:
            return st
        await asyncio.sleep(0.1)


async def settle() -> None:
    """Give the worker a moment to process what a signal or update started."""
    await asyncio.sleep(0.3)
