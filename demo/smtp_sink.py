"""The embedded default's SMTP sink: accepts every message and stores it as an .eml file.

Used by `collections demo`; also runs alone:

    python -m demo.smtp_sink [--host localhost] [--port 1025] [--dir var/demo/mail]

Each message becomes `<dir>/<UTC time>-<n>-<first recipient>.eml`, the message as received with a
`X-Sink-Mail-From` / `X-Sink-Rcpt-To` envelope header in front. Files are written atomically
(temporary name, then rename), so a reader never sees half a message.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("smtp_sink")


class MailDirHandler:
    """aiosmtpd handler: every accepted message is stored in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd's hook
        with self._lock:
            n = next(self._counter)
            self.count += 1
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown"
        safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", first)[:80]
        stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{n:05d}-{safe}.eml"
        head = (
            f"X-Sink-Mail-From: {envelope.mail_from}\r\n"
            f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8")
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(head + content)
        os.replace(tmp, self.directory / name)
        log.info("stored %s (%d bytes) for %s", name, len(content), ", ".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on a thread of its own; `start()` returns once it accepts connections."""

    def __init__(self, directory: str | Path, host: str = "localhost", port: int = 1025) -> None:
        self.handler = MailDirHandler(directory)
        self.host = host
        self.port = port
        self._controller = Controller(
            self.handler,
            hostname=host,
            port=port,
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=10 * 1024 * 1024,
        )

    @property
    def directory(self) -> Path:
        return self.handler.directory

    @property
    def messages(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def start(self) -> SmtpSink:
        try:
            # Fail at once on a busy port (the controller would wait for its ready timeout first).
            with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
            self._controller.start()
        except OSError as exc:
            self._controller.loop.close()  # made in __init__; only a started controller closes it
            raise OSError(f"SMTP sink cannot listen on {self.host}:{self.port}: {exc}") from exc
        return self

    def stop(self) -> None:
        try:
            self._controller.stop()
        except AssertionError:  # already stopped
            pass

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.smtp_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", default="var/demo/mail", help="where the .eml files go (default var/demo/mail)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status = 0
    try:
        sink = SmtpSink(args.dir, args.host, args.port).start()
    except OSError as exc:
        log.error("%s", exc)
        status = 1
    else:
        log.info("SMTP sink on %s:%d, storing messages in %s", args.host, args.port, sink.directory)
        while not stop.wait(0.5):
            pass
        sink.stop()
        log.info("stopped after %d message(s)", sink.handler.count)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
