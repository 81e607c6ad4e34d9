"""One loan traced end to end on real parts: the dev server, a real worker, the portal app, real SMTP.

Wiring as in production: `runtime.telemetry.setup_tracing` installs the global provider (here with
an InMemorySpanExporter), `runtime.client.connect()` adds Temporal's TracingInterceptor because the
environment asks for traces, the worker runs on that client, and the portal app (create_app, as
`python -m portal` builds it) traces its requests through FastAPI's built-in OpenTelemetry support,
which uses the global provider.

What the spans show:
- The loan's trace (started by intake): StartWorkflow -> RunWorkflow, StartActivity:send_email ->
  RunActivity:send_email -> smtp.send (the SMTP conversation with aiosmtpd), with the notice's key
  and kind and no personal data.
- The HTTP request's trace, continuing the caller's `traceparent`: the borrower's
  `POST /v1/loans/{loan_id}/payments` -> QueryWorkflow:borrower_id (ownership check) ->
  HandleQuery:borrower_id (run by the worker, in the workflow), and no signal (a started payment is
  not money); the provider's `POST /v1/payment-notifications` -> SignalWorkflow:payment_received;
  the same for a plan through the update (StartWorkflowUpdate:propose_payment_plan).
- The bridge: the workflow handles the signal and the update inside the loan's trace
  (HandleSignal / ValidateUpdate / HandleUpdate, children of the loan's StartWorkflow) with a span
  link to the request's SignalWorkflow / StartWorkflowUpdate span. Temporal's TracingInterceptor
  keeps a workflow in the trace that started it, because a loan lives for months and its
  timer-driven work belongs to no single request; a trace backend follows the link.
- The request's consequences: what the workflow starts in answer to the request (the plan's child,
  the confirmation email down to its smtp.send span) joins the request's trace
  (runtime.telemetry.RequestTraceInterceptor).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.contrib.opentelemetry import TracingInterceptor

from portal import create_app
from runtime import telemetry
from runtime.client import connect
from runtime.config import Settings
from tests.harness import loan_input, running_worker
from portal.payments import NOTIFICATION_PATH, signed_headers
from tests.test_portal_support import (
    ALWAYS_OPEN,
    SECRET,
    TZ,
    WEBHOOK_SECRET,
    bearer,
    notification,
    portal_config,
    today,
)

pytestmark = pytest.mark.devserver

LOAN = f"TR-{uuid.uuid4().hex[:8].upper()}"
BORROWER = f"B-{LOAN}"  # tests.harness.loan_input's borrower id
EMAIL = f"{LOAN.lower()}@example.com"
PERSONAL = (EMAIL, "+8613800000000", "张三", "上海市浦东新区")


# ---------------------------------------------------------------- tracing on, as in a deployment


@pytest.fixture(scope="module")
def exporter():
    """An in-memory exporter on the process's global provider (the one setup_tracing installs)."""
    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # installed earlier in this process: listen in on it
        current.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        with pytest.MonkeyPatch.context() as env:  # only this exporter, whatever the shell exports
            for name in [n for n in os.environ if n.startswith("OTEL_")]:
                env.delenv(name)
            provider = telemetry.setup_tracing("collections-e2e", exporter=exporter)
        assert provider is not None and trace.get_tracer_provider() is provider
    yield exporter
    exporter.shutdown()  # later spans in this process are dropped
    exporter.clear()


async def _traced_client(dev_env, exporter):
    target = dev_env.client.config()["service_client"].config.target_host
    settings = Settings().model_copy(update={"temporal_address": target,
                                             "temporal_namespace": dev_env.client.namespace})
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OTEL_SDK_DISABLED", raising=False)
        env.setenv("OTEL_TRACES_EXPORTER", "otlp")  # what a deployment sets, with its collector's endpoint
        assert telemetry.tracing_enabled()
        client = await connect(settings)
    assert any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    return client


