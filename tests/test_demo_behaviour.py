"""The demo's pieces that need no server: the sample portfolio, the behaviour engine's decisions,
the behaviour file, and the SMTP sink (a real aiosmtpd server fed by a real SMTP client)."""

from __future__ import annotations

import csv
import smtplib
import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from demo.behaviour import Behaviour, BehaviourBook, Borrower, Pay, ProposePlan, Step, load_behaviours
from demo.run import DEMO_DATA, materialize_portfolio, prepare_state_dir
from cli.intake import CSV_COLUMNS, read_portfolio
from demo.smtp_sink import SmtpSink
from domain.ladder import days_past_due, stage_for_dpd
from domain.models import Balance, Installment, LoanState, PlanStatus, Stage, Status
from domain.policy import Policy, load_policy

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _status(total: str = "1000.00", *, paid: str = "0.00", state: LoanState = LoanState.COLLECTING,
            plan: PlanStatus | None = None, dpd: int = 10) -> Status:
    t = Decimal(total)
    return Status(loan_id="L", state=state, stage=Stage.CALL if state != LoanState.CLOSED else None,
                  days_past_due=dpd, balance=Balance.of(t, Decimal(0), Decimal(0), Decimal(0)),
                  paid_total=Decimal(paid), next_action_at=None, plan=plan)


def _borrower(*steps: dict) -> Borrower:
    return Borrower("L", "test", Behaviour(steps=[Step.model_validate(s) for s in steps]), intake_date=date(2026, 12, 1))


# ---------------------------------------------------------------------------------------------
# Sample portfolio
# ---------------------------------------------------------------------------------------------


