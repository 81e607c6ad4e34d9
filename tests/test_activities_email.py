"""send_email against a real SMTP server (aiosmtpd, started here), run through Temporal's
ActivityEnvironment: what arrives, idempotency by key, and which failures Temporal may retry."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities, message_id_for
from activities.outbox import Outbox
from domain.commands import NoticeKind, NoticeRequest
from domain.models import Stage
from domain.notices import render_notice
from runtime.config import SmtpSettings

PORTAL = "https://pay.example-bank.cn"
SENDER = "Collections <collections@example-bank.cn>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class Sink:
    """An SMTP server's handler: keeps what it accepts, refuses and defers some recipients."""

    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("refused"):
            return "550 5.1.1 Recipient address rejected: user unknown"
        if address.startswith("busy"):
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def notice(locale: str = "en", **overrides) -> NoticeRequest:
    values = dict(
        key=f"WL-2024-000123:notice:email:{locale}:0",
        loan_id="WL-2024-000123",
        channel="email",
        kind=NoticeKind.COLLECTION,
        stage=Stage.NOTICE,
        to="zhangsan@example.com",
        borrower_name="张三" if locale == "zh-CN" else "Zhang San",
        locale=locale,
        currency="CNY",
        amount_owed="5123.45",
        days_past_due=40,
    )
    values.update(overrides)
    return NoticeRequest(**values)


def activities(port: int, outbox: Path, **smtp) -> EmailActivities:
    settings = SmtpSettings(host="127.0.0.1", port=port, sender=SENDER, **smtp)
    return EmailActivities(settings, Outbox(outbox), PORTAL, timeout=5)


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
async def test_notice_arrives_with_recipient_subject_body_and_message_id(
    smtp_server: tuple[Sink, int], tmp_path: Path, locale: str
) -> None:
    sink, port = smtp_server
    req = notice(locale)
    result = await ActivityEnvironment().run(activities(port, tmp_path).send_email, req)

    expected = render_notice(req, PORTAL)
    message_id = message_id_for(req.key, SENDER)
    assert result.key == req.key and result.channel == "email" and result.duplicate is False
    assert result.provider_message_id == message_id

    [got] = sink.received
    assert got.mail_from == "collections@example-bank.cn"
    assert got.rcpt_tos == ["zhangsan@example.com"]
    m = got.message
    assert m["To"].addresses[0].addr_spec == "zhangsan@example.com"
    assert m["To"].addresses[0].display_name == req.borrower_name
    assert m["From"] == SENDER
    assert m["Subject"] == expected.subject
    assert m["Message-ID"] == message_id
    assert m["Content-Language"] == locale
    assert m["X-Collections-Key"] == req.key
    assert m["X-Collections-Loan-Id"] == "WL-2024-000123"
    text, html = parts(m)
    assert "CNY 5123.45" in text and f"{PORTAL}/loans/WL-2024-000123" in text
    assert "CNY 5123.45" in html and f'href="{PORTAL}/loans/WL-2024-000123"' in html
    if locale == "zh-CN":
        assert "张三，您好" in text and "已逾期 40 天" in text
        assert m["Subject"].startswith("【逾期提醒】")
    else:
        assert "Dear Zhang San," in text and "40 days past due" in text

    [ledger] = Outbox(tmp_path).read("email")
    assert ledger["key"] == req.key and ledger["message_id"] == message_id


async def test_the_same_key_twice_sends_once(smtp_server: tuple[Sink, int], tmp_path: Path) -> None:
    sink, port = smtp_server
    acts = activities(port, tmp_path)
    env = ActivityEnvironment()
    first = await env.run(acts.send_email, notice())
    second = await env.run(acts.send_email, notice())
    # A fresh worker process (new objects, same outbox directory) also knows.
    third = await env.run(activities(port, tmp_path).send_email, notice())
    assert first.duplicate is False
    assert second.duplicate is True and third.duplicate is True
    assert second.provider_message_id == first.provider_message_id
    assert len(sink.received) == 1
    # A new attempt (new key) is a new email.
    await env.run(acts.send_email, notice(key="WL-2024-000123:notice:email:en:1"))
    assert len(sink.received) == 2


async def test_recipient_refused_with_550_is_permanent(smtp_server: tuple[Sink, int], tmp_path: Path) -> None:
    sink, port = smtp_server
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(port, tmp_path).send_email, notice(to="refused@example.com"))
    err = caught.value
    assert err.non_retryable is True
    assert err.type == "PermanentDeliveryFailure"
    assert "550" in err.message and "r***@example.com" in err.message
    assert sink.received == []
    assert Outbox(tmp_path).read("email") == []


