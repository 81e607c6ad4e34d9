#!/usr/bin/env python3
"""Container health check of the collections-engine image (standard library only).

    collections-healthcheck [worker|portal|codec-server]

Without an argument the role is found from the running processes (`python -m worker`, ...).

- portal: GET http://127.0.0.1:$PORTAL_PORT/openapi.json answers 200 (default port 8000).
- codec-server: GET http://127.0.0.1:$COLLECTIONS_CODEC_PORT/healthz answers 200 (default port 8081).
- worker: with COLLECTIONS_METRICS_PORT set, GET /metrics on it answers 200 (the Temporal runtime of
  the worker serves it, so a wedged runtime fails the check); without it, the worker process exists.

Exit 0 healthy, 1 unhealthy, with one line saying why (docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
ROLES = {"worker": "worker", "portal": "portal", "codec-server": "portal.codec_server"}
ALIASES = {"codec": "codec-server", "codec_server": "codec-server"}


def _process_modules() -> list[str]:
    """The `-m MODULE` of every process visible in /proc."""
    modules: list[str] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return modules
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"-m":
                modules.append(argv[i + 1].decode(errors="replace"))
    return modules


def detect_role() -> str | None:
    modules = _process_modules()
    # portal.codec_server before portal: the more specific module wins.
    for role in ("codec-server", "worker", "portal"):
        if ROLES[role] in modules:
            return role
    return None


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"unhealthy: {name}={raw!r} is not a port number") from None


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - localhost only
            return response.status, response.read(1024)
    except urllib.error.HTTPError as err:
        return err.code, b""


def check(role: str) -> tuple[bool, str]:
    try:
        if role == "portal":
            url = f"http://127.0.0.1:{_port('PORTAL_PORT', 8000)}/openapi.json"
            status, _ = _get(url)
            return status == 200, f"portal {url} answered {status}"
        if role == "codec-server":
            url = f"http://127.0.0.1:{_port('COLLECTIONS_CODEC_PORT', 8081)}/healthz"
            status, _ = _get(url)
            return status == 200, f"codec server {url} answered {status}"
        if role == "worker":
            if os.environ.get("COLLECTIONS_METRICS_PORT"):
                url = f"http://127.0.0.1:{_port('COLLECTIONS_METRICS_PORT', 9464)}/metrics"
                status, _ = _get(url)
                return status == 200, f"worker metrics {url} answered {status}"
            alive = ROLES["worker"] in _process_modules()
            return alive, "worker process " + ("running" if alive else "not found")
    except (OSError, urllib.error.URLError) as err:
        return False, f"{role}: {getattr(err, 'reason', err)}"
    return False, f"unknown role {role!r}; expected one of {', '.join(ROLES)}"


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        role = ALIASES.get(argv[1], argv[1])
    else:
        detected = detect_role()
        if detected is None:
            print("healthy: no long-running collections process in this container (one-off command)")
            return 0
        role = detected
    ok, reason = check(role)
    print(("healthy: " if ok else "unhealthy: ") + reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
