"""Portfolio intake: one `CollectionWorkflow` per row of a CSV or JSON Lines file, idempotently.

- CSV: the contract's header (`CSV_COLUMNS`, in any order). The optional columns (`interest`,
  `penalty`, `fees`, `phone`, `email`, `address`, `timezone`, `locale`) may be left out or empty;
  a column the contract does not name is refused (nothing is started).
- JSON Lines: each line is the contract's workflow input (`{"loan": {...}, "policy": ...}`) or a flat
  row with the CSV's column names as keys.

Every row is validated with the domain models; a bad row is reported with its line number, field
and reason, and the other rows still go in. Starting is idempotent: the workflow id is
`loan-<loan_id>`, a loan whose workflow is running or has already ended is left alone (the start is
refused by the server: id conflict policy FAIL, id reuse policy REJECT_DUPLICATE) and counted as
"already present". Run twice, the second run starts nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain import contract
from domain.ladder import days_past_due, stage_for_dpd
from domain.models import CollectionInput, LoanState
from domain.policy import Policy
from runtime.demo import compressed_day_reason, compresses_time, day_length_of

CSV_COLUMNS: tuple[str, ...] = (
    "loan_id",
    "currency",
    "principal",
    "interest",
    "penalty",
    "fees",
    "annual_interest_rate",
    "due_date",
    "borrower_id",
    "name",
    "phone",
    "email",
    "address",
    "timezone",
    "locale",
)
REQUIRED_COLUMNS: frozenset[str] = frozenset(
    {"loan_id", "currency", "principal", "annual_interest_rate", "due_date", "borrower_id", "name"}
)
LOAN_COLUMNS = ("loan_id", "currency", "principal", "interest", "penalty", "fees", "annual_interest_rate", "due_date")
BORROWER_COLUMNS = ("borrower_id", "name", "phone", "email", "address", "timezone", "locale")

DEFAULT_CONCURRENCY = 32

KEY_LOAN_ID = SearchAttributeKey.for_keyword(contract.SA_LOAN_ID)
KEY_STAGE = SearchAttributeKey.for_keyword(contract.SA_STAGE)
KEY_STATE = SearchAttributeKey.for_keyword(contract.SA_STATE)
KEY_DPD = SearchAttributeKey.for_int(contract.SA_DPD)
KEY_OUTSTANDING = SearchAttributeKey.for_float(contract.SA_OUTSTANDING)


class PortfolioError(ValueError):
    """The file as a whole cannot be read (missing, unknown format, bad header)."""


@dataclass(frozen=True)
class Rejection:
    line: int
    loan_id: str | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.field:
            where += f", {self.field}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Row:
    line: int
    input: CollectionInput


@dataclass
class Portfolio:
    rows: list[Row] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class IntakeReport:
    started: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


# --------------------------------------------------------------------------------------------
# Reading and validating
# --------------------------------------------------------------------------------------------


def _flat_to_input(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat row (CSV columns) as the contract's nested workflow input. Empty cells are absent."""
    loan: dict[str, Any] = {}
    borrower: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
        if value is None:
            continue
        if key in LOAN_COLUMNS:
            loan[key] = value
        elif key in BORROWER_COLUMNS:
            borrower[key] = value
        else:
            extra[key] = value
    loan["borrower"] = borrower
    out: dict[str, Any] = {"loan": loan}
    out.update(extra)  # unknown keys: the model rejects them by name
    return out


def _field_name(loc: tuple[Any, ...], flat: bool) -> str:
    parts = [str(p) for p in loc]
    if flat:
        # Name the CSV column: loan.borrower.email -> email, loan.principal -> principal.
        if parts[:2] == ["loan", "borrower"] and len(parts) > 2:
            return parts[2]
        if parts[:1] == ["loan"] and len(parts) > 1:
            return parts[1]
    return ".".join(parts)


def _rejections(exc: ValidationError, line: int, loan_id: str | None, flat: bool) -> list[Rejection]:
    out = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        name = _field_name(loc, flat) if loc else None
        reason = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            reason = "unknown field (the contract does not name it)"
        elif err.get("type") == "missing":
            reason = "required, missing"
        reason = reason.removeprefix("Value error, ")
        out.append(Rejection(line=line, loan_id=loan_id, field=name, reason=reason))
    return out


def _validate(raw: dict[str, Any], line: int, flat: bool, seen: dict[str, int], portfolio: Portfolio) -> None:
    data = _flat_to_input(raw) if flat else raw
    loan_id = None
    loan = data.get("loan") if isinstance(data, dict) else None
    if isinstance(loan, dict) and isinstance(loan.get("loan_id"), str):
        loan_id = loan["loan_id"]
    try:
        parsed = CollectionInput.model_validate(data)
    except ValidationError as exc:
        portfolio.rejected.extend(_rejections(exc, line, loan_id, flat))
        return
    lid = parsed.loan.loan_id
    if lid in seen:
        portfolio.rejected.append(
            Rejection(line=line, loan_id=lid, field="loan_id", reason=f"duplicate: {lid} is already on line {seen[lid]}")
        )
        return
    seen[lid] = line
    portfolio.rows.append(Row(line=line, input=parsed))


