"""The outbox: append-only JSON Lines files, one per channel, idempotent by key.

It is two things at once:

- the embedded default "outside world": the local SMS, voice, agent-task, agency, legal and bureau
  providers write what they would send to ``<directory>/<channel>.jsonl`` (COLLECTIONS_OUTBOX_DIR);
- the activities' ledger of what has been done (channels ``email``, ``sms_sent``, ``voice_sent``,
  ...), checked before and written after talking to a real system, so that a retried activity
  does not send twice.

Each line is one JSON object: the record, plus ``key`` (the idempotency key) and ``recorded_at``
(UTC, ISO 8601). A key appears at most once per channel, also with many coroutines and many worker
processes appending at the same time: appends hold an exclusive ``fcntl.flock`` on the channel
file, and re-read what other processes appended since this process last looked before deciding.
Within a process a per-channel thread lock serialises the work, which runs in a thread so that
file locking never blocks the event loop.

A line torn by a crash mid-write is completed with a newline on the next append and skipped (with
a warning) when read. Money in records should already be strings with two places
(``model.model_dump(mode="json")``); a ``Decimal`` that slips through is written as its string.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

logger = logging.getLogger(__name__)

_CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"outbox records must be JSON-serialisable; got {type(value).__name__}")


@dataclass
class _Channel:
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: set[str] = field(default_factory=set)
    offset: int = 0
    """Bytes of the file already read into `keys` (always just after a newline)."""
    inode: int | None = None


class Outbox:
    """Append-only, key-idempotent JSON Lines files under one directory."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self._channels: dict[str, _Channel] = {}
        self._channels_lock = threading.Lock()

    # ---------------------------------------------------------------------------------------
    # Public API
    # ---------------------------------------------------------------------------------------

    def path(self, channel: str) -> Path:
        """The channel's file: ``<directory>/<channel>.jsonl``."""
        _check_channel(channel)
        return self.directory / f"{channel}.jsonl"

    async def append(self, channel: str, key: str, record: dict[str, Any]) -> bool:
        """Write `record` under `key`; False (and nothing written) when the key is already there."""
        _check_channel(channel)
        _check_key(key)
        if not isinstance(record, dict):
            raise TypeError("record must be a dict")
        line = {
            "key": key,
            "recorded_at": datetime.now(UTC).isoformat(),
            **{k: v for k, v in record.items() if k not in ("key", "recorded_at")},
        }
        data = (json.dumps(line, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
        return await asyncio.to_thread(self._append_sync, channel, key, data)

    async def contains(self, channel: str, key: str) -> bool:
        """Whether `key` is already in the channel (as of now, across processes)."""
        _check_channel(channel)
        _check_key(key)
        return await asyncio.to_thread(self._contains_sync, channel, key)

    async def get(self, channel: str, key: str) -> dict[str, Any] | None:
        """The record written under `key`, or None."""
        _check_channel(channel)
        _check_key(key)
        return await asyncio.to_thread(self._get_sync, channel, key)

    def read(self, channel: str) -> list[dict[str, Any]]:
        """Every record of the channel, oldest first (for operators, tests and the demo)."""
        path = self.path(channel)
        if not path.exists():
            return []
        with open(path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                data = fh.read()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        records: list[dict[str, Any]] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            parsed = _parse(raw)
            if parsed is None:
                logger.warning("outbox %s line %d is not a JSON object; skipped", path, number)
                continue
            records.append(parsed)
        return records

    def channels(self) -> list[str]:
        """The channels that have a file."""
        if not self.directory.exists():
            return []
        return sorted(p.stem for p in self.directory.glob("*.jsonl") if _CHANNEL_RE.match(p.stem))

    # ---------------------------------------------------------------------------------------
    # Internals (run in a worker thread)
    # ---------------------------------------------------------------------------------------

    def _channel(self, channel: str) -> _Channel:
        with self._channels_lock:
            state = self._channels.get(channel)
            if state is None:
                state = self._channels[channel] = _Channel(path=self.directory / f"{channel}.jsonl")
            return state

    def _open(self, state: _Channel) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        return os.open(state.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)

    @staticmethod
    def _refresh(state: _Channel, fd: int) -> bytes:
        """Load keys appended since the last look; return a trailing partial line, if any."""
        st = os.fstat(fd)
        if state.inode != st.st_ino or st.st_size < state.offset:
            # First look, or the file was replaced or truncated (by an operator): start over.
            state.inode = st.st_ino
            state.keys.clear()
            state.offset = 0
        if st.st_size == state.offset:
            return b""
        chunk = os.pread(fd, st.st_size - state.offset, state.offset)
        end = chunk.rfind(b"\n") + 1  # 0 when there is no complete line
        for raw in chunk[:end].split(b"\n"):
            if not raw.strip():
                continue
            parsed = _parse(raw)
            if parsed is None:
                logger.warning("outbox %s has a line that is not a JSON object; skipped", state.path)
                continue
            key = parsed.get("key")
            if isinstance(key, str):
                state.keys.add(key)
        state.offset += end
        return chunk[end:]

    def _append_sync(self, channel: str, key: str, data: bytes) -> bool:
        state = self._channel(channel)
        with state.lock:
            fd = self._open(state)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                partial = self._refresh(state, fd)
                if partial:
                    # A line torn by a crash: end it so that ours starts on a line of its own.
                    parsed = _parse(partial)
                    if parsed is not None and isinstance(parsed.get("key"), str):
                        state.keys.add(parsed["key"])
                    else:
                        logger.warning("outbox %s ends with a torn line; it will be skipped", state.path)
                    data = b"\n" + data
                if key in state.keys:
                    if partial:
                        _write_all(fd, b"\n")
                        state.offset = os.fstat(fd).st_size
                    return False
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
                state.offset = os.fstat(fd).st_size
                state.keys.add(key)
                return True
            finally:
                os.close(fd)  # closing releases the flock

    def _contains_sync(self, channel: str, key: str) -> bool:
        state = self._channel(channel)
        if not state.path.exists() and not state.keys:
            return False
        with state.lock:
            if key in state.keys:
                return True
            fd = self._open(state)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                self._refresh(state, fd)
                return key in state.keys
            finally:
                os.close(fd)

    def _get_sync(self, channel: str, key: str) -> dict[str, Any] | None:
        if not self._contains_sync(channel, key):
            return None
        for record in reversed(self.read(channel)):
            if record.get("key") == key:
                return record
        return None


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not _CHANNEL_RE.match(channel):
        raise ValueError(
            f"channel {channel!r}: must be 1-64 characters of a-z, 0-9, '_' or '-' (it names a file)"
        )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key.strip():
        raise ValueError("key: the idempotency key must be a non-empty string")
    if len(key) > 1000:
        raise ValueError("key: the idempotency key must be at most 1000 characters")
