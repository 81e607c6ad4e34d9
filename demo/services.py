"""The demo's Python services as child processes: the worker, the portal and the codec server.

Each runs `python -m <module>` from this checkout with its own environment, its output in a log
file in the state folder, in a session of its own (Ctrl-C in the terminal reaches the demo only; the
demo stops its children itself, by SIGTERM, which each of them answers with a graceful exit 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    pass


def child_env(updates: dict[str, str], base: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The demo's environment with `updates`, without `drop`, and this checkout on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    for name in drop:
        env.pop(name, None)
    env.update(updates)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Service:
    """`python -m module` with `env`, output to `log_path`; ready when `health_url` answers 200."""

    def __init__(self, name: str, module: str, env: dict[str, str], log_path: Path,
                 health_url: str | None = None) -> None:
        self.name = name
        self.module = module
        self.env = env
        self.log_path = log_path
        self.health_url = health_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, cwd=PROJECT_ROOT,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        return self

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(
                f"the {self.name} exited with status {self.process.returncode} (log {self.log_path}):\n{tail(self.log_path)}"
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until `health_url` answers 200 (the process still running); ServiceError otherwise."""
        if self.health_url is None:
            return
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=3) as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    r = await http.get(self.health_url)
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.2)
        raise ServiceError(
            f"the {self.name} did not answer {self.health_url} within {timeout:.0f}s (last: {last}); "
            f"log {self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status (None if never started)."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode
