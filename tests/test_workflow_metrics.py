"""The workflow's own counters reach the SDK's metric pipeline (here a MetricBuffer; Prometheus in prod)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

from domain.models import PaymentReceived
from runtime.config import Settings
from runtime.converter import data_converter
from workflows import CollectionWorkflow
from tests.harness import align, loan_input, running_worker, settle


async def test_stage_entries_payments_and_plan_outcomes_are_counted(ts_env, tmp_path):
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    client = await Client.connect(ts_env.client.service_client.config.target_host, namespace=ts_env.client.namespace,
                                  data_converter=data_converter(Settings()), runtime=runtime)
    async with running_worker(client, tmp_path) as h:
        now = await align(ts_env, "Asia/Shanghai")
        handle = await h.start(loan_input("MET-1", today=now.date(), dpd=7))
        await ts_env.sleep(timedelta(days=1, hours=1))  # notice at DPD 7, call at DPD 8
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="M", amount="1.00"))
        await handle.signal(CollectionWorkflow.payment_received, PaymentReceived(payment_id="M", amount="1.00"))
        await handle.signal(CollectionWorkflow.payment_received, {"payment_id": "bad", "amount": 1})
        await settle()
        await handle.execute_update(CollectionWorkflow.propose_payment_plan, {
            "installments": 40, "first_due_date": now.date().isoformat(), "interval_days": 30,
            "down_payment": "0.00"})
        await ts_env.sleep(timedelta(hours=1))
        await handle.terminate("done")
    seen: dict[tuple[str, tuple], int] = {}
    for update in buffer.retrieve_updates():
        name = update.metric.name
        if name.startswith("collections_"):
            ours = {k: v for k, v in update.attributes.items() if k in ("stage", "currency", "result", "outcome")}
            key = (name, tuple(sorted(ours.items())))
            seen[key] = seen.get(key, 0) + update.value
    assert seen[("collections_stage_entries", (("stage", "notice"),))] == 1
    assert seen[("collections_stage_entries", (("stage", "call"),))] == 1
    assert seen[("collections_payments", (("currency", "CNY"), ("result", "applied")))] == 1
    assert seen[("collections_payments", (("currency", "CNY"), ("result", "duplicate")))] == 1
    assert seen[("collections_payments", (("currency", "CNY"), ("result", "rejected")))] == 1
    assert seen[("collections_plan_outcomes", (("outcome", "rejected"),))] == 1
