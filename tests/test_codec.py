"""runtime/codec.py: AES-256-GCM payload codec, key validation and rotation (no server needed)."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.models import Borrower
from runtime.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    EncryptionConfigError,
    PayloadDecryptionError,
    codec_from_keys,
    codec_from_settings,
    generate_key,
    key_id,
    parse_key,
)
from runtime.config import Settings
from runtime.converter import data_converter

PII = Borrower(
    borrower_id="B-0001", name="张三", phone="+8613800000000", email="zhangsan@example.com",
    address="上海市浦东新区世纪大道100号",
)


def _raw(key_b64: str) -> bytes:
    return base64.b64decode(key_b64)


async def test_round_trip_hides_everything_and_names_the_key():
    key = generate_key()
    codec = codec_from_keys(key)
    [plain] = pydantic_data_converter.payload_converter.to_payloads([PII])
    [sealed] = await codec.encode([plain])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == hashlib.sha256(_raw(key)).hexdigest()[:8].encode()
    assert set(sealed.metadata) == {"encoding", KEY_ID_METADATA}, "the original metadata is inside the ciphertext"
    blob = sealed.SerializeToString()
    for secret in ("+8613800000000", "zhangsan@example.com", "张三", "上海市", "json/plain"):
        assert secret.encode() not in blob
    [back] = await codec.decode([sealed])
    assert back == plain
    [value] = pydantic_data_converter.payload_converter.from_payloads([back], [Borrower])
    assert value == PII


async def test_each_encryption_uses_a_fresh_nonce():
    codec = codec_from_keys(generate_key())
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    a, b = await codec.encode([payload, payload])
    assert a.data != b.data
    assert [p.data for p in await codec.decode([a, b])] == [b'"same"', b'"same"']


async def test_rotation_old_key_still_decrypts_new_key_encrypts():
    old, new = generate_key(), generate_key()
    before = codec_from_keys(old)
    [written_long_ago] = await before.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])

    rotated = codec_from_keys(new, f"{old}")
    assert rotated.current_key_id == key_id(_raw(new))
    assert rotated.key_ids == [key_id(_raw(new)), key_id(_raw(old))]
    [decoded] = await rotated.decode([written_long_ago])
    assert decoded.data == b"1"
    [fresh] = await rotated.encode([decoded])
    assert fresh.metadata[KEY_ID_METADATA] == key_id(_raw(new)).encode()

    # The old key alone cannot read what the rotated codec writes: it really is the new key.
    with pytest.raises(PayloadDecryptionError, match=key_id(_raw(new))):
        await before.decode([fresh])


async def test_unknown_key_id_is_a_clear_error():
    [sealed] = await codec_from_keys(generate_key()).encode([Payload(data=b"x")])
    other = codec_from_keys(generate_key())
    with pytest.raises(PayloadDecryptionError) as info:
        await other.decode([sealed])
    message = str(info.value)
    assert sealed.metadata[KEY_ID_METADATA].decode() in message
    assert "COLLECTIONS_ENCRYPTION_OLD_KEYS" in message


async def test_tampered_or_truncated_ciphertext_is_refused():
    codec = codec_from_keys(generate_key())
    [sealed] = await codec.encode([Payload(data=b"amount 100.00")])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match="tampered"):
        await codec.decode([flipped])
    short = Payload()
    short.CopyFrom(sealed)
    short.data = sealed.data[:10]
    with pytest.raises(PayloadDecryptionError, match="truncated"):
        await codec.decode([short])
    missing = Payload(metadata={"encoding": ENCODING}, data=sealed.data)
    with pytest.raises(PayloadDecryptionError, match="encryption-key-id"):
        await codec.decode([missing])


async def test_plaintext_payloads_pass_through_decode():
    codec = codec_from_keys(generate_key())
    legacy = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a":1}')
    assert await codec.decode([legacy]) == [legacy]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("not base64 at all!!", "not valid base64|decodes to"),
        (base64.b64encode(os.urandom(16)).decode(), "decodes to 16 bytes"),
        (base64.b64encode(os.urandom(33)).decode(), "decodes to 33 bytes"),
    ],
)
def test_bad_keys_are_refused_with_the_reason(text, reason):
    with pytest.raises(EncryptionConfigError, match=reason) as info:
        parse_key(text)
    assert "COLLECTIONS_ENCRYPTION_KEY" in str(info.value)


def test_bad_old_key_names_its_position():
    with pytest.raises(EncryptionConfigError, match=r"COLLECTIONS_ENCRYPTION_OLD_KEYS \(entry 2\)"):
        codec_from_keys(generate_key(), f"{generate_key()}, c2hvcnQ=")


def test_url_safe_base64_is_accepted():
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"
    assert len(raw) == 32
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw


def test_codec_from_settings_reads_old_keys_from_the_environment():
    old, new = generate_key(), generate_key()
    codec = codec_from_settings(Settings(encryption_key=new), env={"COLLECTIONS_ENCRYPTION_OLD_KEYS": old})
    assert codec.key_ids == [key_id(_raw(new)), key_id(_raw(old))]
    with pytest.raises(EncryptionConfigError, match="not set"):
        codec_from_settings(Settings())
    with pytest.raises(EncryptionConfigError, match="decodes to"):
        codec_from_settings(Settings(encryption_key=base64.b64encode(b"short").decode()))


async def test_the_shared_converter_installs_the_codec_when_a_key_is_set():
    assert data_converter(Settings()).payload_codec is None
    converter = data_converter(Settings(encryption_key=generate_key()))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    [sealed] = await converter.encode([PII])
    assert b"zhangsan" not in sealed.SerializeToString()
    [back] = await converter.decode([sealed], [Borrower])
    assert back == PII


async def test_failure_messages_are_encrypted_with_encoded_attributes():
    """What runtime/converter.py needs for failures: message and stack trace move into the encrypted
    `encoded_attributes`, so an activity error naming an address or phone never lands in clear."""
    import dataclasses

    from temporalio.api.failure.v1 import Failure
    from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
    from temporalio.exceptions import ApplicationError

    converter = dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec_from_keys(generate_key()),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
    failure = Failure()
    await converter.encode_failure(ApplicationError("SMTP refused zhangsan@example.com", "+8613800000000"), failure)
    blob = failure.SerializeToString()
    assert b"zhangsan@example.com" not in blob and b"+8613800000000" not in blob
    assert failure.message == "Encoded failure"
    decoded = await converter.decode_failure(failure)
    assert str(decoded) == "SMTP refused zhangsan@example.com"
    assert isinstance(decoded, ApplicationError) and decoded.details == ("+8613800000000",)


def test_shared_converter_encrypts_failure_messages_when_a_key_is_set():
    from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

    converter = data_converter(Settings(encryption_key=generate_key()))
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
