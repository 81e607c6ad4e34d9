"""HTTP door for borrower portals, agent desks and operators (`python -m portal`).

Thin: it authenticates the caller (HS256 JWT), validates the body against the contract's models,
and turns each request into one Temporal call (query, signal or update) on the loan's workflow.
No business rule lives here; the workflow (and domain/) decides.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m portal.auth` / `portal.codec_server` do not import the app first.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
