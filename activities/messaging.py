"""SMS and automated voice calls: a small provider interface, the outbox default, a webhook provider.

A bank plugs in its SMS gateway or dialer by implementing `SmsProvider` / `VoiceProvider` (or by
pointing the webhook providers at its own HTTP endpoint) and passing it to `MessagingActivities` in
the worker wiring. The activities render the text with `domain.notices`, keep the ledger channels
``sms_sent`` / ``voice_sent`` (checked before, written after), and hand the provider the request's
idempotency key, which the providers pass on (outbox key, ``Idempotency-Key`` header) so that a
resend after a crash between "sent" and "recorded" can be recognised downstream.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import httpx
from temporalio import activity

from runtime.telemetry import count_notice_sent

from domain.commands import DeliveryResult, NoticeRequest
from domain.notices import render_sms, render_voice_script

from runtime.links import OptOutLinks

from ._common import invalid, mask_phone, permanent, stable_id, transient, valid_phone
from ._gate import ask_first, release_if_permanent
from .borrower import ContactGate
from .outbox import Outbox

SMS_CHANNEL = "sms"
VOICE_CHANNEL = "voice"
SMS_LEDGER = "sms_sent"
VOICE_LEDGER = "voice_sent"


@runtime_checkable
class SmsProvider(Protocol):
    async def send(self, to: str, text: str, key: str) -> str:
        """Send `text` to the phone number `to`; return the provider's message id.

        Must treat `key` as an idempotency key where the provider allows it. Raise an
        ``ApplicationError(non_retryable=True, type="PermanentDeliveryFailure")`` for a refusal
        that retrying cannot fix, any other exception for a failure worth retrying.
        """
        ...


@runtime_checkable
class VoiceProvider(Protocol):
    async def call(self, to: str, script: str, key: str) -> str:
        """Place an automated call to `to` that reads `script`; return the provider's call id."""
        ...


# --------------------------------------------------------------------------------------------
# Embedded default: the outbox
# --------------------------------------------------------------------------------------------


class OutboxSmsProvider:
    """Writes each text message to ``<outbox>/sms.jsonl`` instead of a real gateway."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def send(self, to: str, text: str, key: str) -> str:
        message_id = stable_id("sms", key)
        await self.outbox.append(SMS_CHANNEL, key, {"to": to, "text": text, "message_id": message_id})
        return message_id


class OutboxVoiceProvider:
    """Writes each call (number and script) to ``<outbox>/voice.jsonl`` instead of a real dialer."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def call(self, to: str, script: str, key: str) -> str:
        call_id = stable_id("call", key)
        await self.outbox.append(VOICE_CHANNEL, key, {"to": to, "script": script, "call_id": call_id})
        return call_id


# --------------------------------------------------------------------------------------------
# Webhook providers: the bank's own HTTP endpoint
# --------------------------------------------------------------------------------------------


class _Webhook:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 10,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url: {url!r} must be an http:// or https:// URL")
        self.url = url
        self.token = token
        self.timeout = timeout
        self._client = client
        """A shared client (connection pooling, custom TLS); a fresh one per request when None."""

    async def _post(self, body: dict[str, Any], key: str) -> str:
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self._client is not None:
                response = await self._client.post(self.url, json=body, headers=headers, timeout=self.timeout)
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transient(f"webhook {self.url} unreachable: {type(exc).__name__}: {exc}") from exc

        status = response.status_code
        if 200 <= status < 300:
            return _id_from(response) or key
        detail = _short(response.text)
        if status in (408, 429) or status >= 500:
            raise transient(
                f"webhook {self.url} answered {status}: {detail}", retry_after=_retry_after(response)
            )
        if 400 <= status < 500:
            raise permanent(f"webhook {self.url} refused the request with {status}: {detail}")
        # 1xx/3xx: a misrouted endpoint (redirects are not followed); worth retrying once fixed.
        raise transient(f"webhook {self.url} answered {status}; expected 2xx")


class WebhookSmsProvider(_Webhook):
    """POSTs ``{"key", "to", "text"}`` to the bank's SMS endpoint."""

    async def send(self, to: str, text: str, key: str) -> str:
        return await self._post({"key": key, "to": to, "text": text}, key)


