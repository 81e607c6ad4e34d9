"""HTTP door for borrower portals, agent desks and operators (`python -m portal`).

Thin: it authenticates the caller (HS256 JWT), validates the body against the contract's models,
and turns each request into one Temporal call (query, signal or update) on the loan's workflow.
No business rule lives here; the workflow (and domain/) decides.
"""

from .app import create_app

__all__ = ["create_app"]
