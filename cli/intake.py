"""Portfolio intake: one `CollectionWorkflow` per row of a CSV or JSON Lines file, idempotently.

- CSV: the contract's header (`CSV_COLUMNS`, in any order). The optional columns (`interest`,
  `penalty`, `fees`, `phone`, `email`, `address`, `timezone`, `locale`) may be left out or empty;
  a column the contract does not name is refused (nothing is started).
- JSON Lines: each line is the contract's workflow input (`{"loan": {...}, "policy": ...}`) or a flat
  row with the CSV's column names as keys.

Every row is validated with the domain models; a bad row is reported with its line number, field
and reason, and the other rows still go in.

Hostile or broken input is refused at this door, cell by cell, before the domain sees it
(`cell_problem`): bytes that are not UTF-8 (the file is read with `surrogateescape`, so the broken
cell is named, not the whole file), NUL bytes and other control characters, a byte-order mark
inside a cell, a cell over MAX_CELL_CHARS, a row over MAX_ROW_CHARS (a quote never closed runs on
until that limit; the lines after the row's first are read again on their own), a wrong number of
cells, and cells a spreadsheet would run as a formula (CSV injection: a leading `=`, `@`, or `+`/`-`
followed by anything but a number such as a phone number; their full-width forms too). Formula
cells are REFUSED, never neutralised: nothing that starts a formula enters a workflow input, so
nothing we later write out (statuses, CSV exports, reports, notices) can carry one. A UTF-8
byte-order mark at the start of the file is accepted; a UTF-16 or UTF-32 file is refused whole,
saying so. Starting is idempotent: the workflow id is
`loan-<loan_id>`, a loan whose workflow is running or has already ended is left alone (the start is
refused by the server: id conflict policy FAIL, id reuse policy REJECT_DUPLICATE) and counted as
"already present". Run twice, the second run starts nothing.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
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

MAX_CELL_CHARS = 1024
"""Longer than any field of the contract (an address holds at most 500 characters)."""
MAX_ROW_CHARS = 16 * 1024
"""One CSV row (all its physical lines). Past it the row is refused and reading resumes on its next line."""
MAX_JSONL_LINE_CHARS = 256 * 1024
"""One JSON Lines record (it may carry a whole policy)."""

_SURROGATE = re.compile("[\udc80-\udcff]")
"""What `surrogateescape` makes of a byte that is not UTF-8."""
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 controls but tab, line feed and carriage return (an address may span lines), DEL, C1 controls."""
FORMULA_STARTS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
"""What makes a spreadsheet evaluate a cell (OWASP CSV injection), with their full-width forms."""
_PLAIN_NUMBER = re.compile(r"[0-9 ().\-]*")
"""After a leading + or -: a number or a phone number, which a spreadsheet cannot turn into a call."""

KEY_LOAN_ID = SearchAttributeKey.for_keyword(contract.SA_LOAN_ID)
KEY_STAGE = SearchAttributeKey.for_keyword(contract.SA_STAGE)
KEY_STATE = SearchAttributeKey.for_keyword(contract.SA_STATE)
KEY_DPD = SearchAttributeKey.for_int(contract.SA_DPD)
KEY_OUTSTANDING = SearchAttributeKey.for_float(contract.SA_OUTSTANDING)
KEY_BORROWER_ID = SearchAttributeKey.for_keyword(contract.SA_BORROWER_ID)
KEY_DUE_DATE = SearchAttributeKey.for_datetime(contract.SA_DUE_DATE)
KEY_OPEN_TASKS = SearchAttributeKey.for_keyword_list(contract.SA_OPEN_TASKS)


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


