"""Trusted money, over real HTTP (uvicorn) to a real worker on the dev server: a borrower's payment is
pending until the provider's signed notification; bad, missing and stale signatures change nothing;
a confirmation credits once, whichever replica gets it and however often; the local provider's whole
path (request -> pending -> checkout -> signed webhook -> credited); and Stripe's scheme
(PaymentIntents with Idempotency-Key, Stripe-Signature), against a stand-in for api.stripe.com that
answers as Stripe's published API does."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from portal import create_app
from portal.payments import NOTIFICATION_PATH, sign, signed_headers
from portal.payments.stripe import STRIPE_PATH, stripe_signature_header
from runtime.config import Settings
from tests.test_portal_support import (
    REVERSALS,
    SECRET,
    WEBHOOK_SECRET,
    bearer,
    eventually,
    free_port,
    notification,
    notify,
    portal_config,
    portal_worker,
    serve,
    status_of,
)

pytestmark = pytest.mark.devserver

RUN = uuid.uuid4().hex[:6]
SIG, TWICE, LOCAL, AUTO, PENDING, STRIPE, REVERSED, OPERATOR = (
    f"PP{RUN}-{n}" for n in ("sig", "twice", "local", "auto", "pend", "stripe", "rev", "oprev"))
LOANS = (SIG, TWICE, LOCAL, AUTO, PENDING, STRIPE, REVERSED, OPERATOR)
STRIPE_KEY, STRIPE_WHSEC = "sk_test_collections_0123456789", "whsec_collections_test_0123456789abcdef"


def owner(loan_id: str) -> dict[str, str]:
    return bearer(f"B-{loan_id}")


def applied(status: Any) -> list[str]:
    return [e.details["payment_id"] for e in status.events if e.kind == "payment_applied"]


@pytest.fixture(scope="module")
async def world(dev_env, tmp_path_factory):
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("payments")) as w:
        w.handles = {loan: await w.start_loan(loan, dpd=3) for loan in LOANS}  # type: ignore[attr-defined]
        yield w


def _app(dev_env, world, port: int, **config: Any):  # noqa: ANN001, ANN202
    base = f"http://127.0.0.1:{port}"
    cfg = portal_config(rate_per_second=1000, rate_burst=1000, public_url=base,
                        payments_local_notify_url=base + NOTIFICATION_PATH, **config)
    return create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue, portal_port=port),
                      client=dev_env.client, config=cfg)


@pytest.fixture(scope="module")
async def portal(dev_env, world):
    port = free_port()
    async with serve(_app(dev_env, world, port), port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            yield http


# ------------------------------------------------------------------------------------------------
# the notification's signature


async def test_bad_missing_and_stale_signatures_are_401_and_change_nothing(portal, world):
    handle = world.handles[SIG]
    before = await status_of(handle)
    body = notification(SIG, f"P-{RUN}-sig", "25.00")
    now = int(time.time())
    good_ts = str(now)
    good_sig = sign(WEBHOOK_SECRET.encode(), good_ts, body)
    json_type = {"Content-Type": "application/json"}
    cases = {
        "no headers": {},
        "no signature": {"X-Timestamp": good_ts},
        "no timestamp": {"X-Signature": good_sig},
        "timestamp not digits": {"X-Timestamp": good_ts + "Z", "X-Signature": good_sig},
        "signature not hex": {"X-Timestamp": good_ts, "X-Signature": "z" * 64},
        "another key": {"X-Timestamp": good_ts, "X-Signature": sign(b"k" * 40, good_ts, body)},
        "another timestamp": {"X-Timestamp": str(now - 1), "X-Signature": good_sig},
        "replayed (stale)": {"X-Timestamp": str(now - 301),
                             "X-Signature": sign(WEBHOOK_SECRET.encode(), str(now - 301), body)},
        "from the future": {"X-Timestamp": str(now + 400),
                            "X-Signature": sign(WEBHOOK_SECRET.encode(), str(now + 400), body)},
    }
    for name, headers in cases.items():
        r = await portal.post(NOTIFICATION_PATH, content=body, headers=json_type | headers)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"] == "unauthorized" and r.json()["message"], name
    stale = await portal.post(NOTIFICATION_PATH, content=body, headers=json_type | cases["replayed (stale)"])
    assert "300 seconds" in stale.json()["message"]
    # the body is what is signed: one changed byte is a bad signature
    tampered = body.replace(b'"25.00"', b'"95.00"')
    r = await portal.post(NOTIFICATION_PATH, content=tampered, headers=signed_headers(WEBHOOK_SECRET.encode(), body))
    assert r.status_code == 401
    # an unsigned request learns nothing about its body: broken JSON is a 401 too
    r = await portal.post(NOTIFICATION_PATH, content=b"{broken", headers=json_type)
    assert r.status_code == 401
    await asyncio.sleep(0.5)
    after = await status_of(handle)
    assert after.paid_total == before.paid_total and applied(after) == []

    # a valid signature (hex in either case): credited
    r = await portal.post(NOTIFICATION_PATH, content=body,
                          headers=json_type | {"X-Timestamp": good_ts, "X-Signature": good_sig.upper()})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["signal"] == "payment_received" and answer["duplicate"] is False
    assert answer["loan_id"] == SIG and answer["payment_id"] == f"P-{RUN}-sig"
    status = await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("25.00"))
    assert applied(status) == [f"P-{RUN}-sig"]


async def test_a_signed_notification_with_a_bad_body_is_422_and_changes_nothing(portal, world):
    handle = world.handles[SIG]
    before = await status_of(handle)
    for body, field in (
        (notification(SIG, f"P-{RUN}-bad", "25"), None),  # valid: the control case, answered below
        (notification(SIG, f"P-{RUN}-bad", "25.001"), "amount"),
        (notification(SIG, f"P-{RUN}-bad", "0.00"), "amount"),
        (notification(SIG, f"P-{RUN}-bad", "5.00", paid_at=1767225600), "paid_at"),
        (notification(SIG, f"P-{RUN}-bad", "5.00", kind="payment.refunded"), "type"),
        (notification(SIG, f"P-{RUN}-bad", "5.00", extra="x"), "extra"),
    ):
        if field is None:
            continue
        r = await portal.post(NOTIFICATION_PATH, content=body, headers=signed_headers(WEBHOOK_SECRET.encode(), body))
        assert r.status_code == 422, (field, r.text)
        assert any(field in f["field"] for f in r.json()["fields"]), (field, r.json())
    # the loan's currency is checked: a confirmation in another currency is not money for this loan
    r = await notify(portal, SIG, f"P-{RUN}-usd", "5.00", currency="USD")
    assert r.status_code == 409 and r.json()["error"] == "currency_mismatch" and "CNY" in r.json()["message"]
    r = await notify(portal, f"PP{RUN}-nosuchloan", f"P-{RUN}-x", "5.00")
    assert r.status_code == 404
    await asyncio.sleep(0.5)
    assert (await status_of(handle)).paid_total == before.paid_total


# ------------------------------------------------------------------------------------------------
# idempotency


async def test_the_same_notification_twice_credits_once_also_across_replicas(portal, dev_env, world):
    handle = world.handles[TWICE]
    body = notification(TWICE, f"P-{RUN}-twice", "40.00")
    first = await portal.post(NOTIFICATION_PATH, content=body, headers=signed_headers(WEBHOOK_SECRET.encode(), body))
    assert first.status_code == 200, first.text
    # the provider retries, to another replica of the portal (no state shared but Temporal), signed afresh
    port = free_port()
    async with serve(_app(dev_env, world, port), port) as replica:
        async with httpx.AsyncClient(base_url=replica) as http:
            second = await http.post(NOTIFICATION_PATH, content=body,
                                     headers=signed_headers(WEBHOOK_SECRET.encode(), body))
    assert second.status_code == 200, second.text
    third = await notify(portal, TWICE, f"P-{RUN}-twice", "40.00")  # same payment, a new notification id
    assert third.status_code == 200
    status = await eventually(lambda: status_of(handle),
                              lambda s: len([e for e in s.events if e.kind == "payment_duplicate"]) == 2)
    assert status.paid_total == Decimal("40.00") and applied(status) == [f"P-{RUN}-twice"]


async def test_a_pending_payment_that_never_confirms_credits_nothing(portal, world):
    handle = world.handles[PENDING]
    r = await portal.post(f"/v1/loans/{PENDING}/payments", headers=owner(PENDING),
                          json={"payment_id": f"P-{RUN}-never", "amount": "70.00"})
    assert r.status_code == 202 and r.json()["status"] == "pending"
    await asyncio.sleep(1.5)
    status = await status_of(handle)
    assert status.paid_total == Decimal("0.00") and not [e for e in status.events if e.kind.startswith("payment")]


# ------------------------------------------------------------------------------------------------
# the local provider (the embedded default)


async def test_local_provider_full_path(portal, world):
    handle = world.handles[LOCAL]
    r = await portal.post(f"/v1/loans/{LOCAL}/payments", headers=owner(LOCAL),
                          json={"payment_id": f"P-{RUN}-web", "amount": "123.45"})
    assert r.status_code == 202, r.text
    pending = r.json()
    assert pending == {"loan_id": LOCAL, "payment_id": f"portal-P-{RUN}-web", "status": "pending",
                       "provider": "local", "redirect_url": pending["redirect_url"]}
    link = pending["redirect_url"]
    assert link.startswith(f"{portal.base_url}/pay/local/")
    await asyncio.sleep(0.5)
    assert (await status_of(handle)).paid_total == Decimal("0.00"), "nothing before the provider confirms"

    # the borrower's browser follows the link: a checkout page; submitting it pays
    page = await portal.get(link)
    assert page.status_code == 200 and "123.45 CNY" in page.text and "<form" in page.text
    assert "no money is taken" in page.text
    paid = await portal.post(link, headers={"Accept": "application/json"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "confirmed" and paid.json()["portal_answer"]["signal"] == "payment_received"
    status = await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("123.45"))
    assert applied(status) == [f"portal-P-{RUN}-web"]
    # submitting twice (a double click) pays once; the HTML form answers a page
    again = await portal.post(link)
    assert again.status_code == 200 and "Paid 123.45 CNY" in again.text
    await eventually(lambda: status_of(handle), lambda s: any(e.kind == "payment_duplicate" for e in s.events))
    assert (await status_of(handle)).paid_total == Decimal("123.45")

    # a forged or damaged link pays nothing
    body, _, mac = link.rsplit("/", 1)[1].partition(".")
    for bad in (f"{body}.{mac[:-2]}xx", f"{body[:-4]}AAAA.{mac}", "nonsense"):
        r = await portal.post(f"{portal.base_url}/pay/local/{bad}", headers={"Accept": "application/json"})
        assert r.status_code == 404, bad
    # the checkout pages are the provider's, not the API's
    assert not [p for p in (await portal.get("/openapi.json")).json()["paths"] if p.startswith("/pay/")]


async def test_local_provider_confirms_by_itself_in_the_demo(dev_env, world):
    """COLLECTIONS_DEMO=1: the demo's borrowers pay through the portal and the local provider confirms
    a moment later, through the same signed webhook."""
    handle = world.handles[AUTO]
    port = free_port()
    async with serve(_app(dev_env, world, port, demo=True), port) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.post(f"/v1/loans/{AUTO}/payments", headers=owner(AUTO),
                                json={"payment_id": f"P-{RUN}-auto", "amount": "10.00"})
            assert r.status_code == 202 and r.json()["status"] == "pending"
            status = await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("10.00"))
    assert applied(status) == [f"portal-P-{RUN}-auto"]


# ------------------------------------------------------------------------------------------------
# Stripe


def stripe_api() -> tuple[FastAPI, list[dict[str, Any]]]:
    """A stand-in for api.stripe.com: PaymentIntents created and retrieved as Stripe documents them,
    idempotency keys honoured (same key and parameters: the same object; other parameters: 400
    idempotency_error)."""
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    by_key: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}
    intents: dict[str, dict[str, Any]] = {}

    @app.post("/v1/payment_intents")
    async def create(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        seen.append({"headers": dict(request.headers), "form": form})
        if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, 401)
        key = request.headers.get("idempotency-key", "")
        if key in by_key:
            params, intent = by_key[key]
            if params != form:
                return JSONResponse({"error": {"type": "idempotency_error", "message": "Keys for idempotent "
                                               "requests can only be used with the same parameters"}}, 400)
            return JSONResponse(intent, headers={"Idempotent-Replayed": "true"})
        pid = f"pi_{uuid.uuid4().hex[:14]}"
        intent = {"id": pid, "object": "payment_intent", "amount": int(form["amount"]), "currency": form["currency"],
                  "status": "requires_payment_method", "client_secret": f"{pid}_secret_{uuid.uuid4().hex[:8]}",
                  "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                  "next_action": None, "created": int(time.time())}
        by_key[key] = (form, intent)
        intents[pid] = intent
        return JSONResponse(intent)

    @app.get("/v1/payment_intents/{pid}")
    async def retrieve(pid: str) -> JSONResponse:
        if pid not in intents:
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "No such payment_intent"}}, 404)
        return JSONResponse(intents[pid])

    return app, seen


def stripe_event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"id": f"evt_{uuid.uuid4().hex[:12]}", "object": "event", "type": kind,
                       "created": int(time.time()), "data": {"object": obj}}).encode()


async def post_stripe(http: httpx.AsyncClient, body: bytes, header: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": header if header is not None else stripe_signature_header(STRIPE_WHSEC, body)}
    return await http.post(STRIPE_PATH, content=body, headers=headers)


async def test_stripe_payment_intents_and_signed_events(dev_env, world):
    handle = world.handles[STRIPE]
    api, seen = stripe_api()
    async with serve(api) as stripe_base:
        port = free_port()
        app = _app(dev_env, world, port, payments_provider="stripe", stripe_secret_key=STRIPE_KEY,
                   stripe_webhook_secret=STRIPE_WHSEC, stripe_api_base=stripe_base)
        async with serve(app, port) as base, httpx.AsyncClient(base_url=base, timeout=20) as http:
            # starting: a PaymentIntent, its client secret for Stripe.js; nothing credited
            body = {"payment_id": f"P-{RUN}-s", "amount": "10.50"}
            r = await http.post(f"/v1/loans/{STRIPE}/payments", headers=owner(STRIPE), json=body)
            assert r.status_code == 202, r.text
            pending = r.json()
            assert pending["provider"] == "stripe" and pending["client_secret"].startswith("pi_")
            call = seen[-1]
            assert call["headers"]["idempotency-key"] == f"collections:{STRIPE}:portal-P-{RUN}-s"
            assert call["headers"]["stripe-version"]
            assert call["form"]["amount"] == "1050" and call["form"]["currency"] == "cny"
            assert call["form"]["metadata[loan_id]"] == STRIPE
            assert call["form"]["metadata[payment_id]"] == f"portal-P-{RUN}-s"
            again = await http.post(f"/v1/loans/{STRIPE}/payments", headers=owner(STRIPE), json=body)
            assert again.status_code == 202 and again.json()["client_secret"] == pending["client_secret"]
            other = await http.post(f"/v1/loans/{STRIPE}/payments", headers=owner(STRIPE),
                                    json=body | {"amount": "99.00"})
            assert other.status_code == 409 and other.json()["error"] == "payment_conflict"
            intent_id = pending["client_secret"].split("_secret_")[0]

            succeeded = stripe_event("payment_intent.succeeded", {
                "id": intent_id, "object": "payment_intent", "amount": 1050, "amount_received": 1050,
                "currency": "cny", "status": "succeeded",
                "metadata": {"loan_id": STRIPE, "payment_id": f"portal-P-{RUN}-s"}})
            # Stripe-Signature: missing, wrong secret, stale, no v1: 401 and nothing changes
            now = int(time.time())
            for header in ("", stripe_signature_header("whsec_other_0123456789", succeeded),
                           stripe_signature_header(STRIPE_WHSEC, succeeded, now=now - 301),
                           f"t={now},v0={'0' * 64}"):
                r = await post_stripe(http, succeeded, header)
                assert r.status_code == 401, (header, r.text)
            # our own scheme's endpoint does not take Stripe's signature, nor Stripe's event
            r = await http.post(NOTIFICATION_PATH, content=succeeded,
                                headers={"Stripe-Signature": stripe_signature_header(STRIPE_WHSEC, succeeded)})
            assert r.status_code == 401
            await asyncio.sleep(0.3)
            assert (await status_of(handle)).paid_total == Decimal("0.00")

            # a valid signature among several (Stripe rolls its secrets): credited, once
            good = stripe_signature_header(STRIPE_WHSEC, succeeded)
            t, v1 = good.split(",")
            r = await post_stripe(http, succeeded, f"{t},v1={'0' * 64},{v1}")
            assert r.status_code == 200, r.text
            assert r.json()["signal"] == "payment_received" and r.json()["payment_id"] == f"portal-P-{RUN}-s"
            assert (await post_stripe(http, succeeded)).status_code == 200  # Stripe delivers at least once
            status = await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("10.50"))
            await eventually(lambda: status_of(handle), lambda s: any(e.kind == "payment_duplicate" for e in s.events))
            assert applied(status) == [f"portal-P-{RUN}-s"]

            # events that change nothing are acknowledged, so Stripe stops sending them
            for kind, obj in (("customer.created", {"id": "cus_1"}),
                              ("payment_intent.succeeded", {"id": "pi_x", "amount_received": 100, "currency": "cny",
                                                            "metadata": {}}),
                              ("charge.refunded", {"id": "ch_1", "payment_intent": intent_id, "refunded": False,
                                                   "amount": 1050, "amount_refunded": 50, "currency": "cny"})):
                r = await post_stripe(http, stripe_event(kind, obj))
                assert r.status_code == 200 and r.json()["ignored"], (kind, r.text)
            await asyncio.sleep(0.3)
            assert (await status_of(handle)).paid_total == Decimal("10.50")


# ------------------------------------------------------------------------------------------------
# reversals (the workflow's signal payment_reversed and update reverse_payment)


needs_reversals = pytest.mark.skipif(not REVERSALS, reason="this checkout's CollectionWorkflow has no payment_reversed "
                                     "signal and reverse_payment update yet (contract v2, the workflow's side)")


def mentions(status: Any, payment_id: str, word: str) -> list[Any]:
    return [e for e in status.events if word in e.kind and e.details.get("payment_id") == payment_id]


@needs_reversals
async def test_a_reversed_notification_undoes_the_payment_and_a_refused_one_shows_in_the_loan(portal, world):
    handle = world.handles[REVERSED]
    owed = (await status_of(handle)).balance.total
    assert (await notify(portal, REVERSED, f"P-{RUN}-r1", "60.00")).status_code == 200
    await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("60.00"))

    r = await notify(portal, REVERSED, f"P-{RUN}-r1", "60.00", kind="payment.reversed", reason="chargeback (fraudulent)")
    assert r.status_code == 200, r.text
    assert r.json()["signal"] == "payment_reversed" and r.json()["payment_id"] == f"P-{RUN}-r1"
    status = await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("0.00"))
    assert status.balance.total >= owed, "the amounts went back where the waterfall took them from"
    assert mentions(status, f"P-{RUN}-r1", "revers"), status.events

    # a reversal the loan cannot take (a payment it never had) is refused, in the loan's events
    r = await notify(portal, REVERSED, f"P-{RUN}-never", "5.00", kind="payment.reversed", reason="returned")
    assert r.status_code == 200
    status = await eventually(lambda: status_of(handle),
                              lambda s: any(f"P-{RUN}-never" in json.dumps(e.details) for e in s.events))
    assert status.paid_total == Decimal("0.00")


@needs_reversals
async def test_an_operator_reverses_a_payment_and_is_recorded(portal, world):
    handle = world.handles[OPERATOR]
    assert (await notify(portal, OPERATOR, f"P-{RUN}-o1", "30.00")).status_code == 200
    await eventually(lambda: status_of(handle), lambda s: s.paid_total == Decimal("30.00"))
    url = f"/v1/loans/{OPERATOR}/payment-reversals"
    op = bearer("ops-9", "operator") | {"Idempotency-Key": f"rev-{RUN}"}

    r = await portal.post(url, headers=bearer(f"B-{OPERATOR}"), json={"payment_id": f"P-{RUN}-o1", "reason": "x"})
    assert r.status_code == 403, "operators only"
    r = await portal.post(url, headers=op, json={"payment_id": f"P-{RUN}-o1", "reason": "x", "operator_id": "me"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "operator_id"

    r = await portal.post(url, headers=op, json={"payment_id": f"P-{RUN}-o1", "reason": "returned by the bank"})
    assert r.status_code == 200, r.text
    assert Decimal(r.json()["paid_total"]) == Decimal("0.00")
    again = await portal.post(url, headers=op, json={"payment_id": f"P-{RUN}-o1", "reason": "returned by the bank"})
    assert again.status_code == 200 and again.json()["paid_total"] == r.json()["paid_total"]  # the first answer
    status = await status_of(handle)
    reversal = mentions(status, f"P-{RUN}-o1", "revers")
    assert reversal and reversal[-1].details.get("operator_id") == "ops-9", status.events

    r = await portal.post(url, headers=bearer("ops-9", "operator"),
                          json={"payment_id": f"P-{RUN}-unknown", "reason": "returned"})
    assert r.status_code == 409 and r.json()["error"] == "reversal_refused" and r.json()["message"], r.text
    assert (await status_of(handle)).paid_total == Decimal("0.00")