def read_csv(text: str) -> Portfolio:
    portfolio = Portfolio()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise PortfolioError("the file is empty: it needs the header line " + ",".join(CSV_COLUMNS)) from None
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise PortfolioError(
            f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; the header is " + ",".join(CSV_COLUMNS)
        )
    missing = sorted(REQUIRED_COLUMNS - set(header))
    if missing:
        raise PortfolioError(f"line 1: missing column(s) {', '.join(missing)}; the header is " + ",".join(CSV_COLUMNS))
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise PortfolioError(f"line 1: column(s) named twice: {', '.join(dupes)}")
    seen: dict[str, int] = {}
    last_line = reader.line_num
    for cells in reader:
        line = last_line + 1  # the physical line the record starts on
        last_line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            portfolio.rejected.append(
                Rejection(line=line, loan_id=None, field=None,
                          reason=f"has {len(cells)} cells, the header has {len(header)} columns")
            )
            continue
        _validate(dict(zip(header, cells, strict=True)), line, True, seen, portfolio)
    return portfolio


def read_jsonl(text: str) -> Portfolio:
    portfolio = Portfolio()
    seen: dict[str, int] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        stripped = raw_line.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped, parse_float=lambda s: float(s))
        except json.JSONDecodeError as exc:
            portfolio.rejected.append(Rejection(line=number, loan_id=None, field=None, reason=f"not JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            portfolio.rejected.append(
                Rejection(line=number, loan_id=None, field=None, reason="must be a JSON object")
            )
            continue
        flat = "loan" not in obj
        _validate(obj, number, flat, seen, portfolio)
    return portfolio


def refuse_compressed_days(portfolio: Portfolio) -> Portfolio:
    """The portfolio without rows whose policy compresses time (runtime.demo), each reported as a
    rejection of `policy.day_length_seconds`: outside the demo the worker would refuse them anyway."""
    kept: list[Row] = []
    rejected = list(portfolio.rejected)
    for row in portfolio.rows:
        day_length = day_length_of(row.input.policy)
        if compresses_time(day_length):
            rejected.append(Rejection(line=row.line, loan_id=row.input.loan.loan_id,
                                      field="policy.day_length_seconds", reason=compressed_day_reason(day_length)))
        else:
            kept.append(row)
    return Portfolio(rows=kept, rejected=rejected)


def read_portfolio(path: str | Path, policy: Policy | None = None) -> Portfolio:
    """Read and validate a portfolio file. `policy` applies to rows that carry none of their own."""
    path = Path(path)
    if not path.is_file():
        raise PortfolioError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PortfolioError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        portfolio = read_csv(text)
    elif suffix in (".jsonl", ".ndjson"):
        portfolio = read_jsonl(text)
    else:
        raise PortfolioError(f"{path}: unknown format {suffix!r}; use .csv or .jsonl")
    if policy is not None:
        portfolio.rows = [
            r if r.input.policy is not None else Row(r.line, r.input.model_copy(update={"policy": policy}))
            for r in portfolio.rows
        ]
    return portfolio


# --------------------------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------------------------


def initial_search_attributes(inp: CollectionInput, now: datetime | None = None) -> TypedSearchAttributes:
    """The contract's search attributes as they stand at intake (the workflow keeps them current)."""
    loan = inp.loan
    policy = inp.policy or Policy()
    now = now or datetime.now(tz=ZoneInfo("UTC"))
    today = now.astimezone(ZoneInfo(loan.borrower.timezone)).date()
    dpd = days_past_due(loan.due_date, today)
    outstanding = loan.principal + loan.interest + loan.penalty + loan.fees
    pairs = [
        SearchAttributePair(KEY_LOAN_ID, loan.loan_id),
        SearchAttributePair(KEY_STATE, LoanState.COLLECTING.value),
        SearchAttributePair(KEY_STAGE, stage_for_dpd(policy, dpd).value),
        SearchAttributePair(KEY_DPD, dpd),
        SearchAttributePair(KEY_OUTSTANDING, float(outstanding)),
    ]
    return TypedSearchAttributes(pairs)


async def start_loan(client: Client, task_queue: str, inp: CollectionInput) -> bool:
    """Start the loan's workflow; True if started, False if the loan already has one (running or ended)."""
    try:
        await client.start_workflow(
            contract.COLLECTION_WORKFLOW,
            inp,
            id=contract.workflow_id(inp.loan.loan_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(inp),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def start_all(
    client: Client,
    task_queue: str,
    rows: Iterable[Row],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_done: Callable[[Row, str], None] | None = None,
) -> IntakeReport:
    """Start every row, at most `concurrency` at once. Failures other than "already there" are rejections."""
    report = IntakeReport()
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(row: Row) -> None:
        loan_id = row.input.loan.loan_id
        async with semaphore:
            try:
                started = await start_loan(client, task_queue, row.input)
            except RPCError as exc:
                report.rejected.append(
                    Rejection(line=row.line, loan_id=loan_id, field=None, reason=f"Temporal refused the start: {exc.message}")
                )
                outcome = "failed"
            else:
                (report.started if started else report.already_present).append(loan_id)
                outcome = "started" if started else "present"
        if on_done:
            on_done(row, outcome)

    await asyncio.gather(*(one(r) for r in rows))
    return report


async def intake(
    client: Client,
    task_queue: str,
    path: str | Path,
    *,
    policy: Policy | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_done: Callable[[Row, str], None] | None = None,
) -> IntakeReport:
    """Read, validate and start a portfolio file; the report lists what went in and what was refused."""
    portfolio = read_portfolio(path, policy)
    report = await start_all(client, task_queue, portfolio.rows, concurrency=concurrency, on_done=on_done)
    report.rejected = sorted(portfolio.rejected + report.rejected, key=lambda r: (r.line, r.field or ""))
    return report
