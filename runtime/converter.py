"""The one data converter: pydantic JSON payloads, encrypted when a key is configured."""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from .config import Settings


def data_converter(settings: Settings | None = None) -> DataConverter:
    """Pydantic converter; with COLLECTIONS_ENCRYPTION_KEY set, an AES-GCM payload codec too."""
    settings = settings or Settings.from_env()
    converter = pydantic_data_converter
    if settings.encryption_key:
        from .codec import codec_from_settings  # written with the portal/encryption issue

        converter = dataclasses.replace(converter, payload_codec=codec_from_settings(settings))
    return converter