class WebhookVoiceProvider(_Webhook):
    """POSTs ``{"key", "to", "script"}`` to the bank's dialer endpoint."""

    async def call(self, to: str, script: str, key: str) -> str:
        return await self._post({"key": key, "to": to, "script": script}, key)


def _id_from(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("id") not in (None, ""):
        return str(body["id"])
    return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    if seconds <= 0:
        return None
    return timedelta(seconds=min(seconds, 3600))


# --------------------------------------------------------------------------------------------
# Activities
# --------------------------------------------------------------------------------------------


class MessagingActivities:
    """The ``send_sms`` and ``send_voice`` activities."""

    def __init__(self, sms: SmsProvider, voice: VoiceProvider, ledger: Outbox, portal_url: str, *,
                 gate: ContactGate | None = None, links: OptOutLinks | None = None) -> None:
        self.sms = sms
        self.voice = voice
        self.ledger = ledger
        self.portal_url = portal_url
        self.gate = gate
        """Asks the borrower's entity before sending (requests that carry a `gate`)."""
        self.links = links
        """Signs the opt-out link every text message of a borrower-v1 loan ends with."""
        self._in_flight: set[str] = set()

    @activity.defn(name="send_sms")
    async def send_sms(self, req: NoticeRequest) -> DeliveryResult:
        if req.channel != "sms":
            raise invalid(f"channel: send_sms sends sms notices, not {req.channel!r} (key {req.key})")
        link = self.links.link(req.borrower_id, "sms") if self.links and req.borrower_id else None
        return await self._deliver(req, SMS_LEDGER, lambda: render_sms(req, self.portal_url, link), self.sms.send)

    @activity.defn(name="send_voice")
    async def send_voice(self, req: NoticeRequest) -> DeliveryResult:
        if req.channel != "voice":
            raise invalid(f"channel: send_voice places voice calls, not {req.channel!r} (key {req.key})")
        return await self._deliver(req, VOICE_LEDGER, lambda: render_voice_script(req), self.voice.call)

    async def _deliver(self, req: NoticeRequest, ledger_channel: str, render, send) -> DeliveryResult:  # type: ignore[no-untyped-def]
        log = activity.logger
        name = f"send_{req.channel}"
        if not valid_phone(req.to):
            raise permanent(f"to: {req.to!r} is not a phone number such as +8613800000000 (key {req.key})")

        previous = await self.ledger.get(ledger_channel, req.key)
        if previous is not None:
            log.info("%s key=%s loan=%s: already sent, nothing sent again", name, req.key, req.loan_id)
            return DeliveryResult(
                key=req.key,
                channel=req.channel,
                provider_message_id=previous.get("provider_message_id"),
                duplicate=True,
            )
        if req.key in self._in_flight:
            raise transient(f"a {req.channel} for key {req.key} is being sent by another attempt; retry later")

        try:
            content = render()
        except ValueError as exc:
            raise invalid(f"{exc} (key {req.key})") from exc
        decision = await ask_first(self.gate, req)
        if decision is not None:
            return DeliveryResult(key=req.key, channel=req.channel, decision=decision)

        self._in_flight.add(req.key)
        try:
            provider_id = await send(req.to, content, req.key)
        except BaseException as exc:
            await release_if_permanent(self.gate, req, exc)
            raise
        finally:
            self._in_flight.discard(req.key)

        await self.ledger.append(
            ledger_channel,
            req.key,
            {
                "loan_id": req.loan_id,
                "kind": req.kind.value,
                "stage": req.stage.value if req.stage else None,
                "attempt": req.attempt,
                "to": req.to,
                "provider_message_id": provider_id,
            },
        )
        log.info(
            "%s key=%s loan=%s to=%s: sent, provider id %s",
            name,
            req.key,
            req.loan_id,
            mask_phone(req.to),
            provider_id,
        )
        count_notice_sent(activity.metric_meter(), channel=req.channel, kind=req.kind)
        return DeliveryResult(key=req.key, channel=req.channel, provider_message_id=provider_id)
