"""The worker refuses a loan whose policy compresses time, unless it runs in demo mode.

A workflow inbound interceptor: before a CollectionWorkflow's run starts (its first run, or one it
continued as new), it reads the input's `policy.day_length_seconds`; anything but 86400 fails that
workflow with a non-retryable ApplicationError of type CompressedDayRefused naming the field,
unless the worker was started in demo mode (runtime.demo). The workflow code is untouched and
recorded histories replay as before: the Replayer runs without worker interceptors.
"""

from __future__ import annotations

import functools
from typing import Any

import temporalio.worker
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.contract import COLLECTION_WORKFLOW
from runtime.demo import COMPRESSED_DAY_REFUSED, compressed_day_reason, compresses_time, day_length_of


@functools.cache
def _inbound_class() -> type[temporalio.worker.WorkflowInboundInterceptor]:
    # Built here, outside any workflow sandbox, and handed to the sandbox as a class.
    class RefuseCompressedDays(temporalio.worker.WorkflowInboundInterceptor):
        async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
            if workflow.info().workflow_type == COLLECTION_WORKFLOW and input.args:
                first = input.args[0]
                policy = first.get("policy") if isinstance(first, dict) else getattr(first, "policy", None)
                day_length = day_length_of(policy)
                if compresses_time(day_length):
                    raise ApplicationError(compressed_day_reason(day_length), {"field": "policy.day_length_seconds",
                                                                               "value": day_length},
                                           type=COMPRESSED_DAY_REFUSED, non_retryable=True)
            return await super().execute_workflow(input)

    return RefuseCompressedDays


class CompressedDayGuard(temporalio.worker.Interceptor):
    """Add to a worker that is not in demo mode (worker.main.build_worker does)."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _inbound_class()
