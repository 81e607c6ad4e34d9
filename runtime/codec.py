"""AES-256-GCM payload encryption with key rotation.

Every payload the SDK sends to Temporal (workflow input and result, activity arguments and results,
signal, update and query bodies, failure details) goes through `EncryptionCodec.encode`: the whole
serialized `Payload` (its metadata and data) is encrypted with the current key and replaced by a
payload whose metadata says only

    encoding:          binary/encrypted
    encryption-key-id: <first 8 hex digits of sha256(key)>

and whose data is `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The key id (never the key)
lets `decode` pick the right key, so keys can be rotated: put the new key in
COLLECTIONS_ENCRYPTION_KEY and the previous ones in COLLECTIONS_ENCRYPTION_OLD_KEYS
(comma-separated); new payloads use the new key, history written under an old key still reads.

Payloads that are not `binary/encrypted` pass through `decode` unchanged, so a namespace whose
older histories were written before encryption was switched on keeps working.

Failure *messages* and stack traces are not payloads: to encrypt them too, the data converter
must use `temporalio.converter.DefaultFailureConverterWithEncodedAttributes` (runtime/converter.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_ENV = "COLLECTIONS_ENCRYPTION_KEY"
OLD_KEYS_ENV = "COLLECTIONS_ENCRYPTION_OLD_KEYS"


class EncryptionConfigError(ValueError):
    """A key in the environment is not a base64-encoded 32-byte AES-256 key."""


class PayloadDecryptionError(ValueError):
    """A payload cannot be decrypted: unknown key id, tampered or truncated data."""


def key_id(key: bytes) -> str:
    """The public id of a key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def parse_key(text: str, *, source: str = KEY_ENV) -> bytes:
    """Decode a base64 key and check that it is 32 bytes (AES-256), with an error naming `source`."""
    value = text.strip()
    if not value:
        raise EncryptionConfigError(f"{source} is empty; expected the base64 encoding of 32 random bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # accept the URL-safe alphabet too (`-` and `_`), common in secret managers
            raw = base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError):
            raise EncryptionConfigError(
                f"{source} is not valid base64; generate a key with: "
                "python -c \"import os, base64; print(base64.b64encode(os.urandom(32)).decode())\""
            ) from None
    if len(raw) != 32:
        raise EncryptionConfigError(
            f"{source} decodes to {len(raw)} bytes; AES-256-GCM needs exactly 32 "
            "(the base64 encoding of 32 random bytes is 44 characters)"
        )
    return raw


def generate_key() -> str:
    """A fresh key in the form COLLECTIONS_ENCRYPTION_KEY expects."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM codec: encrypts with the current key, decrypts with any known key."""

    def __init__(self, current_key: bytes, old_keys: Iterable[bytes] = ()) -> None:
        if len(current_key) != 32:
            raise EncryptionConfigError("the current encryption key must be 32 bytes")
        self._current_id = key_id(current_key)
        self._current = AESGCM(current_key)
        self._keys: dict[str, AESGCM] = {self._current_id: self._current}
        for old in old_keys:
            if len(old) != 32:
                raise EncryptionConfigError("every old encryption key must be 32 bytes")
            self._keys.setdefault(key_id(old), AESGCM(old))

    @property
    def current_key_id(self) -> str:
        return self._current_id

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key this codec can decrypt with, the current one first."""
        return list(self._keys)

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._current_id.encode("ascii")},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptionError(
                f"encrypted payload has no {KEY_ID_METADATA!r} metadata; cannot choose a key"
            )
        kid = raw_id.decode("ascii", errors="replace")
        aes = self._keys.get(kid)
        if aes is None:
            raise PayloadDecryptionError(
                f"payload was encrypted with key id {kid}, which is neither {KEY_ENV} "
                f"(id {self._current_id}) nor any key in {OLD_KEYS_ENV} "
                f"(ids: {', '.join(self.key_ids[1:]) or 'none'}); add that key to {OLD_KEYS_ENV}"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise PayloadDecryptionError(f"encrypted payload (key id {kid}) is truncated")
        try:
            plain = aes.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"encrypted payload (key id {kid}) failed authentication: tampered or corrupted"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def codec_from_keys(current: str, old: str | Sequence[str] | None = None) -> EncryptionCodec:
    """Build the codec from the textual (base64) keys, validating each with a clear error."""
    current_key = parse_key(current, source=KEY_ENV)
    if old is None:
        old_texts: list[str] = []
    elif isinstance(old, str):
        old_texts = [part for part in (p.strip() for p in old.split(",")) if part]
    else:
        old_texts = [p.strip() for p in old if p.strip()]
    old_keys = [
        parse_key(text, source=f"{OLD_KEYS_ENV} (entry {i + 1})") for i, text in enumerate(old_texts)
    ]
    return EncryptionCodec(current_key, old_keys)


def codec_from_settings(settings: Any, env: Mapping[str, str] | None = None) -> EncryptionCodec:
    """The codec for the process's settings.

    The current key is `settings.encryption_key` (COLLECTIONS_ENCRYPTION_KEY). Old keys are
    `settings.encryption_old_keys` when Settings has that field, else COLLECTIONS_ENCRYPTION_OLD_KEYS
    from the environment.
    """
    current = getattr(settings, "encryption_key", None)
    if not current:
        raise EncryptionConfigError(f"{KEY_ENV} is not set; payload encryption needs a key")
    old = getattr(settings, "encryption_old_keys", None)
    if old is None:
        old = (os.environ if env is None else env).get(OLD_KEYS_ENV)
    return codec_from_keys(current, old)