def cell_problem(value: str) -> str | None:
    """Why this cell is refused at the door, or None. See the module docstring."""
    if len(value) > MAX_CELL_CHARS:
        return f"{len(value)} characters long; a cell holds at most {MAX_CELL_CHARS}"
    bad = _SURROGATE.search(value)
    if bad is not None:
        byte = ord(bad.group()) - 0xDC00
        reason = f"not UTF-8 text (byte 0x{byte:02X} at character {bad.start() + 1})"
        raw = value.encode("utf-8", "surrogateescape")
        try:
            as_gb = raw.decode("gb18030")
        except UnicodeDecodeError:
            as_gb = None
        if as_gb is not None and re.search("[\u4e00-\u9fff]", as_gb):
            reason += f"; it reads as GB18030 ({as_gb.strip()[:40]!r}): save the file as UTF-8"
        else:
            reason += "; save the file as UTF-8"
        return reason
    if "\x00" in value:
        return f"contains a NUL byte (at character {value.index(chr(0)) + 1})"
    control = _CONTROL.search(value)
    if control is not None:
        return f"contains the control character U+{ord(control.group()):04X} (at character {control.start() + 1})"
    if "\ufeff" in value:
        return (f"contains a byte-order mark (U+FEFF at character {value.index(chr(0xFEFF)) + 1}): "
                "two files joined together?")
    text = value.strip()
    if text and text[0] in FORMULA_STARTS and not (text[0] in "+-\uff0b\uff0d" and _PLAIN_NUMBER.fullmatch(text[1:])):
        return (f"starts with {text[0]!r}: a spreadsheet would run it as a formula (CSV injection); "
                "refused, not imported")
    return None


def _string_problems(value: Any, path: str) -> list[tuple[str, str]]:
    """(field, reason) for every string in a JSON value that `cell_problem` refuses."""
    if isinstance(value, str):
        problem = cell_problem(value)
        return [(path, problem)] if problem else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_problems(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_problems(v, f"{path}[{i}]")]
    return []


