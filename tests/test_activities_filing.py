"""Agent tasks, agency, legal and credit bureau adapters with the embedded default (the outbox),
through ActivityEnvironment: what lands in the files, once per key."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import (
    AgencyActivities,
    AgentTaskActivities,
    BureauActivities,
    LegalActivities,
    Outbox,
)
from domain.commands import (
    AgencyPlacementRequest,
    AgencyRecall,
    AgentTaskRequest,
    BureauReport,
    LegalReferral,
    TaskCancellation,
)
from domain.models import Balance, Event

def task(**overrides) -> AgentTaskRequest:
    values = dict(
        key="WL-1:call:task:0",
        task_id="T-WL-1-call-0",
        loan_id="WL-1",
        kind="call",
        stage="call",
        borrower_name="张三",
        phone="+8613800000000",
        timezone="Asia/Shanghai",
        locale="zh-CN",
        currency="CNY",
        amount_owed="5030.25",
        days_past_due=8,
        due_by="2026-11-29T18:00:00+08:00",
        team="desk-east",
    )
    values.update(overrides)
    return AgentTaskRequest(**values)


async def test_agent_task_created_and_cancelled_once_each(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = AgentTaskActivities(outbox)
    env = ActivityEnvironment()

    created = await env.run(acts.create_agent_task, task())
    assert created.reference == "T-WL-1-call-0" and created.duplicate is False
    assert (await env.run(acts.create_agent_task, task())).duplicate is True

    cancel = TaskCancellation(key="WL-1:call:cancel:0", task_id="T-WL-1-call-0", loan_id="WL-1", reason="paid_in_full")
    cancelled = await env.run(acts.cancel_agent_task, cancel)
    assert cancelled.reference == "T-WL-1-call-0" and cancelled.duplicate is False
    assert (await env.run(acts.cancel_agent_task, cancel)).duplicate is True

    create_line, cancel_line = outbox.read("agent_tasks")
    assert create_line["action"] == "create"
    assert create_line["key"] == "WL-1:call:task:0"
    assert create_line["task_id"] == "T-WL-1-call-0"
    assert create_line["kind"] == "call" and create_line["phone"] == "+8613800000000"
    assert create_line["amount_owed"] == "5030.25"  # money: a two-place string
    assert create_line["due_by"] == "2026-11-29T18:00:00+08:00"
    assert create_line["team"] == "desk-east"
    assert cancel_line["action"] == "cancel" and cancel_line["reason"] == "paid_in_full"
    assert len(outbox.read("agent_tasks_filed")) == 2


async def test_visit_task_carries_the_address(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    req = task(key="WL-1:visit:0", task_id="T-visit", kind="visit", stage="visit", phone=None, address="上海市浦东新区世纪大道1号")
    await ActivityEnvironment().run(AgentTaskActivities(outbox).create_agent_task, req)
    [line] = outbox.read("agent_tasks")
    assert line["kind"] == "visit" and line["address"] == "上海市浦东新区世纪大道1号" and line["phone"] is None


async def test_agency_placement_and_recall(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = AgencyActivities(outbox)
    env = ActivityEnvironment()
    place = AgencyPlacementRequest(
        key="WL-1:agency:place",
        placement_id="P-WL-1-1",
        loan_id="WL-1",
        agency_id="AG-EAST",
        borrower_name="张三",
        phone="+8613800000000",
        address="上海市",
        currency="CNY",
        amount_owed="5210.00",
        days_past_due=61,
        placed_until=date(2027, 2, 1),
    )
    receipt = await env.run(acts.place_with_agency, place)
    assert receipt.reference == "P-WL-1-1" and receipt.details == {"agency_id": "AG-EAST"}
    assert (await env.run(acts.place_with_agency, place)).duplicate is True
    recall = AgencyRecall(
        key="WL-1:agency:recall", placement_id="P-WL-1-1", loan_id="WL-1", agency_id="AG-EAST", reason="paid_in_full"
    )
    assert (await env.run(acts.recall_agency_placement, recall)).reference == "P-WL-1-1"

    placed, recalled = outbox.read("agency")
    assert placed["action"] == "place" and placed["amount_owed"] == "5210.00"
    assert placed["placed_until"] == "2027-02-01" and placed["days_past_due"] == 61
    assert recalled["action"] == "recall" and recalled["reason"] == "paid_in_full"


async def test_bureau_report(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = BureauActivities(outbox)
    report = BureauReport(
        key="WL-1:bureau:cured",
        loan_id="WL-1",
        borrower_id="B-1",
        status="cured",
        days_past_due=0,
        currency="CNY",
        amount_owed="0",
        as_of=date(2026, 12, 3),
    )
    receipt = await ActivityEnvironment().run(acts.report_to_credit_bureau, report)
    again = await ActivityEnvironment().run(BureauActivities(outbox).report_to_credit_bureau, report)
    assert receipt.reference and receipt.reference.startswith("BR-")
    assert again.duplicate is True and again.reference == receipt.reference
    [line] = outbox.read("bureau")
    assert line["status"] == "cured" and line["amount_owed"] == "0.00" and line["as_of"] == "2026-12-03"
    assert line["reference"] == receipt.reference


def referral(**overrides) -> LegalReferral:
    at = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)
    values = dict(
        key="WL-1:legal:refer",
        case_id="LC-WL-1-1",
        loan_id="WL-1",
        borrower_id="B-0001",
        borrower_name="张三",
        address="上海市浦东新区…",
        currency="CNY",
        balance=Balance.of(Decimal("5000.00"), Decimal("230.14"), Decimal("115.07"), Decimal("50.00")),
        paid_total="300.00",
        due_date=date(2026, 7, 20),
        days_past_due=92,
        events=[
            Event(at=at, kind="intake", details={"stage": "notice"}),
            Event(at=at + timedelta(days=1), kind="notice_sent", details={"channel": "sms", "key": "WL-1:n:0"}),
            Event(at=at + timedelta(days=2), kind="notice_failed", details={"channel": "email", "error": "550 user unknown"}),
            Event(at=at + timedelta(days=9), kind="payment_received", details={"payment_id": "P-1", "amount": "300.00"}),
            Event(
                at=at + timedelta(days=10),
                kind="contact_outcome",
                details={"outcome": "refused", "agent_id": "A-7", "note": "<b>hung up</b> & refused"},
            ),
        ],
    )
    values.update(overrides)
    return LegalReferral(**values)


async def test_legal_referral_writes_the_case_file_as_json_and_html(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = LegalActivities(outbox)
    receipt = await ActivityEnvironment().run(acts.refer_to_legal, referral())
    assert receipt.reference == "LC-WL-1-1" and receipt.duplicate is False

    json_path, html_path = tmp_path / "legal" / "LC-WL-1-1.json", tmp_path / "legal" / "LC-WL-1-1.html"
    assert receipt.details == {"case_file_json": str(json_path), "case_file_html": str(html_path)}

    case = json.loads(json_path.read_text(encoding="utf-8"))
    assert case["case_id"] == "LC-WL-1-1" and case["loan_id"] == "WL-1" and case["borrower_name"] == "张三"
    assert case["balance"] == {
        "principal": "5000.00", "interest": "230.14", "penalty": "115.07", "fees": "50.00", "total": "5395.21"
    }
    assert case["paid_total"] == "300.00" and case["days_past_due"] == 92
    assert [e["kind"] for e in case["events"]] == [
        "intake", "notice_sent", "notice_failed", "payment_received", "contact_outcome"
    ]
    assert [e["details"]["payment_id"] for e in case["payments"]] == ["P-1"]
    assert len(case["contact_history"]) == 4

    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for expected in ("LC-WL-1-1", "WL-1", "张三", "B-0001", "2026-07-20", "92", "CNY 5395.21", "CNY 300.00",
                     "notice_sent", "notice_failed", "550 user unknown", "payment_received", "P-1",
                     "contact_outcome", "refused", "A-7"):
        assert expected in page, expected
    assert "&lt;b&gt;hung up&lt;/b&gt; &amp; refused" in page and "<b>hung up</b>" not in page
    assert "Payments (1)" in page and "Contact attempts, outcomes and notices (4)" in page

    [line] = outbox.read("legal")
    assert line["case_id"] == "LC-WL-1-1" and line["total_owed"] == "5395.21" and line["events"] == 5


async def test_legal_referral_twice_files_once_and_keeps_the_case_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    env = ActivityEnvironment()
    await env.run(LegalActivities(outbox).refer_to_legal, referral())
    html_path = tmp_path / "legal" / "LC-WL-1-1.html"
    before = html_path.read_bytes()
    again = await env.run(LegalActivities(Outbox(tmp_path)).refer_to_legal, referral(events=[]))
    assert again.duplicate is True and again.reference == "LC-WL-1-1"
    assert html_path.read_bytes() == before
    assert len(outbox.read("legal")) == 1


@pytest.mark.parametrize("case_id", ["../escape", "a/b", ".hidden", ""])
async def test_a_case_id_that_cannot_name_a_file_is_refused(tmp_path: Path, case_id: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(LegalActivities(Outbox(tmp_path)).refer_to_legal, referral(case_id=case_id))
    assert caught.value.non_retryable is True and caught.value.type == "InvalidRequest"
    assert "case_id" in caught.value.message
    assert list(tmp_path.iterdir()) == []
