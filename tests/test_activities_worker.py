"""The adapters on a real Temporal worker, called by method reference as the workflows call them:
payloads cross the pydantic converter intact, and Temporal retries exactly what the adapters say is
retryable (a 450 is tried again, a 550 only once)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from aiosmtpd.controller import Controller
    from temporalio.worker import Worker

    from activities import AgentTaskActivities, EmailActivities, Outbox
    from domain.commands import AgentTaskRequest, NoticeRequest
    from runtime.config import SmtpSettings
    from tests.test_activities_email import Sink, free_port, notice
    from tests.test_activities_filing import task


@workflow.defn(name="AdapterProbe", sandboxed=True)
class AdapterProbe:
    @workflow.run
    async def run(self, req: NoticeRequest, agent_task: AgentTaskRequest) -> dict[str, Any]:
        out: dict[str, Any] = {}
        receipt = await workflow.execute_activity_method(
            AgentTaskActivities.create_agent_task, agent_task, start_to_close_timeout=timedelta(seconds=10)
        )
        out["receipt"] = receipt.model_dump(mode="json")
        try:
            result = await workflow.execute_activity_method(
                EmailActivities.send_email,
                req,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=50), backoff_coefficient=1.0, maximum_attempts=3
                ),
            )
            out["delivery"] = result.model_dump(mode="json")
        except ActivityError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError)
            out["error"] = {"type": cause.type, "non_retryable": cause.non_retryable, "message": cause.message}
        return out


class CountingSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.rcpt_attempts = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt_attempts += 1
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


async def run_probe(ts_env, tmp_path: Path, req: NoticeRequest) -> tuple[dict[str, Any], CountingSink, Outbox]:
    sink, port = CountingSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    outbox = Outbox(tmp_path)
    email_acts = EmailActivities(
        SmtpSettings(host="127.0.0.1", port=port, sender="collections@bank.example"), outbox, "http://portal", timeout=5
    )
    queue = f"adapters-{uuid.uuid4()}"
    try:
        async with Worker(
            ts_env.client,
            task_queue=queue,
            workflows=[AdapterProbe],
            activities=[email_acts.send_email, AgentTaskActivities(outbox).create_agent_task],
        ):
            result = await ts_env.client.execute_workflow(
                AdapterProbe.run, args=[req, task()], id=f"probe-{uuid.uuid4()}", task_queue=queue
            )
    finally:
        controller.stop()
    return result, sink, outbox


async def test_delivered_through_a_real_worker(ts_env, tmp_path: Path) -> None:
    result, sink, outbox = await run_probe(ts_env, tmp_path, notice("zh-CN"))
    assert result["receipt"]["reference"] == "T-WL-1-call-0" and result["receipt"]["duplicate"] is False
    assert result["delivery"]["channel"] == "email" and result["delivery"]["duplicate"] is False
    assert len(sink.received) == 1
    assert "CNY 5123.45" in sink.received[0].message.get_body(preferencelist=("plain",)).get_content()
    assert [r["amount_owed"] for r in outbox.read("agent_tasks")] == ["5030.25"]


async def test_temporal_retries_a_deferral_but_not_a_refusal(ts_env, tmp_path: Path) -> None:
    refused, sink, _ = await run_probe(ts_env, tmp_path / "a", notice(to="refused@example.com"))
    assert refused["error"]["type"] == "PermanentDeliveryFailure" and refused["error"]["non_retryable"] is True
    assert sink.rcpt_attempts == 1  # not retried

    deferred, sink, _ = await run_probe(ts_env, tmp_path / "b", notice(to="busy@example.com"))
    assert deferred["error"]["type"] == "TransientDeliveryFailure"
    assert sink.rcpt_attempts == 3  # every attempt the retry policy allows
