"""Ports of the embedded default: the well-known one when it is free, a free one otherwise.

A port the operator asked for explicitly (`--port 7233`) is used as given, or the run stops with a
message naming the port and the option: it never silently moves. A port left to its default moves
to a free one when the default is taken (another demo, a test run, a real service), and the demo
prints where everything ended up.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

HOST = "127.0.0.1"
NEARBY = 50
"""How many ports above the default are tried before asking the OS for any free one."""


class PortError(RuntimeError):
    """An explicitly requested port is taken (or not a port at all)."""


def port_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now (SO_REUSEADDR, as the servers themselves use:
    a port in TIME_WAIT is free, one with a listener, on this address or the wildcard, is not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _any_free(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Port:
    name: str
    """What listens there ("Temporal frontend")."""
    option: str
    """The command-line option that sets it ("--port")."""
    port: int
    default: int
    moved: bool
    """True when the default was taken and a free port was chosen instead."""

    @property
    def note(self) -> str:
        return f" (port {self.default} is in use; {self.option} {self.port} chosen)" if self.moved else ""


class PortPlan:
    """Chooses the demo's ports one by one, never the same one twice."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.chosen: list[Port] = []

    def _taken(self, port: int) -> bool:
        return any(p.port == port for p in self.chosen)

    def choose(self, name: str, option: str, requested: int | None, default: int) -> Port:
        if requested is not None:
            if not 0 < requested < 65536:
                raise PortError(f"{option} {requested}: not a TCP port (1-65535)")
            if self._taken(requested):
                other = next(p for p in self.chosen if p.port == requested)
                raise PortError(f"{option} {requested}: the same port as {other.option} ({other.name})")
            if not port_free(requested, self.host):
                raise PortError(
                    f"port {requested} ({name}, {option}) is in use on {self.host}: stop what listens there, "
                    f"pass {option} with another port, or leave {option} out and the demo picks a free one"
                )
            port = Port(name, option, requested, default, moved=False)
        else:
            candidates = [default, *range(default + 1, min(default + 1 + NEARBY, 65536))]
            found = next((c for c in candidates if not self._taken(c) and port_free(c, self.host)), None)
            while found is None or self._taken(found):
                found = _any_free(self.host)
            port = Port(name, option, found, default, moved=found != default)
        self.chosen.append(port)
        return port