def decode(data: bytes, where: str = "the file") -> str:
    """The file's text. A UTF-8 byte-order mark is dropped; bytes that are not UTF-8 stay in the
    text as surrogate escapes, so that `cell_problem` names the line and the cell they are in."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise PortfolioError(f"{where}: the file is UTF-32 (it starts with a UTF-32 byte-order mark); save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise PortfolioError(f"{where}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8")
    return data.decode("utf-8-sig", errors="surrogateescape")


class _RowTooLong(Exception):
    """Raised by the line feed inside csv.reader: the record has grown past MAX_ROW_CHARS."""


class _Lines:
    """The file's physical lines fed to csv.reader one at a time, so that a record (which may span
    lines inside quotes) can be stopped at MAX_ROW_CHARS and reading can resume after its first line."""

    def __init__(self, text: str) -> None:
        self.lines = list(io.StringIO(text, newline=""))  # split at \n, \r\n and \r, ends kept
        self.pos = 0
        self.chars = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        line = self.lines[self.pos]
        if self.chars + len(line) > MAX_ROW_CHARS:
            raise _RowTooLong
        self.pos += 1
        self.chars += len(line)
        return line

    def restart(self, pos: int) -> Any:
        """A csv reader from physical line `pos` on. Strict: a quote never closed before the end of
        the file, or text after a closing quote, is an error for that row, not silently absorbed."""
        self.pos = pos
        self.chars = 0
        return csv.reader(self, strict=True)


def _broken_row(feed: _Lines, start: int, header: list[str], error: Exception) -> Rejection:
    """The rejection of the record that starts at physical line `start` and could not be read:
    past MAX_ROW_CHARS (`_RowTooLong`), or not CSV (csv.Error: a quote never closed before the end
    of the file, text after a closing quote). The cell it broke in is named."""
    seen = "".join(feed.lines[start:feed.pos + 1])[:MAX_ROW_CHARS + 1]
    if isinstance(error, csv.Error) and "end of data" not in str(error):
        column = _cell_with_text_after_quote(seen)
    else:  # the cell being read when the row ran out: the last one a lenient parse sees
        column = len(next(csv.reader(io.StringIO(seen, newline="")), [""])) - 1
    field_name = header[column] if column < len(header) else f"cell {column + 1}"
    spans = min(feed.pos + 1, len(feed.lines)) - start
    if isinstance(error, _RowTooLong) and spans == 1:
        reason = f"the row is {len(feed.lines[start])} characters long; a row holds at most {MAX_ROW_CHARS}"
    elif isinstance(error, _RowTooLong):
        reason = (f"the row runs on over {spans} lines and past {MAX_ROW_CHARS} characters: a quote opened in "
                  f"{field_name} that is never closed? (the lines after this one are read on their own)")
    elif "end of data" in str(error):
        reason = (f"a quote opened in {field_name} is never closed (the lines after this one are read on "
                  "their own)")
    else:
        reason = f"not CSV: {error} (a quote in the middle of a quoted cell is written twice: \"\")"
    return Rejection(line=start + 1, loan_id=None, field=field_name, reason=reason)


def _cell_with_text_after_quote(record: str) -> int:
    """Which cell of `record` has text after its closing quote (`"Bob"x`), the error a strict
    csv reader reports without saying where."""
    index, i, n, at_start = 0, 0, len(record), True
    while i < n:
        if at_start and record[i] == '"':
            i += 1
            while i < n and not (record[i] == '"' and record[i + 1:i + 2] != '"'):
                i += 2 if record[i] == '"' else 1  # "" is a quote inside the cell
            i += 1
            if i < n and record[i] not in ",\r\n":
                return index
            at_start = False
            continue
        if record[i] == ",":
            index, at_start = index + 1, True
        elif record[i] in "\r\n":
            break
        else:
            at_start = False
        i += 1
    return index


def _check_header(header: list[str]) -> None:
    for cell in header:
        if "\x00" in cell:
            raise PortfolioError("line 1: the header holds NUL bytes: is the file UTF-16 without a byte-order mark? "
                                 "Save it as UTF-8")
        if _SURROGATE.search(cell):
            raise PortfolioError(f"line 1: the header is not UTF-8 text ({cell_problem(cell)})")


def read_csv(text: str) -> Portfolio:
    portfolio = Portfolio()
    feed = _Lines(text)
    reader = feed.restart(0)
    try:
        header = next(reader)
    except StopIteration:
        raise PortfolioError("the file is empty: it needs the header line " + ",".join(CSV_COLUMNS)) from None
    except _RowTooLong:
        raise PortfolioError(f"line 1: the header is longer than {MAX_ROW_CHARS} characters; it is "
                             + ",".join(CSV_COLUMNS)) from None
    _check_header(header)
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
    while True:
        start = feed.pos
        feed.chars = 0
        line = start + 1  # the physical line the record starts on
        try:
            cells = next(reader)
        except StopIteration:
            break
        except (_RowTooLong, csv.Error) as exc:
            portfolio.rejected.append(_broken_row(feed, start, header, exc))
            reader = feed.restart(start + 1)
            continue
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            if len(cells) < len(header):
                field_name = header[len(cells)]
                reason = (f"has {len(cells)} cells, the header has {len(header)} columns: "
                          f"{', '.join(header[len(cells):])} missing")
            else:
                field_name = f"cells {len(header) + 1}-{len(cells)}" if len(cells) > len(header) + 1 else f"cell {len(cells)}"
                reason = (f"has {len(cells)} cells, the header has {len(header)} columns: "
                          "a comma inside a cell that is not quoted?")
            portfolio.rejected.append(Rejection(line=line, loan_id=_clean_id(header, cells), field=field_name, reason=reason))
            continue
        problems = [Rejection(line=line, loan_id=_clean_id(header, cells), field=name, reason=problem)
                    for name, cell in zip(header, cells, strict=True) if (problem := cell_problem(cell))]
        if problems:
            portfolio.rejected.extend(problems)
            continue
        _validate(dict(zip(header, cells, strict=True)), line, True, seen, portfolio)
    return portfolio


def _clean_id(header: list[str], cells: list[str]) -> str | None:
    """The row's loan_id for the report, when that cell is there and passes the door."""
    if "loan_id" not in header or header.index("loan_id") >= len(cells):
        return None
    value = cells[header.index("loan_id")]
    return value.strip() or None if cell_problem(value) is None else None


