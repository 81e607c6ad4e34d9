"""The operator's borrower commands (`collections borrower`, `opt-out`, `opt-in`, `flag`, `clear-flag`,
`dispute`, `resolve-dispute`) against a real dev server and a real worker: each command's effect is
checked on the borrower's entity and on the loan, with the operator's id; bad input is refused before
anything is sent (exit 2, field and reason named); an unknown borrower or a loan without a dispute is
a clear error (exit 1)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.service import RPCError

from domain.borrower import BorrowerStatus
from domain.contract import borrower_workflow_id
from domain.models import LoanState
from tests.test_cli_commands import Env, env  # noqa: F401 - the module's worker and CLI runner (a fixture)

pytestmark = pytest.mark.devserver


async def entity(env: Env, borrower_id: str) -> BorrowerStatus | None:
    try:
        return await env.client.get_workflow_handle(borrower_workflow_id(borrower_id)).query(
            "status", result_type=BorrowerStatus)
    except RPCError:
        return None


async def person_until(env: Env, borrower_id: str, check, timeout: float = 20) -> BorrowerStatus:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await entity(env, borrower_id)
        if status is not None and check(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; last: {status}")
        await asyncio.sleep(0.2)


async def test_borrower_status_table_and_json(env: Env):
    loan_id = await env.loan("BS", dpd=12)
    who = f"B-{loan_id}"
    await person_until(env, who, lambda s: s.open_loans == 1)
    code, out, _ = await env.run("borrower", who)
    assert code == 0, out
    assert f"Borrower {who}" in out and loan_id in out and "opted out of" in out and "CN" in out
    code, out, _ = await env.run("borrower", who, "--json")
    assert code == 0
    status = BorrowerStatus.model_validate(json.loads(out))
    assert status.borrower_id == who and status.loans[0]["loan_id"] == loan_id
    code, _, err = await env.run("borrower", f"B-{env.prefix}-nobody")
    assert code == 1 and "no workflow borrower-" in err


async def test_opt_out_and_opt_in_record_the_operator(env: Env, monkeypatch):
    loan_id = await env.loan("OO", dpd=12)
    who = f"B-{loan_id}"
    await person_until(env, who, lambda s: s.open_loans == 1)
    code, _, err = await env.run("opt-out", who, "fax", "--operator", "ops-7")
    assert code == 2 and "channel" in err and "sms, email, voice, call" in err
    monkeypatch.delenv("COLLECTIONS_OPERATOR_ID", raising=False)
    code, _, err = await env.run("opt-out", who, "sms")
    assert code == 2 and "--operator" in err
    code, out, _ = await env.run("opt-out", who, "sms", "--operator", "ops-7")
    assert code == 0 and "opt_out" in out, out
    await person_until(env, who, lambda s: [c.value for c in s.flags.opted_out] == ["sms"])
    status = await env.until(loan_id, lambda s: (s.flags or {}).get("opted_out") == ["sms"])
    change = [e.details for e in status.events if e.kind == "borrower_flag"][-1]
    assert change["change"] == "opt_out" and change["channel"] == "sms" and change["operator_id"] == "ops-7"
    monkeypatch.setenv("COLLECTIONS_OPERATOR_ID", "ops-8")
    assert (await env.run("opt-in", who, "sms"))[0] == 0
    status = await env.until(loan_id, lambda s: (s.flags or {}).get("opted_out") == [])
    assert [e.details for e in status.events if e.kind == "borrower_flag"][-1]["operator_id"] == "ops-8"
    code, _, err = await env.run("opt-out", f"B-{env.prefix}-nobody", "sms", "--operator", "ops-7")
    assert code == 1 and "no open loan" in err


async def test_flags_and_clearing_them(env: Env):
    loan_id = await env.loan("FL", dpd=12)
    who = f"B-{loan_id}"
    await person_until(env, who, lambda s: s.open_loans == 1)
    ops = ("--operator", "ops-7")
    for argv, needle in ((("flag", who, "bankruptcy"), "--reference"),
                         (("flag", who, "bankruptcy", "--reason", "x"), "--reference, not --reason"),
                         (("flag", who, "breathing_space", "--start", "2026-13-01"), "start"),
                         (("flag", who, "breathing_space", "--start", "9999-12-30"), "past the last date"),
                         (("flag", who, "breathing_space", "--start", "2026-01-01", "--days", "0"), "days"),
                         (("flag", who, "cease_contact", "--reason", "  "), "reason"),
                         (("clear-flag", who, "cease_contact", "--reason", ""), "reason")):
        code, _, err = await env.run(*argv, *ops)
        assert code == 2 and needle in err, (argv, err)
    assert (await env.run("flag", who, "cease_contact", "--reason", "asked in writing", *ops))[0] == 0
    start = datetime.now(tz=UTC).astimezone(ZoneInfo(env.zone)).date()
    assert (await env.run("flag", who, "breathing_space", "--start", start.isoformat(), "--days", "30", *ops))[0] == 0
    person = await person_until(env, who, lambda s: s.flags.cease_contact is not None and s.flags.breathing_space)
    assert person.flags.breathing_space.end == start + timedelta(days=30)
    code, out, _ = await env.run("borrower", who)
    assert "asked in writing" in out and start.isoformat() in out
    assert (await env.run("flag", who, "deceased", "--reference", "DC-2026-1", *ops))[0] == 0
    status = await env.until(loan_id, lambda s: s.state == LoanState.PAUSED)
    assert status.flags["deceased"] == "DC-2026-1"
    assert (await env.run("clear-flag", who, "cease_contact", "--reason", "consent given", *ops))[0] == 0
    person = await person_until(env, who, lambda s: s.flags.cease_contact is None)
    cleared = [e.details for e in person.events if e.kind == "flag_changed"][-1]
    assert cleared["signal"] == "clear_flag" and cleared["operator_id"] == "ops-7"
    status = await env.until(loan_id, lambda s: (s.flags or {}).get("cease_contact") is None)
    assert status.flags["deceased"] == "DC-2026-1"


async def test_dispute_and_its_resolution(env: Env):
    loan_id = await env.loan("DS", dpd=12)
    ops = ("--operator", "ops-7")
    code, _, err = await env.run("resolve-dispute", loan_id, "--not-upheld", *ops)
    assert code == 1 and "no dispute is open" in err
    code, _, err = await env.run("dispute", loan_id, "--reason", "", *ops)
    assert code == 2 and "reason" in err
    assert (await env.run("dispute", loan_id, "--reason", "borrower says it was repaid", *ops))[0] == 0
    status = await env.until(loan_id, lambda s: s.dispute is not None)
    opened = [e.details for e in status.events if e.kind == "dispute_opened"][-1]
    assert opened == {"reason": "borrower says it was repaid", "operator_id": "ops-7"}
    code, out, _ = await env.run("resolve-dispute", loan_id, "--not-upheld", "--note", "no such payment", *ops)
    assert code == 0 and "dispute_resolved" in out
    status = await env.until(loan_id, lambda s: s.dispute is None)
    assert status.state == LoanState.COLLECTING
    resolved = [e.details for e in status.events if e.kind == "dispute_resolved"][-1]
    assert resolved == {"upheld": False, "note": "no such payment", "operator_id": "ops-7"}
    with pytest.raises(SystemExit) as exited:  # argparse: one of the two, not both
        await env.run("resolve-dispute", loan_id, "--upheld", "--not-upheld", *ops)
    assert exited.value.code == 2
