"""Where the one client factory connects: temporalio's environment configuration decides.

A TOML profile (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`) alone is enough, `TEMPORAL_ADDRESS` /
`TEMPORAL_NAMESPACE` set explicitly win over it, what the caller says (`Settings`, `--address`)
wins over both, and the contract's defaults (localhost:7233, `default`) apply only when nothing
says otherwise. Checked on the rules alone, and for real: a profile naming the dev server and a
namespace of its own, used by `connect()`, by `collections intake` (the loans land in the profile's
namespace) and by `python -m worker`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from tests.harness import write_policy
from domain import contract
from runtime.client import ClientConfigError, connect, connect_config, target
from runtime.config import Settings
from runtime.converter import data_converter
from runtime.search_attributes import register_search_attributes

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_VARIABLES = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE",
                      "TEMPORAL_API_KEY", "TEMPORAL_TLS")


def _profiles(path: Path, **profiles: dict[str, str]) -> Path:
    lines = []
    for name, values in profiles.items():
        lines.append(f"[profile.{name}]")
        lines += [f'{key} = "{value}"' for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def temporal_env(monkeypatch, tmp_path):
    """No TEMPORAL_* variable, and no profile file unless a test names one (HOME is a fresh folder,
    so ~/.config/temporalio/temporal.toml of whoever runs the tests plays no part)."""
    for name in [n for n in os.environ if n.startswith("TEMPORAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    return monkeypatch


# ------------------------------------------------------------------------------------ the rules


def test_nothing_said_means_the_contracts_defaults(temporal_env):
    config = connect_config(Settings.from_env())
    assert (config["target_host"], config["namespace"]) == ("localhost:7233", "default")
    assert "tls" not in config and "api_key" not in config


def test_a_profile_alone_decides_address_and_namespace(temporal_env, tmp_path):
    toml = _profiles(tmp_path / "temporal.toml",
                     default={"address": "default.bank.internal:7233", "namespace": "ns-default"},
                     prod={"address": "prod.bank.internal:7233", "namespace": "collections-prod"})
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    config = connect_config(Settings.from_env())
    assert (config["target_host"], config["namespace"]) == ("default.bank.internal:7233", "ns-default")

    temporal_env.setenv("TEMPORAL_PROFILE", "prod")
    config = connect_config(Settings.from_env())
    assert (config["target_host"], config["namespace"]) == ("prod.bank.internal:7233", "collections-prod")
    assert target(Settings.from_env()) == "prod.bank.internal:7233 (namespace collections-prod)"


def test_variables_win_over_the_profile_and_the_caller_over_both(temporal_env, tmp_path):
    toml = _profiles(tmp_path / "temporal.toml", prod={"address": "prod.bank.internal:7233", "namespace": "collections-prod"})
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    temporal_env.setenv("TEMPORAL_PROFILE", "prod")
    temporal_env.setenv("TEMPORAL_ADDRESS", "dr.bank.internal:7233")
    config = connect_config(Settings.from_env())
    assert (config["target_host"], config["namespace"]) == ("dr.bank.internal:7233", "collections-prod")

    explicit = Settings.from_env().model_copy(update={"temporal_address": "127.0.0.1:1", "temporal_namespace": "x"})
    config = connect_config(explicit)
    assert (config["target_host"], config["namespace"]) == ("127.0.0.1:1", "x")


def test_a_profiles_api_key_turns_tls_on(temporal_env, tmp_path):
    toml = _profiles(tmp_path / "temporal.toml",
                     cloud={"address": "eu-west-1.aws.api.temporal.io:7233", "namespace": "coll.acct", "api_key": "k-123"})
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    temporal_env.setenv("TEMPORAL_PROFILE", "cloud")
    config = connect_config(Settings.from_env())
    assert config["api_key"] == "k-123" and config["tls"] is True
    assert config["target_host"] == "eu-west-1.aws.api.temporal.io:7233"


def test_an_unusable_configuration_is_refused_naming_it(temporal_env, tmp_path):
    toml = _profiles(tmp_path / "temporal.toml", prod={"address": "prod.bank.internal:7233"})
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    temporal_env.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(ClientConfigError, match=r"TEMPORAL_PROFILE.*Profile 'staging' not found"):
        connect_config(Settings.from_env())
    assert target(Settings.from_env()) == "(unusable Temporal client configuration)"

    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.prod\naddress = ", encoding="utf-8")
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(broken))
    temporal_env.delenv("TEMPORAL_PROFILE")
    with pytest.raises(ClientConfigError, match=r"TEMPORAL_CONFIG_FILE"):
        connect_config(Settings.from_env())


def test_the_cli_says_a_bad_profile_is_bad_configuration(temporal_env, tmp_path):
    toml = _profiles(tmp_path / "temporal.toml", prod={"address": "prod.bank.internal:7233"})
    env = dict(os.environ, TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="staging", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "cli", "summary"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Profile 'staging' not found" in proc.stderr


# ------------------------------------------------------------------------------------ for real


@pytest.fixture
async def profile_world(dev_env, temporal_env, tmp_path):
    """The dev server, a namespace of this test's own on it (not `default`), and a profile file
    whose `bank` profile names both. Only TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE are set."""
    address = dev_env.client.config()["service_client"].config.target_host
    namespace = f"profile-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # a new namespace takes a moment to reach the frontend's cache
        try:
            ns_client = await Client.connect(address, namespace=namespace, data_converter=data_converter(Settings()))
            await register_search_attributes(ns_client)
            break
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    toml = _profiles(tmp_path / "temporal.toml",
                     default={"address": "127.0.0.1:1", "namespace": "nowhere"},
                     bank={"address": address, "namespace": namespace})
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    temporal_env.setenv("TEMPORAL_PROFILE", "bank")
    return {"address": address, "namespace": namespace, "client": ns_client, "toml": toml}


async def test_connect_follows_the_profile_alone(profile_world):
    client = await connect()
    assert client.namespace == profile_world["namespace"]
    assert client.service_client.config.target_host == profile_world["address"]
    # A real call, answered by the profile's namespace.
    assert (await client.count_workflows()).count == 0


async def test_operator_cli_and_worker_follow_the_profile_alone(profile_world, tmp_path):
    loan = f"PRF-{uuid.uuid4().hex[:8].upper()}"
    due = (datetime.now(tz=UTC) - timedelta(days=5)).date().isoformat()
    portfolio = tmp_path / "portfolio.csv"
    portfolio.write_text(
        "loan_id,currency,principal,annual_interest_rate,due_date,borrower_id,name,timezone\n"
        f"{loan},CNY,100.00,0.10,{due},B-{loan},Wang Wu,Asia/Shanghai\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", COLLECTIONS_TASK_QUEUE=f"profile-{uuid.uuid4().hex[:6]}",
               COLLECTIONS_OUTBOX_DIR=str(tmp_path / "outbox"))
    lender = write_policy(tmp_path / "lender.toml")
    proc = subprocess.run([sys.executable, "-m", "cli", "intake", "--quiet", "--policy", str(lender), str(portfolio)],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started 1" in proc.stdout
    # The loan is in the profile's namespace, on the profile's server.
    handle = profile_world["client"].get_workflow_handle(contract.workflow_id(loan))
    description = await handle.describe()
    assert description.workflow_type == contract.COLLECTION_WORKFLOW

    worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        deadline = asyncio.get_running_loop().time() + 60
        while "worker polling task queue" not in seen:
            assert worker.poll() is None, f"the worker exited:\n{seen}{worker.stdout.read()}"
            assert asyncio.get_running_loop().time() < deadline, seen
            line = await asyncio.to_thread(worker.stdout.readline)
            seen += line
        assert f"on {profile_world['address']} (namespace {profile_world['namespace']})" in seen, seen
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
        await handle.terminate("test done")
    assert worker.returncode == 0