async def _eventually(read: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = read()
        if asyncio.iscoroutine(value):
            value = await value
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _named(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name
            and all((s.attributes or {}).get(k) == v for k, v in attributes.items())]


def _one(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    found = _named(spans, name, **attributes)
    assert len(found) == 1, f"expected one {name} {attributes}, got {len(found)}; spans: {sorted({s.name for s in spans})}"
    return found[0]


def _chain(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of the span's ancestors present in `spans`, nearest first."""
    by_id = {s.context.span_id: s for s in spans}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def _traceparent() -> tuple[int, int, str]:
    trace_id, span_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
    return trace_id, span_id, f"00-{trace_id:032x}-{span_id:016x}-01"


@pytest.fixture(scope="module")
async def run(dev_env, exporter, tmp_path_factory):
    """Intake a loan due a notice, let the email go out, then a payment and a plan through the portal."""
    client = await _traced_client(dev_env, exporter)
    async with running_worker(client, tmp_path_factory.mktemp("tracing")) as h:
        inp = loan_input(LOAN, today=today(), dpd=3, principal="3000.00", policy=ALWAYS_OPEN, tz=TZ, email_addr=EMAIL)
        handle = await h.start(inp)  # as `collections intake` does, through a traced client
        await _eventually(lambda: h.emails_to(EMAIL), bool, "the collection notice by email")
        await _eventually(lambda: exporter.get_finished_spans(),
                          lambda spans: _named(spans, "RunActivity:send_email"), "the send_email activity span")

        app = create_app(Settings(portal_jwt_secret=SECRET, task_queue=h.task_queue), client=client,
                         config=portal_config(rate_per_second=1000, rate_burst=1000))
        pay_trace, pay_parent, pay_header = _traceparent()
        confirm_trace, confirm_parent, confirm_header = _traceparent()
        plan_trace, plan_parent, plan_header = _traceparent()
        first_due = (today() + timedelta(days=10)).isoformat()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as http:
            paid = await http.post(f"/v1/loans/{LOAN}/payments", json={"payment_id": "P-TR-1", "amount": "100.00"},
                                   headers={**bearer(BORROWER), "traceparent": pay_header})
            body = notification(LOAN, "portal-P-TR-1", "100.00")
            confirmed = await http.post(NOTIFICATION_PATH, content=body, headers={
                **signed_headers(WEBHOOK_SECRET.encode(), body), "traceparent": confirm_header})
            plan = await http.post(f"/v1/loans/{LOAN}/payment-plans",
                                   json={"installments": 3, "first_due_date": first_due, "interval_days": 30,
                                         "down_payment": "0.00"},
                                   headers={**bearer(BORROWER), "traceparent": plan_header})
        assert paid.status_code == 202, paid.text
        assert confirmed.status_code == 200, confirmed.text
        assert plan.status_code == 200 and plan.json()["accepted"] is True, plan.text
        spans = await _eventually(
            lambda: exporter.get_finished_spans(),
            lambda s: _named(s, "HandleSignal:payment_received") and _named(s, "HandleUpdate:propose_payment_plan")
            and _named(s, "StartChildWorkflow:RestructuringWorkflow")
            and [x for x in _named(s, "smtp.send") if x.attributes["collections.notice.kind"] == "plan_accepted"],
            "the workflow's handler spans and the plan's confirmation email")
        status = await h.status(handle)
        await handle.terminate("tracing test done")
    return {"spans": list(spans), "workflow_id": handle.id, "status": status,
            "pay": (pay_trace, pay_parent), "confirm": (confirm_trace, confirm_parent), "plan": (plan_trace, plan_parent)}


# ---------------------------------------------------------------- the loan's trace: activity -> SMTP


async def test_the_email_notice_is_an_smtp_span_under_its_activity(run):
    spans = run["spans"]
    start = _one(spans, "StartWorkflow:CollectionWorkflow", temporalWorkflowID=run["workflow_id"])
    loan_trace = start.context.trace_id
    assert start.parent is None and start.kind == SpanKind.CLIENT
    in_loan = [s for s in spans if s.context.trace_id == loan_trace]
    run_wf = _one(in_loan, "RunWorkflow:CollectionWorkflow")
    assert run_wf.parent.span_id == start.context.span_id

    smtp = [s for s in _named(in_loan, "smtp.send") if s.attributes["collections.loan_id"] == LOAN]
    assert len(smtp) == 1, [dict(s.attributes) for s in smtp]
    smtp = smtp[0]
    run_activity = next(s for s in in_loan if s.context.span_id == smtp.parent.span_id)
    assert run_activity.name == "RunActivity:send_email"
    start_activity = next(s for s in in_loan if s.context.span_id == run_activity.parent.span_id)
    assert start_activity.name == "StartActivity:send_email"
    assert start_activity.parent.span_id == start.context.span_id  # scheduled by the loan's workflow

    a = smtp.attributes
    assert smtp.kind == SpanKind.CLIENT and smtp.status.status_code == StatusCode.UNSET
    assert a["collections.notice.channel"] == "email" and a["collections.notice.kind"] == "collection"
    assert a["collections.notice.stage"] == "notice"
    assert a["collections.notice.key"].startswith(f"{LOAN}:")
    assert a["server.address"] == "127.0.0.1" and isinstance(a["server.port"], int)
    assert a["collections.email.message_id"].endswith(">")
    # The SMTP conversation happens inside the activity's execution.
    assert run_activity.start_time <= smtp.start_time <= smtp.end_time <= run_activity.end_time


# ---------------------------------------------------------------- the request's trace: HTTP -> signal


async def test_a_borrowers_payment_is_one_trace_and_sends_no_signal(run):
    spans = run["spans"]
    caller_trace, caller_span = run["pay"]
    in_request = [s for s in spans if s.context.trace_id == caller_trace]
    http = _one(in_request, "POST /v1/loans/{loan_id}/payments")
    assert http.kind == SpanKind.SERVER and http.instrumentation_scope.name == "fastapi"
    assert http.parent.is_remote and http.parent.span_id == caller_span  # continues the caller's trace
    assert http.attributes["http.route"] == "/v1/loans/{loan_id}/payments"
    assert http.attributes["http.request.method"] == "POST"
    assert http.attributes["http.response.status_code"] == 202
    assert http.attributes["url.path"] == f"/v1/loans/{LOAN}/payments"

    query = _one(in_request, "QueryWorkflow:borrower_id")
    # Under the request span, through FastAPI's operation spans: the ownership check runs as a dependency.
    assert _chain(query, in_request) == ["fastapi.dependencies", http.name], _chain(query, in_request)
    assert query.kind == SpanKind.CLIENT and query.attributes["temporalWorkflowID"] == run["workflow_id"]
    # The ownership query ran in the workflow, on the worker, inside the request's trace.
    handled_query = _one(in_request, "HandleQuery:borrower_id")
    assert handled_query.parent.span_id == query.context.span_id
    assert not _named(in_request, "SignalWorkflow:payment_received"), "a started payment is not money"


async def test_a_providers_confirmation_is_one_trace_from_the_provider_to_the_signal(run):
    spans = run["spans"]
    caller_trace, caller_span = run["confirm"]
    in_request = [s for s in spans if s.context.trace_id == caller_trace]
    http = _one(in_request, "POST /v1/payment-notifications")
    assert http.parent.is_remote and http.parent.span_id == caller_span
    assert http.attributes["http.response.status_code"] == 200
    signal = _one(in_request, "SignalWorkflow:payment_received")
    assert _chain(signal, in_request) == ["fastapi.endpoint", http.name], _chain(signal, in_request)
    assert signal.kind == SpanKind.CLIENT and signal.attributes["temporalWorkflowID"] == run["workflow_id"]


async def test_the_workflow_handles_the_signal_in_the_loan_trace_linked_to_the_request(run):
    spans = run["spans"]
    caller_trace, _ = run["confirm"]
    signal = _one(spans, "SignalWorkflow:payment_received")
    start = _one(spans, "StartWorkflow:CollectionWorkflow", temporalWorkflowID=run["workflow_id"])
    handled = _one(spans, "HandleSignal:payment_received")
    assert handled.context.trace_id == start.context.trace_id != caller_trace
    assert handled.parent.span_id == start.context.span_id
    links = [link.context for link in handled.links]
    assert any(c.trace_id == caller_trace and c.span_id == signal.context.span_id for c in links), links
    # ... and the payment took effect.
    assert run["status"].paid_total == run["status"].paid_total.__class__("100.00")


async def test_a_portal_plan_goes_through_the_update_and_starts_the_plan_child(run):
    spans = run["spans"]
    caller_trace, caller_span = run["plan"]
    in_request = [s for s in spans if s.context.trace_id == caller_trace]
    http = _one(in_request, "POST /v1/loans/{loan_id}/payment-plans")
    assert http.parent.span_id == caller_span and http.attributes["http.response.status_code"] == 200
    update = _one(in_request, "StartWorkflowUpdate:propose_payment_plan")
    assert _chain(update, in_request)[-1] == http.name

    start = _one(spans, "StartWorkflow:CollectionWorkflow", temporalWorkflowID=run["workflow_id"])
    for name in ("ValidateUpdate:propose_payment_plan", "HandleUpdate:propose_payment_plan"):
        handled = _one(spans, name)
        assert handled.context.trace_id == start.context.trace_id
        assert any(link.context.span_id == update.context.span_id for link in handled.links), name
    # What the workflow does in answer is the request's consequence, in the request's trace
    # (runtime.telemetry.RequestTraceInterceptor): it starts the plan's child and confirms the plan by
    # email — one trace from the borrower's HTTP call through the update into the workflow, to the
    # activity and the SMTP send.
    child = _one(spans, "StartChildWorkflow:RestructuringWorkflow")
    assert child.context.trace_id == caller_trace
    [smtp] = [s for s in _named(spans, "smtp.send") if s.attributes["collections.notice.kind"] == "plan_accepted"]
    assert smtp.context.trace_id == caller_trace
    run_activity = next(s for s in in_request if s.context.span_id == smtp.parent.span_id)
    assert run_activity.name == "RunActivity:send_email"
    start_activity = next(s for s in in_request if s.context.span_id == run_activity.parent.span_id)
    assert start_activity.name == "StartActivity:send_email"
    assert run["status"].state.value == "restructuring"


async def test_no_span_carries_personal_data(run):
    loan_traces = {s.context.trace_id for s in run["spans"]
                   if (s.attributes or {}).get("temporalWorkflowID", "").startswith(f"loan-{LOAN}")}
    request_traces = {run["pay"][0], run["confirm"][0], run["plan"][0]}
    ours = [s for s in run["spans"] if s.context.trace_id in loan_traces | request_traces]
    assert len(ours) >= 15
    for span in ours:
        texts = [span.name, *(str(v) for v in (span.attributes or {}).values()),
                 *(str(v) for e in span.events for v in (e.attributes or {}).values())]
        for text in texts:
            for secret in (*PERSONAL, SECRET, "Bearer "):
                assert secret not in text, f"{span.name} carries {secret!r}"
