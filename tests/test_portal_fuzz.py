"""Schema-driven fuzz of the portal (hypothesis strategies built from the contract's models), over real
HTTP (uvicorn) to a real worker on the dev server.

Oracles: the portal answers exactly what the contract's own model says of the body (2xx when it
validates, 422 otherwise); never a 500; a refused request changes nothing in the loan; a borrower's
payment credits nothing, a signed provider notification credits each payment once.
(tests/test_portal_schemathesis.py checks the OpenAPI document against the same validation.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from domain.models import PaymentPlanProposal, PlanDecision
from portal import create_app
from portal.payments import NOTIFICATION_PATH, PaymentNotification, signed_headers
from portal.schemas import PauseRequest, PaymentRequest, ResumeRequest, WriteOffRequest
from runtime.config import Settings
from tests.test_portal_support import (
    SECRET,
    WEBHOOK_SECRET,
    eventually,
    portal_config,
    portal_worker,
    serve,
    settled_status,
    status_of,
    today,
    token,
)

pytestmark = pytest.mark.devserver

RUN = uuid.uuid4().hex[:6]
PAY, PLAN, QUIET = f"FZ{RUN}-pay", f"FZ{RUN}-plan", f"FZ{RUN}-quiet"
FUZZ = settings(max_examples=70, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------------------------------
# strategies, field by field from the models: valid values and the ways a client gets them wrong

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                  st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)

valid_money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100.00"), places=2).map(lambda d: f"{d:.2f}")
bad_money = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.text(max_size=10),
    st.sampled_from(["1.234", "-1.00", "0.00", "1e3", "5.", ".5", "NaN", "Infinity", "", " ", "1,00", "0x10"]),
    st.none(), st.lists(valid_money, max_size=2),
)
money = st.one_of(valid_money, bad_money)
ids = st.one_of(st.text(min_size=1, max_size=40), st.just(""), st.text(min_size=129, max_size=135),
                st.integers(), st.none(), st.booleans())
zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])
instants = st.one_of(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=zones).map(datetime.isoformat),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(datetime.isoformat),  # naive
    st.text(max_size=12), st.none(), st.integers(),
)
days = st.one_of(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 1, 1)).map(date.isoformat),
                 st.text(max_size=12), st.integers(), st.none())
counts = st.one_of(st.integers(-5, 40), st.text(max_size=4), st.floats(allow_nan=False, allow_infinity=False), st.none())
reasons = st.one_of(st.text(min_size=1, max_size=60), st.just(""), st.text(min_size=501, max_size=510), st.integers(),
                    st.none())
outcomes = st.one_of(st.sampled_from(["promise_to_pay", "no_answer", "refused", "wrong_number", "plan_agreed"]),
                     st.text(max_size=10), st.none())


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects with any subset of the model's fields, sometimes an unknown one; sometimes not an object."""
    unknown = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in fields), json_values,
                              max_size=2)
    objects = st.builds(lambda known, extra: {**extra, **known},
                        st.fixed_dictionaries({}, optional=fields), st.one_of(st.just({}), unknown))
    return st.one_of(objects, objects, objects, json_values)


aware_instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                              timezones=zones).map(datetime.isoformat)
payment_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:\-]{0,30}\Z")
well_formed_payments = st.fixed_dictionaries({"payment_id": payment_ids, "amount": valid_money})
well_formed_plans = st.fixed_dictionaries(
    {"installments": st.integers(0, 20), "first_due_date": st.integers(-5, 45).map(lambda n: (today() + timedelta(days=n)).isoformat()),
     "interval_days": st.integers(1, 40)}, optional={"down_payment": valid_money})
payment_bodies = st.one_of(well_formed_payments, bodies({"payment_id": st.one_of(ids, payment_ids), "amount": money,
                                                         "paid_at": instants}))
plan_bodies = st.one_of(well_formed_plans, bodies({"installments": counts, "first_due_date": days,
                                                   "interval_days": counts, "down_payment": money}))
reason_bodies = bodies({"reason": reasons})
well_formed_notifications = st.fixed_dictionaries(
    {"type": st.just("payment.succeeded"), "notification_id": st.text(min_size=1, max_size=20),
     "provider": st.sampled_from(["local", "stripe", "bank-x"]), "payment_id": payment_ids, "loan_id": st.just(PAY),
     "amount": valid_money, "currency": st.just("CNY"), "paid_at": aware_instants},
    optional={"provider_reference": st.text(min_size=1, max_size=20), "reason": st.none()})