def test_sample_portfolio_materializes_to_valid_contract_rows(tmp_path):
    target = tmp_path / "portfolio.csv"
    n = materialize_portfolio(DEMO_DATA / "portfolio.csv", target, today=T0)
    with open(target, encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == list(CSV_COLUMNS)  # exactly the contract's header
    portfolio = read_portfolio(target, load_policy(DEMO_DATA / "policy.toml"))
    assert portfolio.rejected == []
    assert len(portfolio.rows) == n >= 24
    loans = [r.input.loan for r in portfolio.rows]
    dpds = {}
    for loan in loans:
        today = T0.astimezone(ZoneInfo(loan.borrower.timezone)).date()
        dpds[loan.loan_id] = days_past_due(loan.due_date, today)
    values = sorted(dpds.values())
    assert all(l.currency == "CNY" for l in loans)
    assert sum(1 <= d <= 5 for d in values) >= 3
    assert sum(10 <= d <= 20 for d in values) >= 3
    assert values.count(40) == 1
    assert sum(55 <= d <= 65 for d in values) >= 3
    assert sum(85 <= d <= 95 for d in values) >= 3
    policy = Policy()
    assert {stage_for_dpd(policy, d) for d in values} == set(Stage)  # every stage at intake
    zones = {(l.borrower.locale, l.borrower.timezone) for l in loans}
    assert ("zh-CN", "Asia/Shanghai") in zones
    assert {z for _, z in zones} >= {"Europe/London", "America/New_York"}
    assert any(loc == "en" for loc, _ in zones)


def test_materialize_names_a_bad_dpd(tmp_path):
    src = tmp_path / "src.csv"
    src.write_text("loan_id,currency,principal,annual_interest_rate,dpd,borrower_id,name\nX,CNY,1.00,0.1,ten,B,N\n")
    with pytest.raises(ValueError, match=r"line 2, dpd: 'ten'"):
        materialize_portfolio(src, tmp_path / "out.csv")


def test_demo_files_are_valid():
    policy = load_policy(DEMO_DATA / "policy.toml")
    assert policy.day_length_seconds == 1.5
    book = load_behaviours(DEMO_DATA / "behaviours.toml")
    with open(DEMO_DATA / "portfolio.csv", encoding="utf-8") as f:
        portfolio_ids = {row["loan_id"] for row in csv.DictReader(f)}
    assert set(book.loans) <= portfolio_ids
    names = set(book.loans.values())
    assert {"ignore", "plan_keeper", "plan_breaker", "pays_in_two", "pays_soon"} <= names
    assert sum(1 for n in book.loans.values() if n == "plan_breaker") == 1


def test_state_dir_is_recreated_but_a_foreign_folder_is_refused(tmp_path):
    state = tmp_path / "demo"
    prepare_state_dir(state)
    (state / "temporal.db").write_text("old")
    prepare_state_dir(state)
    assert not (state / "temporal.db").exists() and (state / "mail").is_dir() and (state / "outbox").is_dir()
    foreign = tmp_path / "important"
    foreign.mkdir()
    (foreign / "data.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="refusing to delete"):
        prepare_state_dir(foreign)
    assert (foreign / "data.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# Behaviour engine
# ---------------------------------------------------------------------------------------------


def test_steps_wait_for_their_day_and_pay_everything_until_settled():
    b = _borrower({"day": 3, "action": "pay", "amount": "all"})
    assert b.next_actions(_status(), date(2026, 12, 3)) == []  # loan day 2
    [pay] = b.next_actions(_status(), date(2026, 12, 4), clock=10.0)
    assert isinstance(pay, Pay) and pay.amount == Decimal("1000.00") and pay.payment_id == "L-s0-1"
    # Not yet reflected in the status: the borrower waits.
    assert b.next_actions(_status("1000.00"), date(2026, 12, 4), clock=11.0) == []
    # Applied, but a day's interest landed first: pay the rest with a new payment id.
    [rest] = b.next_actions(_status("0.50", paid="1000.00"), date(2026, 12, 5), clock=12.0)
    assert rest.amount == Decimal("0.50") and rest.payment_id == "L-s0-2"
    assert b.next_actions(_status(state=LoanState.CLOSED, total="0.00", paid="1000.50"), date(2026, 12, 5)) == []
    assert b.finished


def test_a_payment_never_reflected_stops_blocking_after_a_while():
    b = _borrower({"day": 0, "action": "pay", "share": "0.40"}, {"day": 0, "action": "pay", "amount": "100.00"})
    [first] = b.next_actions(_status(), date(2026, 12, 1), clock=0.0)
    assert first.amount == Decimal("400.00")
    assert b.next_actions(_status(), date(2026, 12, 1), clock=5.0) == []
    [second] = b.next_actions(_status(), date(2026, 12, 1), clock=30.0)
    assert second.amount == Decimal("100.00")
    assert any("not reflected" in line for line in b.log)


def test_plan_is_proposed_from_the_loans_date_and_installments_paid_on_their_due_dates():
    b = _borrower(
        {"day": 2, "action": "propose_plan", "installments": 3, "interval_days": 7, "first_due_in_days": 5,
         "down_payment_share": "0.10"},
        {"day": 2, "action": "pay_installments"},
    )
    today = date(2026, 12, 3)
    [proposal] = b.next_actions(_status("1000.00"), today)
    assert isinstance(proposal, ProposePlan)
    assert proposal.proposal.first_due_date == today + timedelta(days=5)
    assert proposal.proposal.down_payment == Decimal("100.00")
    schedule = [Installment(due_date=date(2026, 12, 8) + timedelta(days=7 * i), amount=Decimal("300.00"))
                for i in range(3)]
    plan = PlanStatus(plan_number=1, accepted_at=T0, total=Decimal("900.00"), down_payment=Decimal("100.00"),
                      down_payment_paid=False, schedule=schedule, paid_installments=0, paid_amount=Decimal(0),
                      workflow_id="loan-L-plan-1")
    restructuring = _status("1000.00", state=LoanState.RESTRUCTURING, plan=plan)
    [down] = b.next_actions(restructuring, today, clock=1.0)
    assert down.amount == Decimal("100.00") and down.payment_id == "L-plan1-down"
    paid_down = restructuring.model_copy(update={
        "paid_total": Decimal("100.00"), "plan": plan.model_copy(update={"down_payment_paid": True})})
    assert b.next_actions(paid_down, date(2026, 12, 7), clock=2.0) == []  # first installment not due yet
    [i1] = b.next_actions(paid_down, date(2026, 12, 8), clock=3.0)
    assert i1.amount == Decimal("300.00") and i1.payment_id == "L-plan1-i1"
    closed = _status("0.00", paid="1000.00", state=LoanState.CLOSED)
    assert b.next_actions(closed, date(2026, 12, 30)) == [] and b.finished


def test_a_plan_breaker_stops_after_the_installments_it_keeps():
    b = _borrower({"day": 0, "action": "pay_installments", "stop_after": 1})
    schedule = [Installment(due_date=date(2026, 12, 1) + timedelta(days=7 * i), amount=Decimal("100.00"))
                for i in range(3)]
    plan = PlanStatus(plan_number=2, accepted_at=T0, total=Decimal("300.00"), down_payment=Decimal("0.00"),
                      down_payment_paid=True, schedule=schedule, paid_installments=0, paid_amount=Decimal(0),
                      workflow_id="x")
    status = _status("300.00", state=LoanState.RESTRUCTURING, plan=plan)
    [i1] = b.next_actions(status, date(2026, 12, 20), clock=0.0)
    assert i1.payment_id == "L-plan2-i1"
    later = status.model_copy(update={"paid_total": Decimal("100.00"),
                                      "plan": plan.model_copy(update={"paid_installments": 1})})
    assert b.next_actions(later, date(2026, 12, 31), clock=1.0) == []
    # The plan broke: the loan is collecting again and the step is over.
    assert b.next_actions(_status("205.00", paid="100.00"), date(2027, 1, 1), clock=2.0) == []
    assert b.finished


def test_behaviour_file_errors_are_named():
    with pytest.raises(ValueError, match="exactly one of amount"):
        Step.model_validate({"day": 1, "action": "pay"})
    with pytest.raises(ValueError, match="needs installments"):
        Step.model_validate({"day": 1, "action": "propose_plan", "interval_days": 7, "first_due_in_days": 3})
    with pytest.raises(ValueError, match="unknown behaviour"):
        BehaviourBook.model_validate({"behaviours": {}, "loans": {"L": "teleports"}})
    with pytest.raises(ValueError, match="action"):
        Step.model_validate({"day": 1, "action": "dance"})


# ---------------------------------------------------------------------------------------------
# SMTP sink
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smtp_sink_stores_each_message_as_eml(tmp_path):
    port = _free_port()
    with SmtpSink(tmp_path / "mail", "127.0.0.1", port) as sink:
        msg = EmailMessage()
        msg["From"] = "collections@localhost"
        msg["To"] = "zhangsan@example.com"
        msg["Subject"] = "还款提醒 / Payment reminder"
        msg.set_content("您好，张三：您的贷款已逾期 40 天。")
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.send_message(msg)
            smtp.send_message(msg)
        files = sink.messages
    assert len(files) == 2
    text = files[0].read_bytes()
    assert b"X-Sink-Rcpt-To: zhangsan@example.com" in text
    from email import message_from_bytes
    from email.policy import default
    parsed = message_from_bytes(text, policy=default)
    assert parsed["Subject"] == "还款提醒 / Payment reminder"
    assert "逾期 40 天" in parsed.get_content()
    assert not list(Path(tmp_path / "mail").glob(".*.tmp"))


def test_smtp_sink_reports_a_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            SmtpSink(tmp_path / "mail", "127.0.0.1", port).start()


def test_sample_portfolio_command_writes_an_intake_ready_file(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "-m", "cli", "sample-portfolio", "--out", str(out)], cwd=root,
                          env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    portfolio = read_portfolio(out, load_policy(DEMO_DATA / "policy.toml"))
    assert portfolio.rejected == [] and len(portfolio.rows) == 28
