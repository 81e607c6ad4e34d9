"""Email notices over real SMTP (aiosmtplib).

Idempotent by the request's key: the ledger channel ``email`` is checked before sending and
written after a successful send; a key already there answers ``duplicate=True`` and sends nothing.
The Message-ID is derived from the key, so the rare resend after a crash between "sent" and
"recorded" carries the same Message-ID and mail systems can recognise it.

Failures:
- permanent (``ApplicationError``, ``non_retryable=True``, type ``PermanentDeliveryFailure``): a
  malformed address, the server refusing the recipient or the message with a 5xx;
- retryable (type ``TransientDeliveryFailure``): connection refused, timeouts, disconnects, 4xx;
- retryable (type ``AdapterConfigurationError``): our own SMTP login or sender refused, STARTTLS
  missing; retried so that no notice is lost while an operator fixes the settings;
- non-retryable (type ``InvalidRequest``): a request this adapter cannot carry out (not an email
  request, an installment reminder without its installment).

No heartbeats: one SMTP conversation bounded by a short timeout (10 s by default), well inside the
activity's start-to-close timeout.

Observability: the SMTP conversation runs in an OpenTelemetry CLIENT span ``smtp.send``, a child of
the activity's ``RunActivity:send_email`` span when tracing is on (a no-op otherwise). Its
attributes name the notice (key, channel, kind, stage, attempt, loan id, Message-ID) and the SMTP
server, never the borrower's address or name or the message text. A delivered notice counts in
``collections_notices_sent{channel="email", kind}``; a duplicate does not.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.commands import DeliveryResult, NoticeRequest
from domain.notices import RenderedNotice, render_notice
from runtime.config import SmtpSettings
from runtime.telemetry import count_notice_sent

from runtime.links import OptOutLinks

from ._common import invalid, mask_email, misconfigured, permanent, transient
from ._gate import ask_first, release_if_permanent
from .borrower import ContactGate
from .outbox import Outbox

LEDGER_CHANNEL = "email"
SMTP_POLICY = email.policy.SMTP.clone(max_line_length=998)
SPAN_NAME = "smtp.send"
_tracer = trace.get_tracer("collections.activities.email")
_ADDRESS_RE = re.compile(r"^[^@\s<>,;\"()\[\]\\]+@[^@\s<>,;\"()\[\]\\]+\.[^@\s<>,;\"()\[\]\\]+$")


def message_id_for(key: str, sender: str) -> str:
    """The Message-ID of the email sent under `key`: the same key, the same Message-ID."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "collections.localhost"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.collections@{domain}>"


