"""The embedded default end to end (slow): `collections demo --check` starts the dev server, the SMTP
sink and the worker, takes in the sample portfolio, plays the borrowers, and checks the outcome:
loans paid, every stage reached, a loan at legal, a plan completed, notices emailed; then stops
everything it started. Also the SMTP sink as a process of its own."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", PYTHONUNBUFFERED="1")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_demo_check_passes_and_stops_everything(tmp_path):
    state = tmp_path / "demo"
    port, ui_port, smtp_port = _free_port(), _free_port(), _free_port()
    day_seconds = os.environ.get("COLLECTIONS_DEMO_DAY_SECONDS", "1.5")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--day-seconds", day_seconds, "--check",
         "--max-days", "60", "--state-dir", str(state), "--port", str(port), "--ui-port", str(ui_port), "--smtp-port", str(smtp_port)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=400,
    )
    out = proc.stdout + proc.stderr
    worker_log = (state / "worker.log").read_text(errors="replace")[-4000:] if (state / "worker.log").exists() else ""
    assert proc.returncode == 0, f"{out}\n--- worker log (tail) ---\n{worker_log}"
    assert "check passed" in out
    assert "started 28, already present 0, rejected 0" in out
    assert "Demo result" in out and "paid_in_full" in out and "legal" in out
    # It wrote what the embedded default writes...
    assert list((state / "mail").glob("*.eml"))
    assert (state / "outbox" / "sms.jsonl").exists()
    assert (state / "temporal.db").exists()
    # ...and stopped everything it started.
    for p in (port, ui_port, smtp_port):
        assert _port_free(p), f"port {p} still in use after the demo"
    assert "worker stopped" in (state / "worker.log").read_text(errors="replace")


def test_smtp_sink_runs_alone_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    mail = tmp_path / "mail"
    proc = subprocess.Popen([sys.executable, "-m", "cli.smtp_sink", "--host", "127.0.0.1", "--port", str(port),
                             "--dir", str(mail)], cwd=ROOT, env=_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                smtp = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the sink did not start"
                time.sleep(0.1)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@localhost", "b@example.com", "hello"
        msg.set_content("body")
        with smtp:
            smtp.send_message(msg)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert len(list(mail.glob("*.eml"))) == 1
    assert "stopped after 1 message(s)" in err.decode()
