"""Portfolio intake against a real dev server: good rows start, bad rows are reported with line,
field and reason while the rest go in, a second run starts nothing, closed loans never restart,
JSON Lines works, and the `collections intake` command's exit status says whether all went in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowExecutionStatus

from cli import intake as intake_mod
from tests.harness import roster_policy, with_roster, write_policy
from domain import contract
from domain.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
HEADER = "loan_id,currency,principal,interest,penalty,fees,annual_interest_rate,due_date,borrower_id,name,phone,email,address,timezone,locale"

pytestmark = pytest.mark.devserver


def _due(dpd: int, tz: str = "Asia/Shanghai") -> str:
    return (datetime.now(tz=UTC).astimezone(ZoneInfo(tz)).date() - timedelta(days=dpd)).isoformat()


def _prefix() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}"


def _good_rows(p: str) -> list[str]:
    return [
        f"{p}-1,CNY,5000.00,0.00,0.00,0.00,0.1825,{_due(40)},B-1,张三,+8613800000000,zhangsan@example.com,上海市浦东新区,Asia/Shanghai,zh-CN",
        f"{p}-2,CNY,1200.50,10.00,5.00,0.00,0.1825,{_due(3, 'Europe/London')},B-2,Jane Doe,+447700900000,jane@example.co.uk,\"1 High St, London\",Europe/London,en",
        f"{p}-3,CNY,800,,,,0.12,{_due(95)},B-3,李四,,,,,",
    ]


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


async def test_good_rows_start_bad_rows_are_reported_second_run_starts_nothing(dev_env, tmp_path):
    client = dev_env.client
    tq = f"intake-{uuid.uuid4().hex[:8]}"
    p = _prefix()
    good = _good_rows(p)
    bad = [
        f"{p}-B1,CNY,abc,0.00,0.00,0.00,0.1825,{_due(10)},B-9,王五,,,,Asia/Shanghai,zh-CN",          # line 6
        f"{p}-B2,CNY,100.00,0.00,0.00,0.00,0.1825,{_due(10)},B-9,王五,,not-an-email,,Mars/Base,zh-CN",  # line 7
        f"{p}-1,CNY,100.00,0.00,0.00,0.00,0.1825,{_due(10)},B-9,王五,,,,,",                            # line 8: duplicate
        f"{p}-B4,CNY,100.00,0.00",                                                                      # line 9: short
        f"{p}-B5,CNY,100.00,0.00,0.00,0.00,0.1825,2026-02-30,B-9,,,,,,",                                # line 10
    ]
    path = _csv(tmp_path / "portfolio.csv", good[:2] + [""] + [good[2]] + bad)  # line 4 is blank: skipped, still counted
    report = await intake_mod.intake(client, tq, path, policy=roster_policy())

    assert sorted(report.started) == [f"{p}-1", f"{p}-2", f"{p}-3"]
    assert report.already_present == []
    by_line: dict[int, list[intake_mod.Rejection]] = {}
    for r in report.rejected:
        by_line.setdefault(r.line, []).append(r)
    assert set(by_line) == {6, 7, 8, 9, 10}
    assert [(r.field, r.loan_id) for r in by_line[6]] == [("principal", f"{p}-B1")]
    assert "decimal string" in by_line[6][0].reason
    assert {r.field for r in by_line[7]} == {"email", "timezone"}
    assert any("Mars/Base" in r.reason for r in by_line[7])
    assert by_line[8][0].field == "loan_id" and "line 2" in by_line[8][0].reason
    assert "cells" in by_line[9][0].reason
    assert {r.field for r in by_line[10]} == {"due_date", "name"}
    assert report.exit_code == 1

    # The workflow carries the contract's input and the search attributes from the start.
    desc = await client.get_workflow_handle(contract.workflow_id(f"{p}-1")).describe()
    assert desc.workflow_type == contract.COLLECTION_WORKFLOW
    assert desc.task_queue == tq
    sa = desc.typed_search_attributes
    assert sa.get(intake_mod.KEY_LOAN_ID) == f"{p}-1"
    assert sa.get(intake_mod.KEY_STAGE) == "visit"  # 40 DPD starts at visit
    assert sa.get(intake_mod.KEY_STATE) == "collecting"
    assert sa.get(intake_mod.KEY_DPD) == 40
    assert sa.get(intake_mod.KEY_OUTSTANDING) == 5000.0
    sa3 = (await client.get_workflow_handle(contract.workflow_id(f"{p}-3")).describe()).typed_search_attributes
    assert sa3.get(intake_mod.KEY_STAGE) == "legal"

    again = await intake_mod.intake(client, tq, path, policy=roster_policy())
    assert again.started == []
    assert sorted(again.already_present) == [f"{p}-1", f"{p}-2", f"{p}-3"]


async def test_a_closed_loan_is_never_restarted(dev_env, tmp_path):
    client = dev_env.client
    tq = f"intake-{uuid.uuid4().hex[:8]}"
    p = _prefix()
    path = _csv(tmp_path / "p.csv", _good_rows(p)[:1])
    first = await intake_mod.intake(client, tq, path, policy=roster_policy())
    assert first.started == [f"{p}-1"]
    handle = client.get_workflow_handle(contract.workflow_id(f"{p}-1"))
    run_id = (await handle.describe()).run_id
    await handle.terminate(reason="test: loan closed elsewhere")

    second = await intake_mod.intake(client, tq, path, policy=roster_policy())
    assert second.started == [] and second.already_present == [f"{p}-1"]
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.TERMINATED
    assert desc.run_id == run_id


async def test_jsonl_contract_objects_and_flat_rows(dev_env, tmp_path):
    client = dev_env.client
    tq = f"intake-{uuid.uuid4().hex[:8]}"
    p = _prefix()
    nested = {
        "loan": {
            "loan_id": f"{p}-N",
            "currency": "CNY",
            "principal": "5000.00",
            "annual_interest_rate": "0.1825",
            "due_date": _due(12),
            "borrower": {"borrower_id": "B-N", "name": "张三", "timezone": "Asia/Shanghai", "locale": "zh-CN"},
        },
        "policy": with_roster({"day_length_seconds": 60}),
    }
    flat = {"loan_id": f"{p}-F", "currency": "CNY", "principal": "300.00", "annual_interest_rate": "0.1825",
            "due_date": _due(2), "borrower_id": "B-F", "name": "Ann", "timezone": "America/New_York", "locale": "en"}
    float_money = dict(flat, loan_id=f"{p}-X", principal=300.5)
    unknown = dict(flat, loan_id=f"{p}-U", nickname="A")
    lines = [json.dumps(nested, ensure_ascii=False), json.dumps(flat), "{not json", json.dumps(float_money),
             json.dumps(unknown), "[1, 2]"]
    path = tmp_path / "portfolio.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = await intake_mod.intake(client, tq, path, policy=roster_policy(day_length_seconds=30))
    assert sorted(report.started) == [f"{p}-F", f"{p}-N"]
    reasons = {r.line: r for r in report.rejected}
    assert set(reasons) == {3, 4, 5, 6}
    assert "not JSON" in reasons[3].reason
    assert reasons[4].field == "principal" and "not a JSON number" in reasons[4].reason
    assert reasons[5].field == "nickname" and "unknown field" in reasons[5].reason
    assert "JSON object" in reasons[6].reason

    sa = (await client.get_workflow_handle(contract.workflow_id(f"{p}-N")).describe()).typed_search_attributes
    assert sa.get(intake_mod.KEY_STAGE) == "call" and sa.get(intake_mod.KEY_DPD) == 12

    # A row's own policy wins over --policy; rows without one get --policy.
    portfolio = intake_mod.read_portfolio(path, roster_policy(day_length_seconds=30))
    policies = {r.input.loan.loan_id: r.input.policy.day_length_seconds for r in portfolio.rows}
    assert policies == {f"{p}-N": 60, f"{p}-F": 30}


def test_file_level_errors_name_the_problem(tmp_path):
    bad_header = tmp_path / "h.csv"
    bad_header.write_text(HEADER + ",nickname\n", encoding="utf-8")
    with pytest.raises(intake_mod.PortfolioError, match="unknown column.*nickname"):
        intake_mod.read_portfolio(bad_header)
    missing = tmp_path / "m.csv"
    missing.write_text("loan_id,currency\n", encoding="utf-8")
    with pytest.raises(intake_mod.PortfolioError, match="missing column.*principal"):
        intake_mod.read_portfolio(missing)
    xlsx = tmp_path / "x.xlsx"
    xlsx.write_bytes(b"PK")
    with pytest.raises(intake_mod.PortfolioError, match="unknown format"):
        intake_mod.read_portfolio(xlsx)
    with pytest.raises(intake_mod.PortfolioError, match="no such file"):
        intake_mod.read_portfolio(tmp_path / "nope.csv")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


async def test_collections_intake_command_exit_status(dev_env, tmp_path):
    target = dev_env.client.service_client.config.target_host
    tq = f"intake-{uuid.uuid4().hex[:8]}"
    p = _prefix()
    good = _csv(tmp_path / "good.csv", _good_rows(p))
    common = ["--address", target, "--task-queue", tq, "--quiet"]

    # the default policy names no collectors: intake refuses the whole file, saying what to give
    bare = _cli("intake", str(good), *common)
    assert bare.returncode == 2 and "policy.agents.teams is empty" in bare.stderr, bare.stdout + bare.stderr
    common += ["--policy", str(write_policy(tmp_path / "lender.toml"))]

    first = _cli("intake", str(good), *common)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started 3, already present 0, rejected 0" in first.stdout

    again = _cli("intake", str(good), *common)
    assert again.returncode == 0
    assert "started 0, already present 3, rejected 0" in again.stdout

    mixed = _csv(tmp_path / "mixed.csv", [_good_rows(p + "M")[0], f"{p}-Z,CNY,-5.00,0,0,0,0.1825,{_due(5)},B,N,,,,,"])
    out = _cli("intake", str(mixed), *common)
    assert out.returncode == 1
    assert "started 1, already present 0, rejected 1" in out.stdout
    assert "principal" in out.stdout and "greater than 0.00" in out.stdout

    bad_policy = tmp_path / "policy.toml"
    bad_policy.write_text("day_length_seconds = -1\n", encoding="utf-8")
    out = _cli("intake", str(good), *common, "--policy", str(bad_policy))
    assert out.returncode == 2
    assert "day_length_seconds" in out.stderr


async def test_intake_refuses_a_compressed_day_outside_the_demo(dev_env, tmp_path):
    """A policy whose day is not 86400 real seconds is the demo's: `collections intake` refuses it up
    front (--policy: exit 2, nothing started; a row's own: that row rejected, the rest go in)
    unless --demo."""
    target = dev_env.client.service_client.config.target_host
    tq = f"intake-{uuid.uuid4().hex[:8]}"
    p = _prefix()
    common = ["--address", target, "--task-queue", tq, "--quiet"]
    good = _csv(tmp_path / "good.csv", _good_rows(p))
    fast = write_policy(tmp_path / "fast.toml", day_length_seconds=1.5)
    lender = write_policy(tmp_path / "lender.toml")
    env = {k: v for k, v in os.environ.items() if k != "COLLECTIONS_DEMO"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=env | {"PYTHONPATH": str(ROOT), "COLUMNS": "200"})

    out = cli("intake", str(good), "--policy", str(fast), *common)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "policy.day_length_seconds is 1.5" in out.stderr and "--demo" in out.stderr
    assert not [w async for w in dev_env.client.list_workflows(f"TaskQueue = '{tq}'")]

    rows = [{"loan_id": f"{p}-J{n}", "currency": "CNY", "principal": "300.00", "annual_interest_rate": "0.1825",
             "due_date": _due(2), "borrower_id": f"B-J{n}", "name": "Ann", "timezone": "Asia/Shanghai",
             "locale": "zh-CN"} for n in (1, 2)]
    nested = {"loan": {**{k: rows[1][k] for k in ("loan_id", "currency", "principal", "annual_interest_rate",
                                                  "due_date")},
                       "borrower": {"borrower_id": "B-J2", "name": "Ann"}},
              "policy": with_roster({"day_length_seconds": 60})}
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps(rows[0]) + "\n" + json.dumps(nested) + "\n", encoding="utf-8")
    out = cli("intake", str(jsonl), "--policy", str(lender), *common)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "started 1, already present 0, rejected 1" in out.stdout
    assert "policy.day_length_seconds" in out.stdout and f"{p}-J2" in out.stdout

    out = cli("intake", str(jsonl), "--policy", str(lender), "--demo", *common)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started 1, already present 1, rejected 0" in out.stdout
    out = cli("intake", str(good), "--policy", str(fast), *common, "--demo")
    assert out.returncode == 0 and "started 3" in out.stdout