class EmailActivities:
    """The ``send_email`` activity. Register ``EmailActivities(...).send_email`` on the worker."""

    def __init__(
        self,
        smtp: SmtpSettings,
        ledger: Outbox,
        portal_url: str,
        *,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        gate: ContactGate | None = None,
        links: OptOutLinks | None = None,
    ) -> None:
        self.gate = gate
        """Asks the borrower's entity before sending (requests that carry a `gate`)."""
        self.links = links
        """Signs the one-click opt-out link every email carries (List-Unsubscribe, RFC 8058)."""
        self.smtp = smtp
        self.ledger = ledger
        self.portal_url = portal_url
        self.timeout = timeout
        self.tls_context = tls_context
        """Trust for the SMTP server's certificate (a private CA); the system's CAs when None."""
        self._in_flight: set[str] = set()

    @activity.defn(name="send_email")
    async def send_email(self, req: NoticeRequest) -> DeliveryResult:
        log = activity.logger
        if req.channel != "email":
            raise invalid(f"channel: send_email sends email notices, not {req.channel!r} (key {req.key})")
        address = _check_address(req.to)

        previous = await self.ledger.get(LEDGER_CHANNEL, req.key)
        if previous is not None:
            log.info("send_email key=%s loan=%s: already sent, nothing sent again", req.key, req.loan_id)
            return DeliveryResult(
                key=req.key,
                channel="email",
                provider_message_id=previous.get("message_id"),
                duplicate=True,
            )
        if req.key in self._in_flight:
            raise transient(f"an email for key {req.key} is being sent by another attempt; retry later")
        decision = await ask_first(self.gate, req)
        if decision is not None:
            return DeliveryResult(key=req.key, channel="email", decision=decision)

        try:
            rendered = render_notice(req, self.portal_url, self._opt_out_link(req))
        except ValueError as exc:
            raise invalid(f"{exc} (key {req.key})") from exc
        message = self.build_message(req, address, rendered)
        message_id = message["Message-ID"]

        self._in_flight.add(req.key)
        try:
            with _tracer.start_as_current_span(
                SPAN_NAME,
                kind=SpanKind.CLIENT,
                attributes=self._span_attributes(req, message_id),
                record_exception=False,  # exception texts may quote the recipient address
                set_status_on_exception=False,
            ) as span:
                try:
                    await self._deliver(message, address)
                except BaseException as exc:
                    _mark_failed(span, exc)
                    await release_if_permanent(self.gate, req, exc)
                    raise
        finally:
            self._in_flight.discard(req.key)

        await self.ledger.append(
            LEDGER_CHANNEL,
            req.key,
            {
                "loan_id": req.loan_id,
                "kind": req.kind.value,
                "stage": req.stage.value if req.stage else None,
                "attempt": req.attempt,
                "to": address,
                "subject": rendered.subject,
                "locale": rendered.locale,
                "message_id": message_id,
                "smtp_server": f"{self.smtp.host}:{self.smtp.port}",
            },
        )
        log.info(
            "send_email key=%s loan=%s to=%s: sent, Message-ID %s",
            req.key,
            req.loan_id,
            mask_email(address),
            message_id,
        )
        count_notice_sent(activity.metric_meter(), channel="email", kind=req.kind)
        return DeliveryResult(key=req.key, channel="email", provider_message_id=message_id)

    def _span_attributes(self, req: NoticeRequest, message_id: str) -> dict[str, str | int]:
        """What identifies the send, and nothing about the borrower (no address, name or text)."""
        attributes: dict[str, str | int] = {
            "collections.notice.key": req.key,
            "collections.notice.channel": "email",
            "collections.notice.kind": req.kind.value,
            "collections.notice.attempt": req.attempt,
            "collections.loan_id": req.loan_id,
            "collections.email.message_id": message_id,
            "server.address": self.smtp.host,
            "server.port": self.smtp.port,
            "smtp.tls": self.smtp.tls,
        }
        if req.stage is not None:
            attributes["collections.notice.stage"] = req.stage.value
        return attributes

    def _opt_out_link(self, req: NoticeRequest) -> str | None:
        if self.links is None or not req.borrower_id:
            return None
        return self.links.link(req.borrower_id, "email")

    def build_message(self, req: NoticeRequest, address: str, rendered: RenderedNotice) -> EmailMessage:
        # RFC 5322's line limit (998), not the 78 of the default policy: folding would turn the long
        # List-Unsubscribe URL into encoded words, and mailbox providers then show no unsubscribe button.
        message = EmailMessage(policy=SMTP_POLICY)
        message["Subject"] = rendered.subject
        message["From"] = self.smtp.sender
        local, _, domain = address.rpartition("@")
        try:
            message["To"] = Address(display_name=req.borrower_name, username=local, domain=domain)
        except (ValueError, TypeError):
            message["To"] = address
        message["Message-ID"] = message_id_for(req.key, self.smtp.sender)
        message["Date"] = formatdate(usegmt=True)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Collections-Key"] = req.key
        message["X-Collections-Loan-Id"] = req.loan_id
        link = self._opt_out_link(req)
        if link is not None:
            # RFC 2369 and RFC 8058 one-click: the mailbox provider POSTs "List-Unsubscribe=One-Click" to it.
            message["List-Unsubscribe"] = f"<{link}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        # After the body: making the message multipart moves Content-* headers into the first part.
        message["Content-Language"] = rendered.locale
        return message

    async def _deliver(self, message: EmailMessage, address: str) -> None:
        smtp = self.smtp
        server = f"{smtp.host}:{smtp.port}"
        options: dict[str, Any] = {
            "sender": parseaddr(smtp.sender)[1] or smtp.sender,
            "recipients": [address],
            "hostname": smtp.host,
            "port": smtp.port,
            "timeout": self.timeout,
            "use_tls": smtp.tls == "tls",
            "start_tls": smtp.tls == "starttls",
        }
        if smtp.username:
            options["username"] = smtp.username
            options["password"] = smtp.password or ""
        if self.tls_context is not None and smtp.tls != "none":
            options["tls_context"] = self.tls_context
        who = mask_email(address)
        try:
            # flattened here with RFC 5322's 998-column limit (aiosmtplib would fold at 78, see SMTP_POLICY)
            await aiosmtplib.send(message.as_bytes(policy=SMTP_POLICY), **options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if any(code >= 500 for code in codes):
                raise permanent(f"SMTP server {server} refused recipient {who}: {detail}") from exc
            raise transient(f"SMTP server {server} deferred recipient {who}: {detail}") from exc
        except aiosmtplib.SMTPRecipientRefused as exc:
            if exc.code >= 500:
                raise permanent(f"SMTP server {server} refused recipient {who}: {exc.code} {exc.message}") from exc
            raise transient(f"SMTP server {server} deferred recipient {who}: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise misconfigured(
                f"SMTP server {server} refused the login of {smtp.username!r}: {exc.code} {exc.message}; "
                "check SMTP_USERNAME, SMTP_PASSWORD and SMTP_TLS"
            ) from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            if exc.code >= 500:
                raise misconfigured(
                    f"SMTP server {server} refused the sender {exc.sender!r}: {exc.code} {exc.message}; check SMTP_FROM"
                ) from exc
            raise transient(f"SMTP server {server} deferred the sender: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPDataError as exc:
            if exc.code >= 500:
                raise permanent(
                    f"SMTP server {server} rejected the message to {who}: {exc.code} {exc.message}"
                ) from exc
            raise transient(f"SMTP server {server} deferred the message: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise misconfigured(f"SMTP server {server}: {exc}; check SMTP_TLS and SMTP_USERNAME") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise transient(f"SMTP server {server} answered {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection refused, timeouts, disconnects, TLS handshake failures.
            raise transient(f"SMTP server {server} unreachable: {type(exc).__name__}: {exc}") from exc


def _mark_failed(span: trace.Span, exc: BaseException) -> None:
    """Failure type and SMTP reply code on the span; not the message, which may quote the address."""
    kind = (exc.type if isinstance(exc, ApplicationError) else None) or type(exc).__name__
    span.set_status(Status(StatusCode.ERROR, kind))
    span.set_attribute("error.type", kind)
    if isinstance(exc, ApplicationError):
        span.set_attribute("collections.retryable", not exc.non_retryable)
    code = getattr(exc.__cause__, "code", None)
    if isinstance(code, int):
        span.set_attribute("smtp.response.code", code)
    else:
        codes = [r.code for r in getattr(exc.__cause__, "recipients", []) if isinstance(getattr(r, "code", None), int)]
        if codes:
            span.set_attribute("smtp.response.code", max(codes))


def _check_address(to: str) -> str:
    address = (to or "").strip()
    if not _ADDRESS_RE.match(address):
        raise permanent(f"to: {to!r} is not an email address such as name@example.com")
    local, _, domain = address.rpartition("@")
    try:
        Address(username=local, domain=domain)
    except (ValueError, TypeError) as exc:
        raise permanent(f"to: {to!r} is not a valid email address: {exc}") from exc
    return address