notification_bodies = st.one_of(
    well_formed_notifications, well_formed_notifications,
    bodies({"type": st.sampled_from(["payment.succeeded", "payment.reversed", "payment.other"]),
            "notification_id": ids, "provider": st.sampled_from(["local", "Bad Provider", ""]),
            "payment_id": ids, "loan_id": st.sampled_from([PAY, "", "-x"]), "amount": money,
            "currency": st.sampled_from(["CNY", "cny", "CN", 156]), "paid_at": instants, "reversed_at": instants,
            "reason": reasons}),
)
_notification = TypeAdapter(PaymentNotification)
outcome_bodies = bodies({"loan_id": st.one_of(st.just(QUIET), ids), "outcome": outcomes, "promised_amount": money,
                         "promised_date": days, "note": st.one_of(st.text(max_size=20), st.none())})


def valid(model: type[BaseModel] | TypeAdapter[Any], body: Any) -> bool:
    """What the endpoint takes: an object the model validates (a TypeAdapter says for itself, e.g. that
    resume also takes `null`, as the OpenAPI document states)."""
    if not isinstance(model, TypeAdapter) and not isinstance(body, dict):
        return False
    try:
        model.validate_python(body) if isinstance(model, TypeAdapter) else model.model_validate(body)
    except ValidationError:
        return False
    return True


def check_refusal(r: httpx.Response) -> None:
    assert r.status_code != 500 and "Traceback" not in r.text, r.text
    body = r.json()
    assert set(body) <= {"error", "message", "fields"} and body["message"]
    if r.status_code == 422:
        assert body["fields"] and all(f["field"] and f["reason"] for f in body["fields"])


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def served(dev_env, tmp_path_factory):
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("fuzz")) as world:
        handles = {loan: await world.start_loan(loan, dpd=3, principal="1000000.00") for loan in (PAY, PLAN, QUIET)}
        app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue), client=dev_env.client,
                         config=portal_config(rate_per_second=100_000, rate_burst=100_000))
        async with serve(app) as base:
            yield base, handles


async def test_payments_answer_as_the_model_decides_and_credit_nothing(served):
    base, handles = served
    owner = {"Authorization": f"Bearer {token(f'B-{PAY}')}", "Content-Type": "application/json"}
    before = await status_of(handles[PAY])
    started = 0

    @FUZZ
    @given(body=payment_bodies)
    def run(body: Any) -> None:
        nonlocal started
        with httpx.Client(base_url=base, timeout=15) as http:
            r = http.post(f"/v1/loans/{PAY}/payments", headers=owner, content=json.dumps(body))
        if valid(PaymentRequest, body):
            assert r.status_code == 202, (body, r.text)
            assert r.json()["status"] == "pending" and r.json()["payment_id"] == f"portal-{body['payment_id']}"
            started += 1
        else:
            assert r.status_code == 422, (body, r.text)
            check_refusal(r)

    await asyncio.to_thread(run)
    assert started, "the strategy produced valid payments too"
    await asyncio.sleep(0.5)
    after = await status_of(handles[PAY])
    assert after.paid_total == before.paid_total, "a borrower's word is not money"
    assert not [e for e in after.events if e.kind.startswith("payment")]


async def test_signed_notifications_answer_as_the_model_decides_and_credit_once(served):
    base, handles = served
    credited: dict[str, Decimal] = {}
    before = (await status_of(handles[PAY])).paid_total

    @FUZZ
    @given(body=notification_bodies, twice=st.booleans())
    def run(body: Any, twice: bool) -> None:
        raw = json.dumps(body).encode("utf-8")
        with httpx.Client(base_url=base, timeout=15) as http:
            for _ in range(2 if twice else 1):
                r = http.post(NOTIFICATION_PATH, content=raw, headers=signed_headers(WEBHOOK_SECRET.encode(), raw))
                if valid(_notification, body) and body["type"] == "payment.succeeded":
                    assert r.status_code == 200, (body, r.text)
                    credited.setdefault(body["payment_id"], Decimal(body["amount"]))
                elif valid(_notification, body):
                    assert r.status_code in (200, 404), (body, r.text)  # a reversal (the workflow decides)
                else:
                    assert r.status_code == 422, (body, r.text)
                    check_refusal(r)

    await asyncio.to_thread(run)
    assert credited, "the strategy produced valid notifications too"
    expected = before + sum(credited.values(), Decimal("0.00"))
    status = await eventually(lambda: status_of(handles[PAY]), lambda s: s.paid_total == expected, timeout=15)
    applied = [e.details["payment_id"] for e in status.events if e.kind == "payment_applied"]
    assert sorted(applied) == sorted(credited), "each confirmed payment credited once, nothing else"


