"""The portal (`python -m portal`) against a real dev server and a real worker: every status path of
every endpoint, roles, limits, and the process entry points."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from temporalio.client import Client

from domain.models import Status
from portal import create_app
from portal.config import PortalConfig
from runtime.config import Settings
from tests.harness import loan_input
from tests.test_portal_support import (
    SECRET,
    World,
    bearer,
    eventually,
    free_port,
    notify,
    portal_config,
    portal_worker,
    status_of,
    today,
    token,
)
from workflows import CollectionWorkflow

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[1]
AGENT = "A-7"
RUN = uuid.uuid4().hex[:6]
MAIN, OTHER, CLOSING, OPS, PLAN = (f"PT{RUN}-{n}" for n in ("main", "other", "closing", "ops", "plan"))
OWNER = {loan: f"B-{loan}" for loan in (MAIN, OTHER, CLOSING, OPS, PLAN)}  # tests.harness.loan_input's borrower ids


def app_for(client: Client, world: World, **config: object) -> httpx.AsyncClient:
    cfg = portal_config(**({"rate_per_second": 1000, "rate_burst": 1000} | config))
    app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue), client=client, config=cfg)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://portal")


@pytest.fixture(scope="module")
async def world(dev_env, tmp_path_factory):
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("portal"), assign_to=AGENT) as w:
        handles = {
            MAIN: await w.start_loan(MAIN, dpd=10),          # stage call: a call task, held by AGENT
            OTHER: await w.start_loan(OTHER, dpd=3),
            CLOSING: await w.start_loan(CLOSING, dpd=3, principal="100.00"),
            OPS: await w.start_loan(OPS, dpd=3),
            PLAN: await w.start_loan(PLAN, dpd=3),
        }
        await eventually(lambda: status_of(handles[MAIN]), lambda s: len(s.open_tasks) == 1)
        w.handles = handles  # type: ignore[attr-defined]
        yield w


@pytest.fixture(scope="module")
async def api(dev_env, world):
    async with app_for(dev_env.client, world) as http:
        yield http


def fields_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    return {f["field"]: f["reason"] for f in body.get("fields", [])}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert body["message"]
    assert "Traceback" not in response.text
    return body


# ------------------------------------------------------------------------------------------------
# OpenAPI, health


async def test_openapi_document_names_the_contract(api):
    r = await api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert {"/v1/loans/{loan_id}", "/v1/loans/{loan_id}/payments", "/v1/loans/{loan_id}/payment-plans"} <= set(doc["paths"])
    pay = doc["paths"]["/v1/loans/{loan_id}/payments"]["post"]
    assert "202" in pay["responses"] and "422" in pay["responses"] and "401" in pay["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["PaymentRequest"]["additionalProperties"] is False
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    # strict types and bounds, as the validation applies them
    plan = schemas["PaymentPlanProposal"]["properties"]
    assert plan["installments"]["type"] == "integer" and plan["first_due_date"]["format"] == "date"
    assert plan["down_payment"]["pattern"] == "^[0-9]{1,15}(\\.[0-9]{1,2})?$"
    amount = schemas["PaymentRequest"]["properties"]["amount"]
    assert amount["pattern"] == "^[0-9]{1,15}(\\.[0-9]{1,2})?$" and "pattern" in amount["not"]
    notification = doc["paths"]["/v1/payment-notifications"]["post"]
    assert {p["name"] for p in notification["parameters"]} == {"X-Timestamp", "X-Signature"}
    assert "security" not in notification


async def test_healthz_reports_temporal(api, dev_env, world):
    r = await api.get("/healthz")
    assert r.status_code == 200
    assert r.json()["temporal"] == "reachable"

    dead = create_app(Settings(portal_jwt_secret=SECRET, temporal_address=f"127.0.0.1:{free_port()}"),
                      config=PortalConfig(temporal_timeout_seconds=3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dead), base_url="http://p") as http:
        r = await http.get("/healthz")
        assert r.status_code == 503
        assert r.json()["temporal"] == "unreachable"
        # ...and a loan request while Temporal is down is a 503 too, never a 500
        r = await http.get(f"/v1/loans/{MAIN}", headers=bearer(OWNER[MAIN]))
        assert_error(r, 503, "unavailable")
        assert r.headers["retry-after"]


# ------------------------------------------------------------------------------------------------
# 401


def _forged(claims: dict, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


async def test_no_or_bad_token_is_401(api):
    now = int(time.time())
    sub = OWNER[MAIN]
    cases = {
        "no header": {},
        "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "wrong secret": {"Authorization": f"Bearer {_forged({'sub': sub, 'exp': now + 60}, 'x' * 40)}"},
        "expired": {"Authorization": f"Bearer {_forged({'sub': sub, 'exp': now - 300})}"},
        "no exp": {"Authorization": f"Bearer {_forged({'sub': sub})}"},
        "no sub": {"Authorization": f"Bearer {_forged({'exp': now + 60})}"},
        "unknown role": {"Authorization": f"Bearer {_forged({'sub': sub, 'exp': now + 60, 'role': 'admin'})}"},
        "HS512": {"Authorization": f"Bearer {_forged({'sub': sub, 'exp': now + 60}, 'k' * 64, alg='HS512')}"},
        "alg none": {"Authorization": "Bearer " + jwt.encode({"sub": sub, "exp": now + 60}, None, algorithm="none")},
    }
    for name, headers in cases.items():
        for method, path, body in (
            ("GET", f"/v1/loans/{MAIN}", None),
            ("POST", f"/v1/loans/{MAIN}/payments", {"payment_id": "p-401", "amount": "1.00"}),
            ("POST", f"/v1/loans/{MAIN}/payment-plans", {"installments": 3}),
        ):
            r = await api.request(method, path, headers=headers, json=body)
            err = assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer"), name
            assert err["message"], name
    # 401 comes before JSON parsing: broken JSON without a token is still 401
    r = await api.post(f"/v1/loans/{MAIN}/payments", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 401, "unauthorized")
    expired = await api.get(f"/v1/loans/{MAIN}", headers=cases["expired"])
    assert "expired" in expired.json()["message"]


# ------------------------------------------------------------------------------------------------
# reads


async def test_borrower_reads_own_status(api, world):
    r = await api.get(f"/v1/loans/{MAIN}", headers=bearer(OWNER[MAIN]))
    assert r.status_code == 200, r.text
    body = r.json()
    status = Status.model_validate(body)
    assert status.loan_id == MAIN and status.stage == "call" and status.days_past_due == 10
    assert isinstance(body["balance"]["total"], str) and body["balance"]["principal"] == "10000.00"
    assert body["events"], "the borrower sees the loan's audit trail"
    assert r.headers["cache-control"] == "no-store"


async def test_another_borrowers_loan_is_403(api):
    mine = bearer(OWNER[MAIN])
    r = await api.get(f"/v1/loans/{OTHER}", headers=mine)
    assert_error(r, 403, "forbidden")
    r = await api.post(f"/v1/loans/{OTHER}/payments", headers=mine, json={"payment_id": "x", "amount": "1.00"})
    assert_error(r, 403, "forbidden")
    r = await api.post(f"/v1/loans/{OTHER}/payment-plans", headers=mine,
                       json={"installments": 3, "first_due_date": (today() + timedelta(days=5)).isoformat(),
                             "interval_days": 30})
    assert_error(r, 403, "forbidden")
    # a malformed body to someone else's loan is still 403: nothing about the body is revealed
    r = await api.post(f"/v1/loans/{OTHER}/payments", headers=mine, json={"amount": 5})
    assert_error(r, 403, "forbidden")


async def test_unknown_loan_is_404(api):
    missing = f"NOPE-{RUN}"
    r = await api.get(f"/v1/loans/{missing}", headers=bearer("B-anyone"))
    assert_error(r, 404, "not_found")
    r = await api.post(f"/v1/loans/{missing}/payments", headers=bearer("B-anyone"),
                       json={"payment_id": "p", "amount": "1.00"})
    assert_error(r, 404, "not_found")
    r = await api.post(f"/v1/loans/{missing}/payment-plans", headers=bearer("B-anyone"),
                       json={"installments": 3, "first_due_date": today().isoformat(), "interval_days": 30})
    assert_error(r, 404, "not_found")
    for role in ("agent", "operator"):
        r = await api.get(f"/v1/loans/{missing}", headers=bearer("staff-1", role))
        assert_error(r, 404, "not_found")
    r = await api.post(f"/v1/loans/{missing}/pause", headers=bearer("ops-1", "operator"), json={"reason": "x"})
    assert_error(r, 404, "not_found")
    r = await api.get("/v1/nothing-here", headers=bearer("B-anyone"))
    assert_error(r, 404, "not_found")


async def test_malformed_loan_id_is_422(api):
    r = await api.get("/v1/loans/-bad%20id", headers=bearer("B-anyone"))
    body = assert_error(r, 422, "validation_error")
    assert body["fields"][0]["field"] == "loan_id"
    r = await api.get("/v1/loans/" + "L" * 65, headers=bearer("B-anyone"))
    assert fields_of(r).keys() == {"loan_id"}


async def test_roles(api, world):
    borrower, agent, operator = bearer(OWNER[MAIN]), bearer(AGENT, "agent"), bearer("ops-1", "operator")
    # agent: any loan, the working view without the audit trail
    r = await api.get(f"/v1/loans/{OTHER}", headers=agent)
    assert r.status_code == 200
    assert "events" not in r.json() and r.json()["loan_id"] == OTHER and "balance" in r.json()
    # operator: the full status of any loan
    r = await api.get(f"/v1/loans/{OTHER}", headers=operator)
    assert r.status_code == 200 and r.json()["events"]
    # payments and plans are the borrower's own
    for who in (agent, operator):
        r = await api.post(f"/v1/loans/{MAIN}/payments", headers=who, json={"payment_id": "r", "amount": "1.00"})
        assert_error(r, 403, "forbidden")
        r = await api.post(f"/v1/loans/{MAIN}/payment-plans", headers=who, json={})
        assert_error(r, 403, "forbidden")
    # operators' levers are operators' only
    for who in (borrower, agent):
        for lever, body in (("pause", {"reason": "x"}), ("resume", {}), ("write-off", {"reason": "x"})):
            r = await api.post(f"/v1/loans/{MAIN}/{lever}", headers=who, json=body)
            assert_error(r, 403, "forbidden")
    # tasks are agents' only
    for who in (borrower, operator):
        assert_error(await api.get("/v1/tasks", headers=who), 403, "forbidden")
        r = await api.post("/v1/tasks/t-1/outcome", headers=who, json={"loan_id": MAIN, "outcome": "no_answer"})
        assert_error(r, 403, "forbidden")
    status = await status_of(world.handles[MAIN])
    assert not any(e.kind in ("paused", "closed", "payment_applied") for e in status.events)


# ------------------------------------------------------------------------------------------------
# payments


async def test_malformed_payment_is_422_and_changes_nothing(api, world):
    before = await status_of(world.handles[MAIN])
    url, who = f"/v1/loans/{MAIN}/payments", bearer(OWNER[MAIN])
    cases = [
        ({"payment_id": "p", "amount": 100.5}, "amount", "not a JSON number"),
        ({"payment_id": "p", "amount": 100}, "amount", "not a JSON number"),
        ({"payment_id": "p", "amount": "100.555"}, "amount", "two places"),
        ({"payment_id": "p", "amount": "-5.00"}, "amount", "greater than 0.00"),
        ({"payment_id": "p", "amount": "0.00"}, "amount", "greater than 0.00"),
        ({"payment_id": "p", "amount": "1e3"}, "amount", "decimal string"),
        ({"amount": "1.00"}, "payment_id", "required"),
        ({"payment_id": "", "amount": "1.00"}, "payment_id", "at least 1"),
        ({"payment_id": "p", "amount": "1.00", "currency": "CNY"}, "currency", "unknown field"),
        ({"payment_id": "p", "amount": "1.00", "paid_at": "2026-01-01T10:00:00+08:00"}, "paid_at", "unknown field"),
        ({"payment_id": "p", "amount": " 1.00"}, "amount", "spaces"),
        ({"payment_id": "p q", "amount": "1.00"}, "payment_id", "pattern"),
        ({"payment_id": 7, "amount": "1.00"}, "payment_id", "string"),
    ]
    for body, field, reason in cases:
        r = await api.post(url, headers=who, json=body)
        err = assert_error(r, 422, "validation_error")
        reasons = fields_of(r)
        assert field in reasons, (body, err)
        assert reason.lower() in reasons[field].lower(), (body, reasons)
    for raw, ctype in ((b"{broken", "application/json"), (b"[1, 2]", "application/json"),
                       (b"payment_id=p&amount=1.00", "application/x-www-form-urlencoded"), (b"", "application/json")):
        r = await api.post(url, headers=who | {"Content-Type": ctype}, content=raw)
        err = assert_error(r, 422, "validation_error")
        assert err["fields"], raw
    await asyncio.sleep(0.3)
    after = await status_of(world.handles[MAIN])
    assert after.events == before.events and after.paid_total == before.paid_total


async def test_a_borrowers_payment_is_pending_and_credits_nothing(api, world):
    """The borrower's word is not money: 202 pending, with the provider's checkout link, and the loan
    unchanged until the provider confirms (tests/test_portal_payments.py: the confirmations)."""
    url, who = f"/v1/loans/{MAIN}/payments", bearer(OWNER[MAIN])
    before = await status_of(world.handles[MAIN])
    r = await api.post(url, headers=who, json={"payment_id": f"PAY-{RUN}-1", "amount": "10.00"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["provider"] == "local" and body["loan_id"] == MAIN
    assert body["payment_id"] == f"portal-PAY-{RUN}-1"
    assert body["redirect_url"].startswith("http://localhost:8000/pay/local/")
    again = await api.post(url, headers=who, json={"payment_id": f"PAY-{RUN}-1", "amount": "10.00"})
    assert again.status_code == 202 and again.json()["payment_id"] == body["payment_id"]
    await asyncio.sleep(0.5)
    after = await status_of(world.handles[MAIN])
    assert after.paid_total == before.paid_total and after.events == before.events


async def test_closed_loan_payments_and_plans(api, dev_env, world):
    handle = world.handles[CLOSING]
    who = bearer(OWNER[CLOSING])
    owed = (await status_of(handle)).balance.total
    pid = f"PAY-{RUN}-close"
    r = await notify(api, CLOSING, pid, f"{owed:.2f}")
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    closed = await eventually(lambda: status_of(handle), lambda s: s.state == "closed")
    assert closed.outcome == "paid_in_full"
    # the borrower can still read the closed loan
    r = await api.get(f"/v1/loans/{CLOSING}", headers=who)
    assert r.status_code == 200 and r.json()["outcome"] == "paid_in_full"
    await handle.result()  # the workflow has finished its closing work and ended
    # the provider repeats the confirmation that closed it: 200, marked duplicate (from the closed
    # loan's events, so any replica of the portal answers the same)
    async with app_for(dev_env.client, world) as fresh:
        r = await notify(fresh, CLOSING, pid, f"{owed:.2f}")
        assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    # a new confirmation for a closed loan: 409, not credited (the provider retries; the bank reconciles)
    r = await notify(api, CLOSING, f"{pid}-late", "5.00")
    body = assert_error(r, 409, "loan_closed")
    assert "not credited" in body["message"]
    # a borrower cannot start a payment on a closed loan
    r = await api.post(f"/v1/loans/{CLOSING}/payments", headers=who, json={"payment_id": f"{pid}-new", "amount": "5.00"})
    assert_error(r, 409, "loan_closed")
    # a plan for a closed loan: the contract's answer shape, accepted false with the reason
    r = await api.post(f"/v1/loans/{CLOSING}/payment-plans", headers=who,
                       json={"installments": 3, "first_due_date": (today() + timedelta(days=5)).isoformat(),
                             "interval_days": 30})
    assert r.status_code == 200
    assert r.json()["accepted"] is False and "closed" in r.json()["reason"] and r.json()["schedule"] == []
    # operators' levers on a closed loan: 409
    r = await api.post(f"/v1/loans/{CLOSING}/pause", headers=bearer("ops-1", "operator"), json={"reason": "x"})
    assert_error(r, 409, "loan_closed")


# ------------------------------------------------------------------------------------------------
# plans


async def test_payment_plans(api, world):
    url, who = f"/v1/loans/{PLAN}/payment-plans", bearer(OWNER[PLAN])
    first_due = (today() + timedelta(days=10)).isoformat()
    # malformed: 422 naming the field, and nothing reaches the workflow
    before = await status_of(world.handles[PLAN])
    for body, field in (
        ({"installments": 6, "first_due_date": "15/12/2026", "interval_days": 30}, "first_due_date"),
        ({"installments": 6, "first_due_date": first_due, "interval_days": 30, "down_payment": 10}, "down_payment"),
        ({"installments": 6, "first_due_date": first_due, "interval_days": 30, "extra": 1}, "extra"),
        ({"first_due_date": first_due, "interval_days": 30}, "installments"),
        ({"installments": "six", "first_due_date": first_due, "interval_days": 30}, "installments"),
        ({"installments": 6, "first_due_date": first_due, "interval_days": 30, "down_payment": "-1.00"}, "down_payment"),
    ):
        r = await api.post(url, headers=who, json=body)
        assert_error(r, 422, "validation_error")
        assert field in fields_of(r), (body, r.json())
    assert (await status_of(world.handles[PLAN])).events == before.events

    # outside the acceptance rules: 200, refused with the workflow's reason
    r = await api.post(url, headers=who, json={"installments": 13, "first_due_date": first_due, "interval_days": 30})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] is False and r.json()["reason"] and r.json()["schedule"] == []
    # within them: 200, accepted with the schedule (money as strings)
    keyed = {**who, "Idempotency-Key": f"plan-{RUN}"}
    plan_body = {"installments": 3, "first_due_date": first_due, "interval_days": 30, "down_payment": "0.00"}
    r = await api.post(url, headers=keyed, json=plan_body)
    assert r.status_code == 200, r.text
    decision = r.json()
    # a retry with the same Idempotency-Key (a lost answer) gets the first answer, not a second plan
    again = await api.post(url, headers=keyed, json=plan_body)
    assert again.status_code == 200 and again.json() == decision
    accepted = [e for e in (await status_of(world.handles[PLAN])).events if e.kind == "plan_accepted"]
    assert len(accepted) == 1
    assert decision["accepted"] is True and decision["reason"] is None
    assert len(decision["schedule"]) == 3 and decision["schedule"][0]["due_date"] == first_due
    assert all(isinstance(i["amount"], str) for i in decision["schedule"])
    status = await api.get(f"/v1/loans/{PLAN}", headers=who)
    assert status.json()["state"] == "restructuring"


# ------------------------------------------------------------------------------------------------
# operators


async def test_operator_pause_resume_write_off(api, world):
    """Every lever is recorded in the loan's events with the operator's id, from the token's `sub`
    (never from the body)."""
    op, handle = bearer("ops-1", "operator"), world.handles[OPS]
    r = await api.post(f"/v1/loans/{OPS}/pause", headers=op, json={})
    assert "reason" in fields_of(r)
    r = await api.post(f"/v1/loans/{OPS}/pause", headers=op, json={"reason": "x", "operator_id": "someone-else"})
    assert "operator_id" in fields_of(r), "the operator is the token's subject, never the body's"
    r = await api.post(f"/v1/loans/{OPS}/pause", headers=op, json={"reason": "complaint under review"})
    assert r.status_code == 202 and r.json() == {"loan_id": OPS, "signal": "pause"}
    await eventually(lambda: status_of(handle), lambda s: s.state == "paused")
    r = await api.post(f"/v1/loans/{OPS}/resume", headers=op, json={"surprise": True})
    assert "surprise" in fields_of(r)
    r = await api.post(f"/v1/loans/{OPS}/resume", headers=bearer("ops-2", "operator"))  # no body at all is fine
    assert r.status_code == 202
    await eventually(lambda: status_of(handle), lambda s: s.state == "collecting")
    r = await api.post(f"/v1/loans/{OPS}/write-off", headers=op, json={"reason": ""})
    assert "reason" in fields_of(r)
    r = await api.post(f"/v1/loans/{OPS}/write-off", headers=op, json={"reason": "deceased, estate insolvent"})
    assert r.status_code == 202
    final = await eventually(lambda: status_of(handle), lambda s: s.state == "closed")
    assert final.outcome == "written_off"
    who = {e.kind: e.details.get("operator_id") for e in final.events if e.kind in ("paused", "resumed", "closed")}
    assert who == {"paused": "ops-1", "resumed": "ops-2", "closed": "ops-1"}, final.events
    await asyncio.sleep(0.3)
    r = await api.post(f"/v1/loans/{OPS}/resume", headers=op, json={})
    assert_error(r, 409, "loan_closed")


# ------------------------------------------------------------------------------------------------
# agents


async def test_agent_lists_tasks(api, world):
    async def mine() -> dict:
        r = await api.get("/v1/tasks", headers=bearer(AGENT, "agent"))
        assert r.status_code == 200, r.text
        return r.json()

    listed = await eventually(mine, lambda b: any(t["loan_id"] == MAIN for t in b["tasks"]), timeout=10)
    task = next(t for t in listed["tasks"] if t["loan_id"] == MAIN)
    assert task["kind"] == "call" and task["assigned_to"] == AGENT and listed["truncated"] is False
    # another agent does not see a task held by AGENT, even with the pool
    r = await api.get("/v1/tasks", params={"include_unassigned": "true"}, headers=bearer("A-8", "agent"))
    assert r.status_code == 200 and not any(t["loan_id"] == MAIN for t in r.json()["tasks"])
    r = await api.get("/v1/tasks", params={"include_unassigned": "maybe"}, headers=bearer(AGENT, "agent"))
    assert "include_unassigned" in fields_of(r)


async def test_agent_records_outcome(api, world):
    handle = world.handles[MAIN]
    task_id = (await status_of(handle)).open_tasks[0].task_id
    url = f"/v1/tasks/{task_id}/outcome"
    me = bearer(AGENT, "agent")
    before = await status_of(handle)

    r = await api.post(url, headers=bearer("A-8", "agent"), json={"loan_id": MAIN, "outcome": "no_answer"})
    assert_error(r, 403, "forbidden")
    r = await api.post("/v1/tasks/no-such-task/outcome", headers=me, json={"loan_id": MAIN, "outcome": "no_answer"})
    assert_error(r, 404, "not_found")
    r = await api.post(url, headers=me, json={"loan_id": f"NOPE-{RUN}", "outcome": "no_answer"})
    assert_error(r, 404, "not_found")
    r = await api.post(url, headers=me, json={"loan_id": MAIN, "outcome": "shouted"})
    assert "outcome" in fields_of(r)
    r = await api.post(url, headers=me, json={"loan_id": MAIN, "outcome": "no_answer", "agent_id": "A-9"})
    assert "agent_id" in fields_of(r), "the agent is the token's subject, never the body's"
    # refused by the workflow's update validator: 422 naming the field and the reason
    r = await api.post(url, headers=me, json={"loan_id": MAIN, "outcome": "promise_to_pay"})
    body = assert_error(r, 422, "validation_error")
    assert "promised_amount" in fields_of(r), body
    r = await api.post(url, headers=me, json={"loan_id": MAIN, "outcome": "promise_to_pay", "promised_amount": "50.00",
                                              "promised_date": (today() - timedelta(days=3)).isoformat()})
    assert "promised_date" in fields_of(r)
    after = await status_of(handle)
    assert after.open_tasks == before.open_tasks
    assert [e for e in after.events if e.kind == "contact_outcome"] == []

    r = await api.post(url, headers=me, json={
        "loan_id": MAIN, "outcome": "promise_to_pay", "promised_amount": "500.00",
        "promised_date": (today() + timedelta(days=2)).isoformat(), "note": "will pay Friday"})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["loan_id"] == MAIN and "events" not in view
    assert all(t["task_id"] != task_id for t in view["open_tasks"])
    recorded = [e for e in (await status_of(handle)).events if e.kind == "contact_outcome"]
    assert recorded and recorded[-1].details["agent_id"] == AGENT
    # the task is no longer open: 404
    r = await api.post(url, headers=me, json={"loan_id": MAIN, "outcome": "no_answer"})
    assert_error(r, 404, "not_found")


# ------------------------------------------------------------------------------------------------
# limits and failures


async def test_body_over_the_cap_is_413(api):
    url, who = f"/v1/loans/{MAIN}/payments", bearer(OWNER[MAIN])
    big = json.dumps({"payment_id": "p", "amount": "1.00", "pad": "x" * 17000}).encode()
    r = await api.post(url, headers=who | {"Content-Type": "application/json"}, content=big)
    assert_error(r, 413, "payload_too_large")

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b" " * 1024

    r = await api.post(url, headers=who | {"Content-Type": "application/json"}, content=chunks())
    assert_error(r, 413, "payload_too_large")


async def test_rate_limit_per_token_is_429(dev_env, world):
    async with app_for(dev_env.client, world, rate_per_second=0.5, rate_burst=3) as http:
        hot, cool = bearer(OWNER[OTHER]), bearer(OWNER[OTHER], extra="another token")
        codes = [(await http.get(f"/v1/loans/{OTHER}", headers=hot)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await http.get(f"/v1/loans/{OTHER}", headers=hot)
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert (await http.get(f"/v1/loans/{OTHER}", headers=cool)).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # health checks are not limited


async def test_worker_silent_is_503(dev_env, world):
    loan = f"PT{RUN}-silent"
    inp = loan_input(loan, today=today(), dpd=3)
    await dev_env.client.start_workflow(CollectionWorkflow.run, inp, id=f"loan-{loan}",
                                        task_queue=f"nobody-{RUN}")
    async with app_for(dev_env.client, world, temporal_timeout_seconds=1) as http:
        r = await http.get(f"/v1/loans/{loan}", headers=bearer("ops-1", "operator"))
        assert_error(r, 503, "unavailable")
        assert r.headers["retry-after"]
    await dev_env.client.get_workflow_handle(f"loan-{loan}").terminate("test done")


async def test_unexpected_error_is_a_json_500_without_trace(dev_env, world):
    app = create_app(Settings(portal_jwt_secret=SECRET), client=dev_env.client)

    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/v1/boom", boom)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://p") as http:
        r = await http.get("/v1/boom", headers=bearer("B-1"))
    assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text


# ------------------------------------------------------------------------------------------------
# the process


def _run_module(module: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _env(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "COLLECTIONS_", "TEMPORAL_"))}
    return base | values


def test_portal_refuses_to_start_without_a_good_secret():
    r = _run_module("portal", _env())
    assert r.returncode == 2 and "PORTAL_JWT_SECRET is not set" in r.stderr and "Traceback" not in r.stderr
    r = _run_module("portal", _env(PORTAL_JWT_SECRET="short"))
    assert r.returncode == 2 and "at least 32" in r.stderr
    r = _run_module("portal", _env(PORTAL_JWT_SECRET=SECRET, COLLECTIONS_ENCRYPTION_KEY="bm9wZQ=="))
    assert r.returncode == 2 and "COLLECTIONS_ENCRYPTION_KEY" in r.stderr


async def test_python_m_portal_serves_and_stops_cleanly(dev_env):
    port = free_port()
    target = dev_env.client.service_client.config.target_host
    proc = subprocess.Popen([sys.executable, "-m", "portal"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env(PORTAL_JWT_SECRET=SECRET, PORTAL_PORT=str(port), TEMPORAL_ADDRESS=target))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    r = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "portal did not come up"
                    await asyncio.sleep(0.2)
            assert r.status_code == 200 and r.json()["temporal"] == "reachable"
            r = await http.get(f"/v1/loans/{MAIN}")
            assert r.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
