"""The embedded default end to end (slow): `collections demo --check` starts the dev server, the SMTP
sink, the worker, the portal and the codec server, takes in the sample portfolio, plays the
borrowers through the portal's HTTP API, and checks the outcome: loans paid through the portal,
every stage reached, a loan at legal, a plan completed, notices emailed, the history encrypted and
decrypted for operators only; then stops everything it started. Also: a busy port that was asked
for stops the demo before anything starts, and the SMTP sink as a process of its own."""

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
    ports = {name: _free_port() for name in ("--port", "--ui-port", "--smtp-port", "--portal-port", "--codec-port")}
    day_seconds = os.environ.get("COLLECTIONS_DEMO_DAY_SECONDS", "1.5")
    env = _env()
    env.pop("COLLECTIONS_ENCRYPTION_KEY", None)  # a fresh key for the run
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--day-seconds", day_seconds, "--check",
         "--max-days", "60", "--state-dir", str(state), *(x for kv in ports.items() for x in (kv[0], str(kv[1])))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )
    out = proc.stdout + proc.stderr
    worker_log = (state / "worker.log").read_text(errors="replace")[-4000:] if (state / "worker.log").exists() else ""
    assert proc.returncode == 0, f"{out}\n--- worker log (tail) ---\n{worker_log}"
    assert "check passed" in out
    assert "started 28, already present 0, rejected 0" in out
    assert "Demo result" in out and "paid_in_full" in out and "legal" in out
    # The borrowers went through the portal; Temporal holds ciphertext only; the codec server decrypts.
    assert "POST payments 202" in out and "GET status 200" in out
    assert "hold ciphertext only" in out and "history encrypted and decrypted for operators only" in out
    assert f"codec server   http://localhost:{ports['--codec-port']}" in out
    assert (state / "demo.env").stat().st_mode & 0o777 == 0o600
    assert "POST /v1/loans/DEMO-001/payments" in (state / "portal.log").read_text(errors="replace")
    assert "POST /default/decode" in (state / "codec-server.log").read_text(errors="replace")
    # It wrote what the embedded default writes...
    assert list((state / "mail").glob("*.eml"))
    assert (state / "outbox" / "sms.jsonl").exists()
    assert (state / "temporal.db").exists()
    # ...and stopped everything it started.
    for option, p in ports.items():
        assert _port_free(p), f"port {p} ({option}) still in use after the demo"
    assert "worker stopped" in (state / "worker.log").read_text(errors="replace")
    for log in ("portal.log", "codec-server.log"):
        assert "Finished server process" in (state / log).read_text(errors="replace"), log


def test_demo_stops_before_starting_anything_when_a_requested_port_is_busy(tmp_path):
    state = tmp_path / "demo"
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--state-dir", str(state), "--codec-port", str(port)],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"port {port} (codec server, --codec-port) is in use" in proc.stderr
    assert not state.exists()


def test_smtp_sink_runs_alone_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    mail = tmp_path / "mail"
    proc = subprocess.Popen([sys.executable, "-m", "demo.smtp_sink", "--host", "127.0.0.1", "--port", str(port),
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


def test_without_the_demo_the_cli_says_how_to_install_it(tmp_path):
    """A production install (the image) has the product's packages and not the demo: `collections
    demo` and `sample-portfolio` stay listed, and running one names the extra to install (exit 2)."""
    for package in ("domain", "workflows", "activities", "runtime", "worker", "portal", "cli"):
        (tmp_path / package).symlink_to(ROOT / package)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), COLUMNS="200")
    # The editable install of this checkout would still find the demo package: make it absent, as it is
    # in a production install (importing it fails).
    cli = [sys.executable, "-c", "import runpy, sys; sys.modules['demo'] = None; "
                                 "runpy.run_module('cli', run_name='__main__', alter_sys=True)"]
    listed = subprocess.run([*cli, "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout and "collections-engine[demo]" in listed.stdout
    for command in (["demo", "--check"], ["sample-portfolio"]):
        proc = subprocess.run([*cli, *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"`collections {command[0]}` needs the demo" in proc.stderr
        assert "pip install 'collections-engine[demo]'" in proc.stderr
