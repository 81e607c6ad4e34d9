"""send_sms / send_voice with the embedded default providers (the outbox), through ActivityEnvironment."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messaging import (
    MessagingActivities,
    OutboxSmsProvider,
    OutboxVoiceProvider,
    SmsProvider,
    VoiceProvider,
    WebhookSmsProvider,
    WebhookVoiceProvider,
)
from activities.outbox import Outbox
from domain.commands import NoticeKind, NoticeRequest

PORTAL = "http://localhost:8000"


def notice(channel: str = "sms", **overrides) -> NoticeRequest:
    values = dict(
        key=f"WL-7:plan-1:installment-2:{channel}",
        loan_id="WL-7",
        channel=channel,
        kind=NoticeKind.INSTALLMENT_REMINDER,
        to="+8613800000000",
        borrower_name="Li Si",
        locale="en-US",
        currency="CNY",
        amount_owed="1708.00",
        days_past_due=0,
        installment_due_date=date(2026, 12, 15),
        installment_amount="854.00",
    )
    values.update(overrides)
    return NoticeRequest(**values)


def embedded(outbox: Outbox) -> MessagingActivities:
    return MessagingActivities(OutboxSmsProvider(outbox), OutboxVoiceProvider(outbox), outbox, PORTAL)


def test_the_providers_satisfy_the_interfaces() -> None:
    outbox = Outbox(Path("unused"))
    assert isinstance(OutboxSmsProvider(outbox), SmsProvider)
    assert isinstance(WebhookSmsProvider("http://h/sms"), SmsProvider)
    assert isinstance(OutboxVoiceProvider(outbox), VoiceProvider)
    assert isinstance(WebhookVoiceProvider("http://h/voice"), VoiceProvider)


async def test_sms_lands_in_the_outbox_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = embedded(outbox)
    env = ActivityEnvironment()
    first = await env.run(acts.send_sms, notice())
    second = await env.run(acts.send_sms, notice())
    assert first.duplicate is False and second.duplicate is True
    assert first.provider_message_id == second.provider_message_id
    assert first.provider_message_id.startswith("sms-")

    [sms] = outbox.read("sms")
    assert sms["key"] == notice().key
    assert sms["to"] == "+8613800000000"
    assert "CNY 854.00" in sms["text"] and "2026-12-15" in sms["text"]
    assert f"{PORTAL}/loans/WL-7" in sms["text"]
    assert len(sms["text"]) <= 140
    [sent] = outbox.read("sms_sent")
    assert sent["loan_id"] == "WL-7" and sent["kind"] == "installment_reminder"
    assert sent["provider_message_id"] == first.provider_message_id


async def test_voice_call_lands_in_the_outbox_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    acts = embedded(outbox)
    req = notice("voice", kind=NoticeKind.COLLECTION, stage="call", locale="zh-CN", borrower_name="李四", days_past_due=9)
    result = await ActivityEnvironment().run(acts.send_voice, req)
    assert result.channel == "voice" and result.provider_message_id.startswith("call-")
    assert (await ActivityEnvironment().run(acts.send_voice, req)).duplicate is True
    [call] = outbox.read("voice")
    assert "李四" in call["script"] and "逾期9天" in call["script"] and "CNY 1708.00" in call["script"]
    assert len(outbox.read("voice_sent")) == 1


async def test_a_crash_between_sending_and_recording_does_not_send_twice(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    req = notice()
    # The provider got the message, then the worker died before the ledger was written.
    await OutboxSmsProvider(outbox).send(req.to, "first attempt", req.key)
    result = await ActivityEnvironment().run(embedded(outbox).send_sms, req)  # Temporal's retry
    assert [r["text"] for r in outbox.read("sms")] == ["first attempt"]  # the key stopped a second send
    assert result.provider_message_id == outbox.read("sms")[0]["message_id"]
    assert len(outbox.read("sms_sent")) == 1


@pytest.mark.parametrize("to", ["", "call me", "12", "+86 138 0000 0000 0000 0000"])
async def test_a_bad_number_is_permanent(tmp_path: Path, to: str) -> None:
    outbox = Outbox(tmp_path)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(embedded(outbox).send_sms, notice(to=to))
    assert caught.value.non_retryable is True and caught.value.type == "PermanentDeliveryFailure"
    assert "to:" in caught.value.message
    assert outbox.read("sms") == []


async def test_wrong_channel_or_missing_installment_is_an_invalid_request(tmp_path: Path) -> None:
    acts = embedded(Outbox(tmp_path))
    with pytest.raises(ApplicationError) as wrong:
        await ActivityEnvironment().run(acts.send_voice, notice("sms"))
    assert wrong.value.type == "InvalidRequest" and wrong.value.non_retryable is True
    with pytest.raises(ApplicationError) as missing:
        await ActivityEnvironment().run(acts.send_sms, notice(installment_due_date=None))
    assert missing.value.type == "InvalidRequest" and "installment_due_date" in missing.value.message