async def test_plans_answer_as_the_model_decides(served):
    base, _ = served
    owner = {"Authorization": f"Bearer {token(f'B-{PLAN}')}", "Content-Type": "application/json"}

    @FUZZ
    @given(body=plan_bodies)
    def run(body: Any) -> None:
        with httpx.Client(base_url=base, timeout=15) as http:
            r = http.post(f"/v1/loans/{PLAN}/payment-plans", headers=owner, content=json.dumps(body))
        if valid(PaymentPlanProposal, body):
            assert r.status_code == 200, (body, r.text)
            decision = PlanDecision.model_validate(r.json())
            assert decision.accepted == bool(decision.schedule)
            assert decision.accepted or decision.reason
        else:
            assert r.status_code == 422, (body, r.text)
            check_refusal(r)

    await asyncio.to_thread(run)


async def test_refused_requests_change_nothing(served):
    base, handles = served
    before = await settled_status(handles[QUIET])
    owner = token(f"B-{QUIET}")
    now = int(datetime.now(timezone.utc).timestamp())

    auths = {
        "none": None,
        "garbage": "Bearer x.y.z",
        "expired": "Bearer " + jwt.encode({"sub": f"B-{QUIET}", "exp": now - 600}, SECRET, algorithm="HS256"),
        "other borrower": "Bearer " + token("B-someone-else"),
        "agent": "Bearer " + token("A-1", "agent"),
        "agency": "Bearer " + token("AG-1-7", "agency", agency_id="AG-1"),
        "borrower as operator": "Bearer " + jwt.encode({"sub": "ops-1", "exp": now + 600, "role": "operator"},
                                                       SECRET, algorithm="HS256"),
        "operator": "Bearer " + token("ops-1", "operator"),
        "owner": "Bearer " + owner,
    }
    endpoints = {
        "payments": (payment_bodies, PaymentRequest, {"owner"}),
        "payment-plans": (plan_bodies, PaymentPlanProposal, {"owner"}),
        "pause": (reason_bodies, PauseRequest, {"operator"}),
        "resume": (bodies({}), TypeAdapter(ResumeRequest | None), {"operator"}),
        "write-off": (reason_bodies, WriteOffRequest, {"operator"}),
    }
    request = st.one_of(
        *(st.tuples(st.just(name), st.sampled_from(sorted(auths)), strategy)
          for name, (strategy, _, _) in endpoints.items()),
        st.tuples(st.just("outcome"), st.sampled_from(sorted(auths)), outcome_bodies),
    )
    sent: list[int] = []

    @FUZZ
    @given(req=request, loan_id=st.one_of(st.just(QUIET), st.just(QUIET), st.text(min_size=1, max_size=20)))
    def run(req: tuple[str, str, Any], loan_id: str) -> None:
        name, who, body = req
        headers = {"Content-Type": "application/json"}
        if auths[who]:
            headers["Authorization"] = auths[who]
        if name == "outcome":
            url = "/v1/tasks/t-1/outcome"
            allowed_ok = False  # QUIET has no open task: even a valid agent's outcome is refused
        else:
            _, model, roles = endpoints[name]
            url = f"/v1/loans/{quote(loan_id, safe='')}/{name}"
            allowed_ok = who in roles and loan_id == QUIET and valid(model, body)
        if allowed_ok:
            return  # a request that would be honoured is not what this test sends
        with httpx.Client(base_url=base, timeout=15) as http:
            r = http.post(url, headers=headers, content=json.dumps(body))
        sent.append(r.status_code)
        assert r.status_code in (401, 403, 404, 405, 422), (name, who, loan_id, body, r.status_code, r.text)
        check_refusal(r)

    await asyncio.to_thread(run)
    assert {401, 403, 422} <= set(sent), sent
    await asyncio.sleep(0.5)
    after = await status_of(handles[QUIET])
    assert after.events == before.events
    assert after.paid_total == before.paid_total and after.state == before.state and after.plan == before.plan