async def test_recipient_deferred_with_450_is_retryable(smtp_server: tuple[Sink, int], tmp_path: Path) -> None:
    _, port = smtp_server
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(port, tmp_path).send_email, notice(to="busy@example.com"))
    assert caught.value.non_retryable is False
    assert caught.value.type == "TransientDeliveryFailure"
    assert "450" in caught.value.message


async def test_connection_refused_is_retryable_and_the_retry_sends(
    smtp_server: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, port = smtp_server
    closed = free_port()  # nothing listens there
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(closed, tmp_path).send_email, notice())
    assert caught.value.non_retryable is False
    assert caught.value.type == "TransientDeliveryFailure"
    assert f"127.0.0.1:{closed}" in caught.value.message
    assert Outbox(tmp_path).read("email") == []
    # The server is back (Temporal retries): the same key now goes out, once.
    result = await ActivityEnvironment().run(activities(port, tmp_path).send_email, notice())
    assert result.duplicate is False and len(sink.received) == 1


@pytest.mark.parametrize("bad", ["not-an-address", "two@@example.com", "a@b", "x@example.com, y@example.com"])
async def test_malformed_address_is_permanent_and_nothing_is_sent(
    smtp_server: tuple[Sink, int], tmp_path: Path, bad: str
) -> None:
    sink, port = smtp_server
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(port, tmp_path).send_email, notice(to=bad))
    assert caught.value.non_retryable is True and caught.value.type == "PermanentDeliveryFailure"
    assert "to:" in caught.value.message
    assert sink.received == []


async def test_a_request_the_adapter_cannot_carry_out_is_not_retried(
    smtp_server: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, port = smtp_server
    acts = activities(port, tmp_path)
    with pytest.raises(ApplicationError) as wrong_channel:
        await ActivityEnvironment().run(acts.send_email, notice(channel="sms", to="+8613800000000"))
    assert wrong_channel.value.non_retryable is True and wrong_channel.value.type == "InvalidRequest"
    with pytest.raises(ApplicationError) as no_installment:
        await ActivityEnvironment().run(acts.send_email, notice(kind=NoticeKind.INSTALLMENT_REMINDER))
    assert no_installment.value.non_retryable is True
    assert "installment_amount" in no_installment.value.message
    assert sink.received == []


# --------------------------------------------------------------------------------------------
# TLS and login
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"collections", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def client_trusting(cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_path))


async def test_starttls_with_login(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert_path, key_path = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    sink, port = Sink(), free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        settings = SmtpSettings(
            host="127.0.0.1", port=port, sender=SENDER, tls="starttls", username="collections", password="s3cret"
        )
        acts = EmailActivities(settings, Outbox(tmp_path), PORTAL, timeout=5, tls_context=client_trusting(cert_path))
        result = await ActivityEnvironment().run(acts.send_email, notice("zh-CN"))
        assert result.duplicate is False
        assert len(sink.received) == 1

        wrong = EmailActivities(
            settings.model_copy(update={"password": "wrong"}),
            Outbox(tmp_path / "other"),
            PORTAL,
            timeout=5,
            tls_context=client_trusting(cert_path),
        )
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(wrong.send_email, notice("zh-CN"))
        # Our own settings are wrong: retried (no notice lost) while an operator fixes them.
        assert caught.value.non_retryable is False
        assert caught.value.type == "AdapterConfigurationError", caught.value.message
        assert "SMTP_PASSWORD" in caught.value.message

        # Plain SMTP to a server that requires STARTTLS never leaks the mail.
        plain = EmailActivities(
            settings.model_copy(update={"tls": "none", "username": None, "password": None}),
            Outbox(tmp_path / "plain"),
            PORTAL,
            timeout=5,
        )
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(plain.send_email, notice("en"))
        assert refused.value.non_retryable is False
        assert len(sink.received) == 1
    finally:
        controller.stop()


async def test_implicit_tls(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert_path, key_path = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ssl_context=server_ctx)
    controller.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port, sender=SENDER, tls="tls")
        acts = EmailActivities(settings, Outbox(tmp_path), PORTAL, timeout=5, tls_context=client_trusting(cert_path))
        await ActivityEnvironment().run(acts.send_email, notice("en"))
        assert len(sink.received) == 1
        # Without trust in the server's certificate, nothing is sent and Temporal retries.
        untrusting = EmailActivities(settings, Outbox(tmp_path / "u"), PORTAL, timeout=5)
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(untrusting.send_email, notice("en", key="other"))
        assert caught.value.non_retryable is False
        assert len(sink.received) == 1
    finally:
        controller.stop()
