"""The webhook SMS and voice providers against a real HTTP server on localhost: what it receives,
and which answers Temporal may retry."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messaging import MessagingActivities, WebhookSmsProvider, WebhookVoiceProvider
from activities.outbox import Outbox
from domain.commands import NoticeKind, NoticeRequest
from domain.notices import render_sms, render_voice_script

PORTAL = "http://localhost:8000"


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class Gateway:
    """A bank's SMS gateway / dialer: answers by path."""

    hits: list[Hit] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str, body: dict) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/ok"):
            return 200, {}, json.dumps({"id": f"gw-{len(self.hits)}", "status": "queued"}).encode()
        if path.endswith("/accepted-no-body"):
            return 202, {}, b""
        if path.endswith("/bad-number"):
            return 400, {}, json.dumps({"error": "invalid destination number"}).encode()
        if path.endswith("/forbidden"):
            return 403, {}, b"token not allowed"
        if path.endswith("/busy"):
            return 503, {}, b"upstream carrier unavailable"
        if path.endswith("/throttled"):
            return 429, {"Retry-After": "7"}, b"slow down"
        if path.endswith("/request-timeout"):
            return 408, {}, b""
        return 404, {}, b"no such endpoint"


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            state.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, headers, payload = state.answer(self.path, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def notice(channel: str = "sms", **overrides) -> NoticeRequest:
    values = dict(
        key=f"WL-2024-000123:notice:{channel}:0",
        loan_id="WL-2024-000123",
        channel=channel,
        kind=NoticeKind.COLLECTION,
        stage="notice",
        to="+8613800000000",
        borrower_name="张三",
        locale="zh-CN",
        currency="CNY",
        amount_owed="5123.45",
        days_past_due=12,
    )
    values.update(overrides)
    return NoticeRequest(**values)


async def test_sms_webhook_receives_key_to_text_with_idempotency_key_and_token(gateway: Gateway) -> None:
    provider = WebhookSmsProvider(f"{gateway.url}/sms/ok", token="tok-123")
    message_id = await provider.send("+8613800000000", "您好 5123.45", "key-1")
    assert message_id == "gw-1"
    [hit] = gateway.hits
    assert hit.path == "/sms/ok"
    assert hit.body == {"key": "key-1", "to": "+8613800000000", "text": "您好 5123.45"}
    assert hit.headers["idempotency-key"] == "key-1"
    assert hit.headers["authorization"] == "Bearer tok-123"
    assert hit.headers["content-type"].startswith("application/json")


async def test_voice_webhook_sends_the_script(gateway: Gateway) -> None:
    provider = WebhookVoiceProvider(f"{gateway.url}/voice/ok")
    call_id = await provider.call("+8613800000000", "Hello.", "key-v")
    assert call_id == "gw-1"
    [hit] = gateway.hits
    assert hit.body == {"key": "key-v", "to": "+8613800000000", "script": "Hello."}
    assert "authorization" not in hit.headers  # no token configured, none sent


async def test_2xx_without_an_id_answers_the_key(gateway: Gateway) -> None:
    provider = WebhookSmsProvider(f"{gateway.url}/accepted-no-body")
    assert await provider.send("+8613800000000", "x", "key-2") == "key-2"


@pytest.mark.parametrize(("path", "status"), [("bad-number", 400), ("forbidden", 403), ("nowhere", 404)])
async def test_4xx_is_a_permanent_failure(gateway: Gateway, path: str, status: int) -> None:
    provider = WebhookSmsProvider(f"{gateway.url}/{path}", token="t")
    with pytest.raises(ApplicationError) as caught:
        await provider.send("+8613800000000", "x", "key-3")
    assert caught.value.non_retryable is True
    assert caught.value.type == "PermanentDeliveryFailure"
    assert str(status) in caught.value.message


@pytest.mark.parametrize(("path", "status"), [("busy", 503), ("throttled", 429), ("request-timeout", 408)])
async def test_5xx_408_429_are_retryable(gateway: Gateway, path: str, status: int) -> None:
    provider = WebhookVoiceProvider(f"{gateway.url}/{path}")
    with pytest.raises(ApplicationError) as caught:
        await provider.call("+8613800000000", "x", "key-4")
    assert caught.value.non_retryable is False
    assert caught.value.type == "TransientDeliveryFailure"
    assert str(status) in caught.value.message
    if status == 429:
        assert caught.value.next_retry_delay == timedelta(seconds=7)  # the gateway's Retry-After


async def test_unreachable_gateway_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = WebhookSmsProvider(f"http://127.0.0.1:{port}/sms", timeout=2)
    with pytest.raises(ApplicationError) as caught:
        await provider.send("+8613800000000", "x", "key-5")
    assert caught.value.non_retryable is False
    assert "unreachable" in caught.value.message


def test_a_url_that_is_not_http_is_refused_at_wiring_time() -> None:
    with pytest.raises(ValueError, match="url"):
        WebhookSmsProvider("ftp://gateway/sms")


async def test_send_sms_and_send_voice_through_webhooks_once_per_key(gateway: Gateway, tmp_path: Path) -> None:
    ledger = Outbox(tmp_path)
    acts = MessagingActivities(
        WebhookSmsProvider(f"{gateway.url}/sms/ok", token="t"),
        WebhookVoiceProvider(f"{gateway.url}/voice/ok", token="t"),
        ledger,
        PORTAL,
    )
    env = ActivityEnvironment()
    sms = notice("sms")
    first = await env.run(acts.send_sms, sms)
    again = await env.run(acts.send_sms, sms)
    assert first.provider_message_id == "gw-1" and first.duplicate is False
    assert again.duplicate is True and again.provider_message_id == "gw-1"
    assert len(gateway.hits) == 1
    assert gateway.hits[0].body["text"] == render_sms(sms, PORTAL)
    assert "5123.45" in gateway.hits[0].body["text"]

    voice = notice("voice", locale="en", borrower_name="Zhang San")
    result = await env.run(acts.send_voice, voice)
    assert result.channel == "voice" and result.provider_message_id == "gw-2"
    assert gateway.hits[1].path == "/voice/ok"
    assert gateway.hits[1].body["script"] == render_voice_script(voice)
    assert gateway.hits[1].headers["idempotency-key"] == voice.key

    assert [r["key"] for r in ledger.read("sms_sent")] == [sms.key]
    assert [r["provider_message_id"] for r in ledger.read("voice_sent")] == ["gw-2"]


async def test_a_refused_sms_is_not_recorded_and_fails_for_good(gateway: Gateway, tmp_path: Path) -> None:
    ledger = Outbox(tmp_path)
    acts = MessagingActivities(
        WebhookSmsProvider(f"{gateway.url}/bad-number"), WebhookVoiceProvider(f"{gateway.url}/busy"), ledger, PORTAL
    )
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(acts.send_sms, notice("sms"))
    assert refused.value.non_retryable is True
    with pytest.raises(ApplicationError) as busy:
        await ActivityEnvironment().run(acts.send_voice, notice("voice"))
    assert busy.value.non_retryable is False
    assert ledger.read("sms_sent") == [] and ledger.read("voice_sent") == []
