"""Temporal itself as an outside system of the adapters: a client the worker hands them (or a way to
connect), resolved once on first use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.client import Client

ClientSource = Client | Callable[[], Awaitable[Client]]


class LazyClient:
    def __init__(self, source: ClientSource) -> None:
        self._source = source

    async def client(self) -> Client:
        if not isinstance(self._source, Client):
            self._source = await self._source()
        return self._source