def read_jsonl(text: str) -> Portfolio:
    portfolio = Portfolio()
    seen: dict[str, int] = {}
    # JSON Lines records end at \n (\r\n too); other Unicode line breaks may sit inside strings.
    for number, raw_line in enumerate(text.split("\n"), start=1):
        raw_line = raw_line.removesuffix("\r")
        if len(raw_line) > MAX_JSONL_LINE_CHARS:
            portfolio.rejected.append(Rejection(
                line=number, loan_id=None, field=None,
                reason=f"the line is {len(raw_line)} characters long; a line holds at most {MAX_JSONL_LINE_CHARS}"))
            continue
        stripped = raw_line.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped, parse_float=lambda s: float(s))
        except json.JSONDecodeError as exc:
            outside = cell_problem(stripped) if _SURROGATE.search(stripped) or "\x00" in stripped else None
            portfolio.rejected.append(Rejection(line=number, loan_id=None, field=None,
                                                reason=f"not JSON: {exc.msg}" + (f" ({outside})" if outside else "")))
            continue
        if not isinstance(obj, dict):
            portfolio.rejected.append(
                Rejection(line=number, loan_id=None, field=None, reason="must be a JSON object")
            )
            continue
        flat = "loan" not in obj
        problems = _string_problems(obj, "")
        if problems:
            loan = obj.get("loan") if not flat else obj
            lid = loan.get("loan_id") if isinstance(loan, dict) else None
            lid = lid if isinstance(lid, str) and cell_problem(lid) is None else None
            portfolio.rejected.extend(Rejection(line=number, loan_id=lid, field=name, reason=reason)
                                      for name, reason in problems)
            continue
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
    text = decode(path.read_bytes(), str(path))
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
    if any(r.input.policy is None for r in portfolio.rows):
        gaps = Policy().roster_gaps()
        if gaps:
            raise PortfolioError("the default policy names no collectors and no agencies; give the lender's policy "
                                 "with --policy FILE (docs/policy.md): policy." + "; policy.".join(gaps))
    return _refuse_roster_gaps(portfolio)


def _refuse_roster_gaps(portfolio: Portfolio) -> Portfolio:
    """Rows whose own policy lacks the roster its ladder needs, each refused with the reason."""
    kept: list[Row] = []
    rejected = list(portfolio.rejected)
    for row in portfolio.rows:
        gaps = row.input.policy.roster_gaps() if row.input.policy is not None else []
        if gaps:
            rejected.append(Rejection(line=row.line, loan_id=row.input.loan.loan_id, field="policy.agents",
                                      reason="; ".join(gaps)))
        else:
            kept.append(row)
    return Portfolio(rows=kept, rejected=rejected)


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
        # v2: set once at the start (free: search attributes given at start cost no action)
        SearchAttributePair(KEY_BORROWER_ID, loan.borrower.borrower_id),
        SearchAttributePair(KEY_DUE_DATE, datetime.combine(loan.due_date, time(0),
                                                           tzinfo=ZoneInfo(loan.borrower.timezone))),
    ]
    return TypedSearchAttributes(pairs)


def summary_of(inp: CollectionInput) -> str:
    """The loan's one-line summary in the Temporal UI (no personal data: ids and amounts only)."""
    loan = inp.loan
    return (f"Loan {loan.loan_id} · borrower {loan.borrower.borrower_id} · {loan.currency} {loan.principal:.2f} "
            f"principal, first missed due date {loan.due_date.isoformat()} · "
            f"{(inp.policy.contact.rule_pack if inp.policy else 'CN')} rules")


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
            static_summary=summary_of(inp),
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
