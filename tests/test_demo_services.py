"""The demo's moving parts on their own: port choice, the demo's secrets and child environments, and
the borrowers' HTTP client against a real portal (uvicorn on localhost) and a real worker on the dev
server, including retries whose first answer was lost on the way back."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from demo.borrower_portal import BorrowerPortal, PortalRefused, plans_so_far
from demo.run import choose_ports, codec_env, make_secrets, portal_env, worker_env, write_env_file
from demo.ports import PortError, PortPlan, port_free
from domain.models import LoanState, PaymentPlanProposal
from portal import create_app
from runtime.codec import KEY_ENV, OLD_KEYS_ENV, EncryptionConfigError, generate_key
from runtime.config import Settings
from tests.test_portal_support import (
    SECRET,
    World,
    eventually,
    free_port,
    portal_config,
    portal_worker,
    status_of,
    today,
)

# ------------------------------------------------------------------------------------------------
# Ports


def _listen() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_busy_default_port_moves_and_an_explicit_one_is_an_error_naming_it():
    with _listen() as busy:
        port = busy.getsockname()[1]
        assert not port_free(port)
        plan = PortPlan()
        moved = plan.choose("borrower portal", "--portal-port", None, port)
        assert moved.moved and moved.port != port and port_free(moved.port)
        assert f"port {port} is in use" in moved.note and f"--portal-port {moved.port}" in moved.note
        with pytest.raises(PortError) as err:
            PortPlan().choose("borrower portal", "--portal-port", port, 8000)
        assert f"port {port}" in str(err.value) and "--portal-port" in str(err.value) and "in use" in str(err.value)


def test_ports_are_never_chosen_twice():
    plan = PortPlan()
    free = free_port()
    first = plan.choose("a", "--a", None, free)
    second = plan.choose("b", "--b", None, free)  # same default: the second moves on
    assert first.port == free and not first.moved
    assert second.port != first.port and second.moved
    with pytest.raises(PortError, match="the same port as --a"):
        plan.choose("c", "--c", free, 1)
    with pytest.raises(PortError, match="not a TCP port"):
        plan.choose("d", "--d", 70000, 1)


def _args(**over: Any) -> SimpleNamespace:
    base = {"port": None, "ui_port": None, "smtp_port": None, "portal_port": None, "codec_port": None}
    return SimpleNamespace(**(base | over))


def test_secrets_and_child_environments(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(OLD_KEYS_ENV, "not-a-key")  # the caller's leftovers never reach a fresh-key run
    keys = make_secrets(no_encryption=False)
    assert keys.encryption_key and not keys.key_is_callers and keys.old_keys is None
    assert len(keys.jwt_secret.encode()) >= 32 and keys.key_id and len(keys.key_id) == 8
    assert make_secrets(no_encryption=False).encryption_key != keys.encryption_key  # fresh per run

    ports = choose_ports(_args(), encryption=True)
    assert ports.codec is not None and len({p.port for p in ports.all()}) == 5
    w = worker_env(tmp_path, ports, keys)
    assert w[KEY_ENV] == keys.encryption_key and OLD_KEYS_ENV not in w
    assert w["TEMPORAL_ADDRESS"] == f"127.0.0.1:{ports.temporal.port}"
    assert w["SMTP_PORT"] == str(ports.smtp.port) and w["COLLECTIONS_PORTAL_URL"].endswith(f":{ports.portal.port}")
    p = portal_env(ports, keys)
    assert p["PORTAL_JWT_SECRET"] == keys.jwt_secret and p["PORTAL_PORT"] == str(ports.portal.port)
    assert p[KEY_ENV] == keys.encryption_key
    c = codec_env(ports, keys)
    assert c["COLLECTIONS_CODEC_PORT"] == str(ports.codec.port) and c[KEY_ENV] == keys.encryption_key
    assert f"http://localhost:{ports.ui.port}" in c["COLLECTIONS_UI_ORIGIN"].split(",")

    env_file = tmp_path / "demo.env"
    write_env_file(env_file, ports, keys)
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert f"{KEY_ENV}={keys.encryption_key}" in env_file.read_text()

    # The caller's key is used, validated, and never written to disk.
    mine = generate_key()
    monkeypatch.setenv(KEY_ENV, mine)
    monkeypatch.delenv(OLD_KEYS_ENV)
    theirs = make_secrets(no_encryption=False)
    assert theirs.encryption_key == mine and theirs.key_is_callers
    write_env_file(env_file, ports, theirs)
    assert mine not in env_file.read_text()
    monkeypatch.setenv(KEY_ENV, "abc")
    with pytest.raises(EncryptionConfigError, match=KEY_ENV):
        make_secrets(no_encryption=False)

    # --no-encryption: no key anywhere, no codec server port.
    off = make_secrets(no_encryption=True)
    assert off.encryption_key is None
    plain = choose_ports(_args(), encryption=False)
    assert plain.codec is None
    assert KEY_ENV not in worker_env(tmp_path, plain, off) and KEY_ENV not in portal_env(plain, off)


# ------------------------------------------------------------------------------------------------
# The borrowers' client against a real portal


async def _serve(app: Any, port: int | None = None) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, task


def lossy_proxy(upstream: str, lose: set[str]) -> tuple[FastAPI, list[str]]:
    """Forwards every request to the portal; for the first request to each path in `lose` it
    throws the portal's answer away and says 503, as a load balancer timing out would: the request
    did reach the loan, the borrower's app does not know it."""
    app = FastAPI()
    seen: list[str] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        async with httpx.AsyncClient(base_url=upstream, timeout=20) as http:
            answer = await http.request(request.method, f"/{path}", content=await request.body(),
                                        headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
        key = f"{request.method} /{path}"
        seen.append(f"{key} {answer.status_code}")
        if f"/{path}" in lose:
            lose.discard(f"/{path}")
            return JSONResponse({"error": "unavailable", "message": "upstream timed out"}, status_code=503,
                                headers={"Retry-After": "0"})
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    return app, seen


@pytest.fixture(scope="module")
async def portal_url(dev_env, tmp_path_factory) -> AsyncIterator[tuple[str, World]]:
    async with portal_worker(dev_env.client, tmp_path_factory.mktemp("demo-portal")) as world:
        port = free_port()  # the local payment provider confirms to this portal, as in the demo (demo mode)
        app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=world.task_queue, portal_port=port),
                         client=dev_env.client, config=portal_config(demo=True))
        base, server, task = await _serve(app, port)
        try:
            yield base, world
        finally:
            server.should_exit = True
            await task


