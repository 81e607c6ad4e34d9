"""Running an ASGI app under uvicorn until SIGINT/SIGTERM, then exiting 0 (the house rule)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it after a graceful shutdown (exit -15/-2); a
    service stopped by its supervisor has done nothing wrong, so this one exits 0 instead."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def serve(app: Any, host: str, port: int, **options: Any) -> int:
    config = uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False, **options)
    server = GracefulServer(config)
    server.run()
    return 0 if server.started else 1
