"""Payload encryption end to end (worker, portal and raw history on a real dev server), key
rotation, and the codec server for the Temporal UI and CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client

from domain.models import Status
from portal import create_app
from portal.auth import mint_token
from portal.codec_server import COOKIE, create_codec_app
from portal.config import PortalConfig
from runtime.client import connect
from runtime.codec import ENCODING, KEY_ID_METADATA, codec_from_keys, generate_key, key_id
from runtime.config import Settings
from tests.harness import loan_input
from tests.test_portal_support import (
    ALWAYS_OPEN,
    TZ,
    SECRET,
    bearer,
    notify,
    portal_config,
    staff_issuer,
    eventually,
    free_port,
    portal_worker,
    today,
    token,
)
from workflows import CollectionWorkflow

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[1]
RUN = uuid.uuid4().hex[:6]
UI = "http://localhost:8233"
OLD_KEY, NEW_KEY = generate_key(), generate_key()
OLD_ID, NEW_ID = key_id(base64.b64decode(OLD_KEY)), key_id(base64.b64decode(NEW_KEY))

NAME = f"欧阳娜娜{RUN}"
PHONE = "+86139" + str(int(RUN, 16) % 10**8).zfill(8)
EMAIL = f"pii.{RUN}@example.com"
ADDRESS = f"上海市浦东新区世纪大道{RUN}号"
PII = (NAME, PHONE, EMAIL, ADDRESS)


def _settings(dev_env, key: str | None) -> Settings:
    target = dev_env.client.service_client.config.target_host
    return Settings(temporal_address=target, temporal_namespace=dev_env.client.namespace,
                    encryption_key=key, portal_jwt_secret=SECRET, link_secret="encryption-test-link-secret")


def _start_input(loan_id: str, dpd: int):
    inp = loan_input(loan_id, today=today(), dpd=dpd, policy=ALWAYS_OPEN, tz=TZ, email_addr=EMAIL, address=ADDRESS)
    borrower = inp.loan.borrower.model_copy(update={"name": NAME, "phone": PHONE})
    return inp.model_copy(update={"loan": inp.loan.model_copy(update={"borrower": borrower})})


# Patch markers (workflow.patched) are written by the SDK's core as plain JSON {"id", "deprecated"}: no
# personal data, and no codec is applied to them, so they are not payloads of ours.
def _payloads(message: Message, skip: frozenset[str] = frozenset({"header", "search_attributes",
                                                                  "marker_recorded_event_attributes"})) -> Iterator[Payload]:
    """Every Payload inside a proto message (headers and search attributes aside: never encoded)."""
    for field, value in message.ListFields():
        if field.name in skip or field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif isinstance(value, Message):
            values = [value]
        else:  # a repeated field
            values = list(value)
        for v in values:
            if isinstance(v, Payload):
                yield v
            else:
                yield from _payloads(v, skip)


def _raw(history) -> bytes:
    """The history exactly as the server stores it (protobuf), every event."""
    return History(events=history.events).SerializeToString()


def _in_clear(blob: bytes) -> list[str]:
    found = []
    for secret in PII:
        forms = {secret.encode(), json.dumps(secret).strip('"').encode()}  # raw UTF-8 and \\u-escaped
        if any(f in blob for f in forms):
            found.append(secret)
    return found


def _portal(client: Client, settings: Settings) -> httpx.AsyncClient:
    app = create_app(settings, client=client, config=portal_config(temporal_timeout_seconds=3))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://portal")


async def test_history_has_no_personal_data_in_clear_and_keys_rotate(dev_env, tmp_path, monkeypatch):
    monkeypatch.delenv("COLLECTIONS_ENCRYPTION_OLD_KEYS", raising=False)
    old_client = await connect(_settings(dev_env, OLD_KEY))
    notice_loan, visit_loan = f"EN{RUN}-notice", f"EN{RUN}-visit"
    owner = f"B-{notice_loan}"
    task_queue = f"enc-{RUN}"

    # 1. Under the old key: intake, notices by SMS and email (phone, email, name), a visit task (address),
    #    and a payment through the portal.
    async with portal_worker(old_client, tmp_path / "a", task_queue=task_queue) as world:
        notice = await old_client.start_workflow(CollectionWorkflow.run, _start_input(notice_loan, 3),
                                                 id=f"loan-{notice_loan}", task_queue=task_queue)
        visit = await old_client.start_workflow(CollectionWorkflow.run, _start_input(visit_loan, 35),
                                                id=f"loan-{visit_loan}", task_queue=task_queue)
        await eventually(lambda: asyncio.sleep(0, result=[m["To"] for m in world.mail.messages]),
                         lambda to: any(EMAIL in t for t in to))
        await eventually(lambda: visit.query(CollectionWorkflow.status), lambda s: len(s.open_tasks) == 1)
        async with _portal(old_client, _settings(dev_env, OLD_KEY)) as http:
            r = await http.get(f"/v1/loans/{notice_loan}", headers=bearer(owner))
            assert r.status_code == 200, r.text
            r = await http.post(f"/v1/loans/{notice_loan}/payments", headers=bearer(owner),
                                json={"payment_id": f"P-{RUN}-1", "amount": "10.00"})
            assert r.status_code == 202, r.text
            # the provider's confirmation: the portal reads the loan's currency from its encrypted input
            r = await notify(http, notice_loan, r.json()["payment_id"], "10.00")
            assert r.status_code == 200, r.text
        await eventually(lambda: notice.query(CollectionWorkflow.status), lambda s: str(s.paid_total) == "10.00")
        sms = (world.outbox_dir / "sms.jsonl").read_text(encoding="utf-8")
        assert PHONE in sms, "the activities did receive the personal data (decrypted) to do their work"

    # control: the same input without a key is in clear in the history, so the detector below works
    plain = await connect(_settings(dev_env, None))
    control = await plain.start_workflow(CollectionWorkflow.run, _start_input(f"EN{RUN}-control", 3),
                                         id=f"loan-EN{RUN}-control", task_queue=f"nobody-{RUN}")
    assert sorted(_in_clear(_raw(await control.fetch_history()))) == sorted(PII)
    await control.terminate("control done")

    histories = {h.id: await h.fetch_history() for h in (notice, visit)}
    for wid, history in histories.items():
        blob = _raw(history)
        assert _in_clear(blob) == [], f"{wid}: personal data in clear in the history"
        payloads = [p for e in history.events for p in _payloads(e)]
        assert len(payloads) > 5
        for p in payloads:
            assert p.metadata["encoding"] == ENCODING, (wid, dict(p.metadata))
            assert p.metadata[KEY_ID_METADATA].decode() == OLD_ID

    # 2. Rotate: the new key encrypts, the old one (COLLECTIONS_ENCRYPTION_OLD_KEYS) still decrypts.
    monkeypatch.setenv("COLLECTIONS_ENCRYPTION_OLD_KEYS", OLD_KEY)
    new_client = await connect(_settings(dev_env, NEW_KEY))
    rotated_settings = _settings(dev_env, NEW_KEY)
    async with portal_worker(new_client, tmp_path / "b", task_queue=task_queue):
        async with _portal(new_client, rotated_settings) as http:
            # a fresh worker replays the old-key history to answer: old key still decrypts
            r = await http.get(f"/v1/loans/{notice_loan}", headers=bearer(owner))
            assert r.status_code == 200, r.text
            assert r.json()["paid_total"] == "10.00"
            r = await notify(http, notice_loan, f"P-{RUN}-2", "20.00")
            assert r.status_code == 200, r.text
            rotated = new_client.get_workflow_handle(notice.id)
            await eventually(lambda: rotated.query(CollectionWorkflow.status), lambda s: str(s.paid_total) == "30.00")

        # a process whose keys are out of step: a clear 503, never a 500 or garbage
        monkeypatch.delenv("COLLECTIONS_ENCRYPTION_OLD_KEYS")
        stranger = await connect(_settings(dev_env, generate_key()))
        async with _portal(stranger, _settings(dev_env, generate_key())) as http:
            r = await http.get(f"/v1/loans/{notice_loan}", headers=bearer("ops-1", "operator"))
            assert r.status_code == 503 and "decrypt" in r.json()["message"], r.text

    history = await notice.fetch_history()
    assert _in_clear(_raw(history)) == []
    ids = [p.metadata[KEY_ID_METADATA].decode() for e in history.events for p in _payloads(e)]
    assert ids[0] == OLD_ID and ids[-1] == NEW_ID and set(ids) == {OLD_ID, NEW_ID}
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [s.workflow_execution_signaled_event_attributes.input.payloads[0].metadata[KEY_ID_METADATA].decode()
            for s in signals] == [OLD_ID, NEW_ID]

    # 3. The codec server (rotated keys) shows an operator the history in clear.
    codec_app = create_codec_app(rotated_settings, origins=[UI], codec=codec_from_keys(NEW_KEY, OLD_KEY),
                                 config=portal_config())
    started = history.events[0].workflow_execution_started_event_attributes.input
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in started.payloads]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=codec_app), base_url="http://codec") as http:
        r = await http.post("/decode", json=body, headers=bearer("ops-1", "operator") | {"X-Namespace": "default"})
    assert r.status_code == 200, r.text
    [decoded] = r.json()["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    text = base64.b64decode(decoded["data"]).decode("utf-8")
    assert NAME in text and PHONE in text and EMAIL in text and ADDRESS in text


# ------------------------------------------------------------------------------------------------
# codec server


def _wire(payload: Payload) -> dict:
    return {"metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
            "data": base64.b64encode(payload.data).decode()}


@pytest.fixture
async def codec_http():
    settings = Settings(portal_jwt_secret=SECRET, encryption_key=NEW_KEY)
    app = create_codec_app(settings, origins=[UI], codec=codec_from_keys(NEW_KEY, OLD_KEY), config=portal_config())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as http:
        yield http


async def test_codec_server_takes_hs256_operator_tokens_only_in_the_demo():
    """The demo has no identity provider: COLLECTIONS_DEMO=1 without PORTAL_STAFF_JWKS lets its HS256
    operator token in. Anywhere else a token signed with PORTAL_JWT_SECRET never opens the codec server."""
    settings = Settings(portal_jwt_secret=SECRET, encryption_key=NEW_KEY)
    hs256_operator = {"Authorization": f"Bearer {mint_token(SECRET, 'demo-operator', 'operator', 600)}"}
    for config, expected in ((PortalConfig(demo=True), 200), (PortalConfig(), 401),
                             (portal_config(demo=True), 401)):
        app = create_codec_app(settings, origins=[UI], codec=codec_from_keys(NEW_KEY), config=config)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as http:
            r = await http.post("/decode", json={"payloads": []}, headers=hs256_operator)
            assert r.status_code == expected, (config, r.text)
            r = await http.post("/decode", json={"payloads": []}, headers=bearer("B-1"))
            assert r.status_code == 403, "a borrower's token never opens the codec server"


async def test_codec_server_refuses_without_an_operator_token(codec_http):
    plain = {"payloads": [_wire(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))]}
    for path in ("/encode", "/decode", "/default/decode"):
        r = await codec_http.post(path, json=plain)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await codec_http.post(path, json=plain, headers={"Authorization": "Bearer nonsense"})
        assert r.status_code == 401
        r = await codec_http.post(path, json=plain, headers={"Authorization": "Basic b3A6b3A="})
        assert r.status_code == 401
        expired = token("ops-1", "operator", ttl=-300)
        r = await codec_http.post(path, json=plain, headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["message"]
        for role in ("borrower", "agent", "agency"):
            r = await codec_http.post(path, json=plain, headers=bearer("someone", role, agency_id="AG-1"))
            assert r.status_code == 403 and r.json()["error"] == "forbidden"
        # an HS256 token claiming the operator role: whoever holds PORTAL_JWT_SECRET is no operator
        forged = mint_token(SECRET, "ops-1", "operator", 600)
        r = await codec_http.post(path, json=plain, headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and "borrower" in r.json()["message"]


async def test_codec_server_round_trips_with_an_operator_token(codec_http):
    op = bearer("ops-1", "operator")
    original = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"name": NAME}).encode())
    r = await codec_http.post("/encode", json={"payloads": [_wire(original)]}, headers=op)
    assert r.status_code == 200, r.text
    [sealed] = r.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(sealed["metadata"][KEY_ID_METADATA]).decode() == NEW_ID
    assert NAME.encode() not in base64.b64decode(sealed["data"])
    r = await codec_http.post("/default/decode", json={"payloads": [sealed]}, headers=op)
    assert r.status_code == 200
    assert r.json() == {"payloads": [_wire(original)]}

    # payloads written under the old key decode too; an unknown key is a clear 400
    [old_sealed] = await codec_from_keys(OLD_KEY).encode([original])
    r = await codec_http.post("/decode", json={"payloads": [_wire(old_sealed)]}, headers=op)
    assert r.json() == {"payloads": [_wire(original)]}
    [alien] = await codec_from_keys(generate_key()).encode([original])
    r = await codec_http.post("/decode", json={"payloads": [_wire(alien)]}, headers=op)
    assert r.status_code == 400 and r.json()["error"] == "cannot_decode"
    assert alien.metadata[KEY_ID_METADATA].decode() in r.json()["message"]
    # an empty list and a malformed body
    r = await codec_http.post("/decode", json={"payloads": []}, headers=op)
    assert r.status_code == 200 and r.json() == {"payloads": []}
    for bad in (b"{nope", b'{"payloads": [{"data": 5}]}', b'{"payloads": "x"}', b'{"other": 1}'):
        r = await codec_http.post("/decode", content=bad, headers=op | {"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_request", bad


async def test_codec_server_cors_admits_only_the_ui(codec_http):
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}
    r = await codec_http.options("/decode", headers={"Origin": UI} | preflight)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == UI
    assert r.headers["access-control-allow-credentials"] == "true"
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "x-namespace" in allowed
    r = await codec_http.options("/decode", headers={"Origin": "https://evil.example"} | preflight)
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = await codec_http.post("/decode", json={"payloads": []},
                              headers={"Origin": UI} | bearer("ops-1", "operator"))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI


async def test_codec_server_cookie_login_for_the_dev_ui(codec_http):
    page = await codec_http.get("/login")
    assert page.status_code == 200 and "<form" in page.text
    r = await codec_http.post("/login", data={"token": token("A-1", "agent")})
    assert r.status_code == 403 and COOKIE not in r.cookies
    r = await codec_http.post("/login", data={"token": token("B-1", "borrower")})
    assert r.status_code == 403 and COOKIE not in r.cookies
    r = await codec_http.post("/login", data={"token": mint_token(SECRET, "ops-1", "operator", 600)})
    assert r.status_code == 401 and COOKIE not in r.cookies
    r = await codec_http.post("/login", data={"token": "garbage"})
    assert r.status_code == 401 and COOKIE not in r.cookies
    r = await codec_http.post("/login", data={"token": token("ops-1", "operator")})
    assert r.status_code == 200
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    r = await codec_http.post("/decode", json={"payloads": []}, headers={"X-Namespace": "default"})
    assert r.status_code == 200, "the cookie stands in for the Authorization header"
    await codec_http.post("/logout")
    codec_http.cookies.clear()
    r = await codec_http.post("/decode", json={"payloads": []})
    assert r.status_code == 401


def _env(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "COLLECTIONS_", "TEMPORAL_"))}
    return base | values


async def test_python_m_portal_codec_server():
    r = subprocess.run([sys.executable, "-m", "portal.codec_server"], cwd=ROOT, capture_output=True, text=True,
                       env=_env(PORTAL_JWT_SECRET=SECRET), timeout=30)
    assert r.returncode == 2 and "COLLECTIONS_ENCRYPTION_KEY is not set" in r.stderr
    r = subprocess.run([sys.executable, "-m", "portal.codec_server"], cwd=ROOT, capture_output=True, text=True,
                       env=_env(COLLECTIONS_ENCRYPTION_KEY=NEW_KEY), timeout=30)
    assert r.returncode == 2 and "PORTAL_JWT_SECRET" in r.stderr

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "portal.codec_server"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env(PORTAL_JWT_SECRET=SECRET, COLLECTIONS_ENCRYPTION_KEY=NEW_KEY,
                                     COLLECTIONS_ENCRYPTION_OLD_KEYS=OLD_KEY, COLLECTIONS_CODEC_PORT=str(port),
                                     **staff_issuer().env()))
    try:
        [sealed] = await codec_from_keys(OLD_KEY).encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    r = await http.post("/decode", json={"payloads": [_wire(sealed)]},
                                        headers=bearer("ops-1", "operator"))
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "codec server did not come up"
                    await asyncio.sleep(0.2)
            assert r.status_code == 200 and base64.b64decode(r.json()["payloads"][0]["data"]) == b"1"
            assert (await http.post("/decode", json={"payloads": []})).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
