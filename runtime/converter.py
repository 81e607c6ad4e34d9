"""The one data converter: pydantic JSON payloads, encrypted when a key is configured."""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from .codec import codec_from_settings
from .config import Settings


def data_converter(settings: Settings | None = None) -> DataConverter:
    """Pydantic converter; with COLLECTIONS_ENCRYPTION_KEY set, an AES-GCM payload codec too."""
    settings = settings or Settings.from_env()
    converter = pydantic_data_converter
    if settings.encryption_key:

        # Failure messages and stack traces are encrypted too: an error naming a phone or an email
        # must not sit in the history in clear.
        converter = dataclasses.replace(
            converter,
            payload_codec=codec_from_settings(settings),
            failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
        )
    return converter
