"""The operator commands against a real dev server and a real worker (in-process `run_worker`):
each command's effect is checked on the loan's status, bad input is refused before anything is
sent (exit 2, field and reason named), and an unknown or closed loan is a clear error (exit 1)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from temporalio.common import TypedSearchAttributes

from cli import intake as intake_mod
from cli import main as cli_main
from demo.smtp_sink import SmtpSink
from domain import contract
from domain.models import Borrower, CollectionInput, Loan, LoanState, Status
from domain.policy import AgentRules, Policy, Team
from runtime.config import Settings, SmtpSettings
from tests.harness import roster_policy, LINK_SECRET
from worker.main import run_worker

pytestmark = pytest.mark.devserver

ZONES = ["Asia/Shanghai", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Kolkata",
         "Pacific/Auckland", "America/Sao_Paulo", "Europe/Moscow", "Asia/Tokyo", "Pacific/Honolulu"]


def _office_hours_zone() -> str:
    """A zone where it is now between 10:00 and 17:00, so contact and agent work happen at once."""
    now = datetime.now(tz=UTC)
    for zone in ZONES:
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 17:
            return zone
    raise AssertionError("no office-hours zone found")  # pragma: no cover - the list spans the day


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    def __init__(self, dev_env, task_queue: str, prefix: str) -> None:
        self.client = dev_env.client
        self.address = dev_env.client.service_client.config.target_host
        self.task_queue = task_queue
        self.prefix = prefix
        self.zone = _office_hours_zone()

    async def loan(self, suffix: str, dpd: int, principal: str = "1000.00", *, address: str = "上海市",
                   policy: Policy | None = None) -> str:
        loan_id = f"{self.prefix}-{suffix}"
        today = datetime.now(tz=UTC).astimezone(ZoneInfo(self.zone)).date()
        inp = CollectionInput(
            loan=Loan(
                loan_id=loan_id, currency="CNY", principal=principal, annual_interest_rate="0.1825",
                due_date=today - timedelta(days=dpd),
                borrower=Borrower(borrower_id=f"B-{loan_id}", name="张三", phone="+8613800000000",
                                  email="zhangsan@example.com", address=address, timezone=self.zone, locale="zh-CN"),
            ),
            policy=policy or roster_policy(),
        )
        assert await intake_mod.start_loan(self.client, self.task_queue, inp)
        return loan_id

    async def status(self, loan_id: str) -> Status:
        handle = self.client.get_workflow_handle(contract.workflow_id(loan_id))
        return await handle.query(contract.QUERY_STATUS, result_type=Status)

    async def until(self, loan_id: str, check, timeout: float = 20) -> Status:  # noqa: ANN001
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.status(loan_id)
            if check(status):
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not reached; last status {status.model_dump_json(indent=1)}")
            await asyncio.sleep(0.2)

    async def run(self, *argv: str, target: bool = True) -> tuple[int, str, str]:
        """`collections ARGV` in-process (its own event loop, on a thread), output captured."""
        out = Console(file=io.StringIO(), width=200, color_system=None)
        err = Console(file=io.StringIO(), width=200, color_system=None)
        args = [*argv, "--address", self.address, "--task-queue", self.task_queue] if target else list(argv)
        saved = cli_main.console, cli_main.err_console
        cli_main.console, cli_main.err_console = out, err
        try:
            code = await asyncio.to_thread(cli_main.run, args)
        finally:
            cli_main.console, cli_main.err_console = saved
        return code, out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
async def env(dev_env, tmp_path_factory) -> AsyncIterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("cli")
    task_queue = f"cli-{uuid.uuid4().hex[:8]}"
    smtp_port = _free_port()
    sink = SmtpSink(tmp / "mail", "127.0.0.1", smtp_port).start()
    settings = Settings(task_queue=task_queue, outbox_dir=tmp / "outbox",
                        smtp=SmtpSettings(host="127.0.0.1", port=smtp_port), link_secret=LINK_SECRET)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, dev_env.client, stop))
    try:
        yield Env(dev_env, task_queue, f"C{uuid.uuid4().hex[:6].upper()}")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        sink.stop()


async def test_status_table_and_json(env: Env):
    loan_id = await env.loan("S", dpd=40)
    await env.until(loan_id, lambda s: s.stage is not None)
    code, out, _ = await env.run("status", loan_id)
    assert code == 0
    assert f"Loan {loan_id}" in out and "visit" in out and "collecting" in out and "1000.00" in out
    code, out, _ = await env.run("status", loan_id, "--json")
    assert code == 0
    status = Status.model_validate(json.loads(out))
    assert status.loan_id == loan_id and status.days_past_due == 40


async def test_pay_applies_payment_and_bad_amount_is_refused(env: Env):
    loan_id = await env.loan("P", dpd=5)
    code, _, err = await env.run("pay", loan_id, "--payment-id", "P-1", "--amount", "10.001")
    assert code == 2 and "amount" in err and "two places" in err
    code, out, _ = await env.run("pay", loan_id, "--payment-id", "P-1", "--amount", "100.00")
    assert code == 0 and "payment_received" in out
    status = await env.until(loan_id, lambda s: s.paid_total == Decimal("100.00"))
    assert status.state == LoanState.COLLECTING
    # The same payment id again changes nothing.
    assert (await env.run("pay", loan_id, "--payment-id", "P-1", "--amount", "100.00"))[0] == 0
    await asyncio.sleep(0.5)
    assert (await env.status(loan_id)).paid_total == Decimal("100.00")


async def test_pause_and_resume_record_the_operator(env: Env, monkeypatch):
    loan_id = await env.loan("H", dpd=12)
    code, _, err = await env.run("pause", loan_id, "--reason", "", "--operator", "ops-7")
    assert code == 2 and "reason" in err
    # who pulls the lever is required: --operator, or COLLECTIONS_OPERATOR_ID
    monkeypatch.delenv("COLLECTIONS_OPERATOR_ID", raising=False)
    for argv in (("pause", loan_id, "--reason", "x"), ("resume", loan_id), ("write-off", loan_id, "--reason", "x")):
        code, _, err = await env.run(*argv)
        assert code == 2 and "--operator" in err and "COLLECTIONS_OPERATOR_ID" in err, err
    assert (await env.run("pause", loan_id, "--reason", "borrower in hospital", "--operator", "ops-7"))[0] == 0
    await env.until(loan_id, lambda s: s.state == LoanState.PAUSED)
    monkeypatch.setenv("COLLECTIONS_OPERATOR_ID", "ops-8")
    assert (await env.run("resume", loan_id))[0] == 0
    status = await env.until(loan_id, lambda s: s.state == LoanState.COLLECTING)
    who = {e.kind: e.details.get("operator_id") for e in status.events if e.kind in ("paused", "resumed")}
    assert who == {"paused": "ops-7", "resumed": "ops-8"}


async def test_propose_plan_accepted_then_refused(env: Env):
    loan_id = await env.loan("PL", dpd=20)
    today = datetime.now(tz=UTC).astimezone(ZoneInfo(env.zone)).date()
    code, _, err = await env.run("propose-plan", loan_id, "--installments", "3", "--first-due-date", "2026-13-01",
                                 "--interval-days", "30")
    assert code == 2 and "first_due_date" in err
    first = (today + timedelta(days=10)).isoformat()
    code, out, _ = await env.run("propose-plan", loan_id, "--installments", "3", "--first-due-date", first,
                                 "--interval-days", "30", "--down-payment", "100.00")
    assert code == 0, out
    assert "Plan accepted" in out and first in out
    await env.until(loan_id, lambda s: s.state == LoanState.RESTRUCTURING)
    code, out, _ = await env.run("propose-plan", loan_id, "--installments", "3", "--first-due-date", first,
                                 "--interval-days", "30", "--json")
    assert code == 1
    decision = json.loads(out)
    assert decision["accepted"] is False and decision["reason"] and decision["schedule"] == []


async def test_write_off_closes_and_a_closed_loan_is_a_clear_error(env: Env):
    loan_id = await env.loan("W", dpd=95)
    code, _, err = await env.run("write-off", loan_id, "--reason", "", "--operator", "ops-7")
    assert code == 2
    assert (await env.run("write-off", loan_id, "--reason", "deceased, no estate", "--operator", "ops-7"))[0] == 0
    handle = env.client.get_workflow_handle(contract.workflow_id(loan_id))
    final = Status.model_validate(await asyncio.wait_for(handle.result(), 30))
    assert final.state == LoanState.CLOSED and final.outcome is not None and final.outcome.value == "written_off"
    closed = [e for e in final.events if e.kind == "closed"]
    assert closed[-1].details["operator_id"] == "ops-7"
    code, _, err = await env.run("pay", loan_id, "--payment-id", "late", "--amount", "1.00")
    assert code == 1 and "already ended" in err


async def test_unknown_loan(env: Env):
    code, _, err = await env.run("status", f"{env.prefix}-NOPE")
    assert code == 1 and "no workflow" in err
    code, _, err = await env.run("resume", f"{env.prefix}-NOPE", "--operator", "ops-7")
    assert code == 1 and "no workflow" in err


async def test_record_outcome(env: Env):
    loan_id = await env.loan("R", dpd=10)
    status = await env.until(loan_id, lambda s: any(t.kind == "call" for t in s.open_tasks))
    task = next(t for t in status.open_tasks if t.kind == "call")
    code, _, err = await env.run("record-outcome", loan_id, "--task-id", "no-such-task", "--agent-id", "A-1",
                                 "--outcome", "no_answer")
    assert code == 2 and "'no-such-task' is not an open task" in err
    code, _, err = await env.run("record-outcome", loan_id, "--task-id", task.task_id, "--agent-id", "A-1",
                                 "--outcome", "maybe")
    assert code == 2 and "outcome" in err
    promised = (datetime.now(tz=UTC).astimezone(ZoneInfo(env.zone)).date() + timedelta(days=3)).isoformat()
    code, out, err = await env.run("record-outcome", loan_id, "--task-id", task.task_id, "--agent-id", "A-1",
                                   "--outcome", "promise_to_pay", "--promised-amount", "500.00",
                                   "--promised-date", promised, "--json")
    assert code == 0, err
    after = Status.model_validate(json.loads(out))
    recorded = [e for e in after.events if e.kind == "contact_outcome"]
    assert recorded and recorded[-1].details.get("outcome") == "promise_to_pay", after.events


async def test_list_and_summary_on_visibility(env: Env):
    ids = [await env.loan(f"L{i}", dpd=dpd, principal="200.00") for i, dpd in enumerate((3, 45, 45))]
    only = f"LoanId IN ({', '.join(repr(i) for i in ids)})"
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        code, out, _ = await env.run("list", "--stage", "visit", "--query", only, "--json")
        assert code == 0
        rows = json.loads(out)
        if len(rows) == 2 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.3)
    assert sorted(r["loan_id"] for r in rows) == sorted(ids[1:])
    assert all(r["stage"] == "visit" and r["state"] == "collecting" and r["days_past_due"] == 45 for r in rows)

    code, _, err = await env.run("list", "--stage", "nowhere")
    assert code == 2 and "--stage" in err

    code, out, _ = await env.run("summary", "--query", only, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["loans"] == 3
    groups = {(g["state"], g["stage"]): g for g in summary["groups"]}
    assert groups[("collecting", "visit")]["loans"] == 2
    assert groups[("collecting", "notice")]["loans"] == 1
    assert Decimal(summary["outstanding"]) >= Decimal("600.00")

    code, out, _ = await env.run("summary", "--query", only)
    assert code == 0 and "Portfolio by state and stage" in out


async def test_tasks_by_agent_and_by_team(env: Env):
    """`collections tasks`: open tasks of running loans on the task queue, read from each loan's
    status, filtered by the holder (assigned_to) and the team the policy's regions chose."""
    p = env.prefix.lower()
    policy = roster_policy(agents={"teams": [
        {"team_id": f"{p}-east", "regions": ["上海"], "agents": [f"{p}-agent-e"]},
        {"team_id": f"{p}-west", "regions": [], "agents": [f"{p}-agent-w"]},
    ]})
    east = await env.loan("TE", dpd=10, principal="1500.00", policy=policy)
    west = await env.loan("TW", dpd=12, principal="2500.00", address="10 Downing Street, London", policy=policy)
    quiet = await env.loan("TQ", dpd=3, policy=policy)  # notice stage: no task
    for loan_id in (east, west):
        await env.until(loan_id, lambda s: any(t.kind == "call" for t in s.open_tasks))
    east_task = next(t for t in (await env.status(east)).open_tasks if t.kind == "call")
    assert east_task.assigned_to == f"{p}-agent-e" and east_task.team == f"{p}-east"

    code, out, err = await env.run("tasks", "--agent", f"{p}-agent-e", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["truncated"] is False and listed["unanswered"] == [] and listed["loans_scanned"] >= 1
    assert [(t["loan_id"], t["task_id"]) for t in listed["tasks"]] == [(east, east_task.task_id)]
    task = listed["tasks"][0]
    assert task["kind"] == "call" and task["team"] == f"{p}-east" and task["assigned_to"] == f"{p}-agent-e"
    assert task["days_past_due"] == 10 and Decimal(task["owed"]) >= Decimal("1500.00") and task["due_by"]

    code, out, _ = await env.run("tasks", "--team", f"{p}-west", "--json")
    assert code == 0
    assert [(t["loan_id"], t["assigned_to"], t["days_past_due"]) for t in json.loads(out)["tasks"]] == [
        (west, f"{p}-agent-w", 12)]
    # Both filters must hold; the quiet loan has no task at all.
    code, out, _ = await env.run("tasks", "--team", f"{p}-east", "--agent", f"{p}-agent-w", "--json")
    assert code == 0 and json.loads(out)["tasks"] == []
    assert quiet not in out

    code, out, _ = await env.run("tasks", "--team", f"{p}-east")
    assert code == 0
    assert "1 open task(s) of team" in out and east in out and east_task.task_id in out and f"{p}-agent-e" in out
    assert west not in out

    code, _, err = await env.run("tasks", "--agent", " ")
    assert code == 2 and "--agent" in err

    # A loan that ends takes its tasks with it.
    assert (await env.run("write-off", west, "--reason", "test", "--operator", "ops-7"))[0] == 0
    await asyncio.wait_for(env.client.get_workflow_handle(contract.workflow_id(west)).result(), 30)
    code, out, _ = await env.run("tasks", "--team", f"{p}-west", "--json")
    assert code == 0 and json.loads(out)["tasks"] == []


async def test_tasks_without_a_worker_says_the_list_is_incomplete(env: Env):
    """A loan opened before loans published their tasks (no BorrowerId) is read one by one; on a task
    queue no worker polls it cannot answer: exit 1, the loan named, nothing invented. (Loans that
    publish their tasks are listed from visibility alone, worker or not: test_tasks_by_agent_and_by_team.)"""
    other_queue = f"{env.task_queue}-idle"
    loan_id = f"{env.prefix}-IDLE"
    today = datetime.now(tz=UTC).astimezone(ZoneInfo(env.zone)).date()
    inp = CollectionInput(loan=Loan(
        loan_id=loan_id, currency="CNY", principal="100.00", annual_interest_rate="0.1825",
        due_date=today - timedelta(days=10),
        borrower=Borrower(borrower_id="B-IDLE", name="李四", timezone=env.zone, locale="zh-CN")), policy=roster_policy())
    legacy = [p for p in intake_mod.initial_search_attributes(inp)
              if p.key.name not in (contract.SA_BORROWER_ID, contract.SA_DUE_DATE)]
    await env.client.start_workflow(contract.COLLECTION_WORKFLOW, inp, id=contract.workflow_id(loan_id),
                                    task_queue=other_queue, search_attributes=TypedSearchAttributes(legacy))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # until visibility lists the new loan
            code, out, err = await env.run("tasks", "--json", "--timeout", "1", "--address", env.address,
                                           "--task-queue", other_queue, target=False)
            if code != 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert code == 1, (out, err)
        listed = json.loads(out)
        assert listed["tasks"] == [] and listed["unanswered"] == [loan_id]
        assert "did not answer" in err and loan_id in err
    finally:
        await env.client.get_workflow_handle(contract.workflow_id(loan_id)).terminate("test over")