@pytest.mark.devserver
async def test_borrower_reads_pays_and_gets_a_plan_through_the_portal(portal_url):
    base, world = portal_url
    loan_id = f"DP{uuid.uuid4().hex[:6]}-A"
    await world.start_loan(loan_id, dpd=5, principal="1000.00")
    borrower = f"B-{loan_id}"
    async with BorrowerPortal(base, SECRET) as portal:
        status = await eventually(lambda: portal.status(loan_id, borrower), lambda s: s.stage is not None)
        assert status.loan_id == loan_id and status.state == LoanState.COLLECTING

        receipt = await portal.pay(loan_id, borrower, f"{loan_id}-p1", Decimal("100.00"))
        assert receipt.duplicate is False
        again = await portal.pay(loan_id, borrower, f"{loan_id}-p1", Decimal("100.00"))
        assert again.payment_id == receipt.payment_id  # a retry is the same payment; the workflow credits it once
        status = await eventually(lambda: portal.status(loan_id, borrower), lambda s: s.paid_total > 0)
        await asyncio.sleep(0.5)
        assert (await portal.status(loan_id, borrower)).paid_total == Decimal("100.00")

        proposal = PaymentPlanProposal(installments=3, first_due_date=today() + timedelta(days=5), interval_days=7)
        decision = await portal.propose_plan(loan_id, borrower, proposal, plans_before=plans_so_far(status))
        assert decision.accepted and len(decision.schedule) == 3
        refused = await portal.propose_plan(loan_id, borrower, proposal, plans_before=1)
        assert not refused.accepted and refused.reason  # a plan is running: the workflow says no, with the reason

        # Another borrower's loan, a bad token: the portal's refusals come back as PortalRefused.
        with pytest.raises(PortalRefused) as err:
            await portal.status(loan_id, "B-someone-else")
        assert err.value.status_code == 403 and err.value.error == "forbidden"
        assert portal.answers["POST payments 202"] == 2 and portal.answers["POST payment-plans 200"] == 2
    async with BorrowerPortal(base, "another-secret-of-at-least-32-bytes!!") as stranger:
        with pytest.raises(PortalRefused) as err:
            await stranger.status(loan_id, borrower)
        assert err.value.status_code == 401


@pytest.mark.devserver
async def test_lost_answers_are_retried_without_paying_twice_or_proposing_twice(portal_url):
    base, world = portal_url
    loan_id = f"DP{uuid.uuid4().hex[:6]}-L"
    handle = await world.start_loan(loan_id, dpd=5, principal="1000.00")
    borrower = f"B-{loan_id}"
    proxy, seen = lossy_proxy(base, {f"/v1/loans/{loan_id}/payments", f"/v1/loans/{loan_id}/payment-plans"})
    proxy_url, server, task = await _serve(proxy)
    try:
        async with BorrowerPortal(proxy_url, SECRET) as portal:
            status = await eventually(lambda: portal.status(loan_id, borrower), lambda s: s.stage is not None)
            # The payment's first answer is lost (503 after the portal started it); the retry starts the
            # same payment (same id), so however often the provider confirms, the loan credits it once.
            receipt = await portal.pay(loan_id, borrower, f"{loan_id}-p1", Decimal("50.00"))
            assert receipt.payment_id == f"{loan_id}-p1"
            assert portal.answers["POST payments 503"] == 1 and portal.answers["POST payments 202"] == 1
            status = await eventually(lambda: status_of(handle), lambda s: s.paid_total > 0)
            await asyncio.sleep(0.5)
            status = await status_of(handle)
            assert status.paid_total == Decimal("50.00")
            assert [e.kind for e in status.events].count("payment_applied") == 1

            # The plan's first answer is lost after the workflow accepted it: the client finds the
            # plan in the status instead of proposing again (which the workflow would refuse).
            proposal = PaymentPlanProposal(installments=2, first_due_date=today() + timedelta(days=5),
                                           interval_days=14)
            decision = await portal.propose_plan(loan_id, borrower, proposal, plans_before=plans_so_far(status))
            assert decision.accepted and len(decision.schedule) == 2
            assert portal.answers["POST payment-plans 503"] == 1 and "POST payment-plans 200" not in portal.answers
            after = await status_of(handle)
            assert after.state == LoanState.RESTRUCTURING and after.plan is not None and after.plan.plan_number == 1
            assert [e.kind for e in after.events].count("plan_accepted") == 1
            assert [e.kind for e in after.events].count("plan_refused") == 0
        assert any(s.startswith(f"POST /v1/loans/{loan_id}/payment-plans 200") for s in seen)
    finally:
        server.should_exit = True
        await task
