"""Tracing and metrics on real parts: the time-skipping server, a real worker, real HTTP.

- A client built with `client_interceptors()` starts a tiny workflow that runs an activity; the
  spans land in the SDK's InMemorySpanExporter as one trace:
  StartWorkflow -> RunWorkflow -> StartActivity -> RunActivity.
- The same worker runs on `metrics_runtime()`; a real HTTP GET of its Prometheus endpoint shows
  Temporal's own metrics and the project's counters recorded from the workflow and the activity.
- OTLP export reaches a real HTTP collector on localhost (protobuf body decoded and checked).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import uuid
from datetime import timedelta
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import httpx
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runtime import telemetry
    from runtime.config import Settings
    from runtime.converter import data_converter


# ---------------------------------------------------------------- the tiny workflow under test


@activity.defn(name="telemetry_probe_notify")
async def probe_notify(channel: str) -> str:
    telemetry.count_notice_sent(activity.metric_meter(), channel=channel, kind="collection")
    return f"sent:{channel}"


@workflow.defn(name="TelemetryProbeWorkflow", sandboxed=True)
class TelemetryProbeWorkflow:
    @workflow.run
    async def run(self, channel: str) -> str:
        telemetry.count_stage_entry(workflow.metric_meter(), stage="call")
        return await workflow.execute_activity(
            probe_notify, channel, start_to_close_timeout=timedelta(seconds=10)
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the enablement rule


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(env, expected, otel_environ):
    from temporalio.contrib.opentelemetry import TracingInterceptor

    assert telemetry.traces_exporters(env) == expected
    interceptors = telemetry.client_interceptors(env)
    if expected:
        # Temporal's tracing, then the request interceptor inside it (the order matters)
        assert len(interceptors) == 2 and isinstance(interceptors[0], TracingInterceptor)
        assert type(interceptors[1]).__name__ == "RequestTraceInterceptor"
    else:
        assert interceptors == []
        otel_environ(env)
        assert telemetry.setup_tracing("collections-test", set_global=False) is None


@pytest.fixture
def otel_environ(monkeypatch):
    """Sets the process's OTEL_* variables to exactly the given ones (the SDK reads os.environ)."""
    import os

    def apply(env: dict[str, str]) -> None:
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    apply({})
    return apply


def test_unknown_exporter_or_protocol_is_refused_naming_the_variable(otel_environ):
    with pytest.raises(ValueError, match=r"OTEL_TRACES_EXPORTER: unknown exporter jaeger"):
        telemetry.traces_exporters({"OTEL_TRACES_EXPORTER": "otlp,jaeger"})
    otel_environ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol 'carrier-pigeon'"):
        telemetry.setup_tracing("t", set_global=False)
    otel_environ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"})
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported protocol 'http/json'"):
        telemetry.setup_tracing("t", set_global=False)


def test_exporters_are_the_ones_opentelemetry_packages_register():
    """Names resolve through the SDK's entry points: the SDK's console exporter, the OTLP/HTTP
    package's exporter (also by its own name), and whatever else an installed package registers."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert telemetry.traces_exporters({"OTEL_TRACES_EXPORTER": "otlp_proto_http,console"}) == ["otlp_proto_http", "console"]
    assert isinstance(telemetry._span_exporter("console"), ConsoleSpanExporter)
    assert isinstance(telemetry._span_exporter("otlp"), OTLPSpanExporter)


def test_service_name_and_resource_come_from_the_sdk_reading_the_standard_variables(otel_environ):
    otel_environ({
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "collections-worker-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging,service.name=ignored,service.namespace=lending",
    })
    provider = telemetry.setup_tracing("collections-worker", set_global=False)
    assert provider is not None
    attributes = provider.resource.attributes
    assert attributes["service.name"] == "collections-worker-eu"
    assert attributes["deployment.environment"] == "staging"
    assert attributes["service.namespace"] == "lending"  # the environment wins over the default
    assert attributes["telemetry.sdk.name"] == "opentelemetry"  # the SDK's own resource
    provider.shutdown()

    otel_environ({"OTEL_TRACES_EXPORTER": "console"})
    provider = telemetry.setup_tracing("collections-portal", set_global=False)
    assert provider.resource.attributes["service.name"] == "collections-portal"
    assert provider.resource.attributes["service.namespace"] == "collections"
    provider.shutdown()


def test_a_malformed_resource_attribute_is_skipped_with_the_sdks_warning(otel_environ, caplog):
    """The SDK's rule for OTEL_RESOURCE_ATTRIBUTES: a pair without `=` is named in a warning and
    left out; the well-formed pairs and the process still start."""
    otel_environ({"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "nokey,region=cn-east"})
    with caplog.at_level("WARNING"):
        provider = telemetry.setup_tracing("t", set_global=False)
    assert "Invalid key value resource attribute pair nokey" in caplog.text
    assert provider.resource.attributes["region"] == "cn-east" and "nokey" not in provider.resource.attributes
    provider.shutdown()


def test_the_sampler_is_the_sdks_from_otel_traces_sampler(otel_environ):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    otel_environ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"})
    provider = telemetry.setup_tracing("t", set_global=False)
    assert provider.sampler is ALWAYS_OFF
    with provider.get_tracer("test").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    provider.shutdown()

    otel_environ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                  "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    provider = telemetry.setup_tracing("t", set_global=False)
    assert isinstance(provider.sampler, ParentBased)
    root = provider.sampler._root
    assert isinstance(root, TraceIdRatioBased) and root.rate == 0.25
    provider.shutdown()


def test_missing_otlp_package_falls_back_with_a_clear_log_line(monkeypatch, caplog, otel_environ):
    # An import of a module set to None in sys.modules raises ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    otel_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    with caplog.at_level("WARNING", logger="runtime.telemetry"):
        provider = telemetry.setup_tracing("t", set_global=False)
    assert provider is not None  # spans still get ids and propagate; nothing is exported
    assert telemetry.OTLP_HTTP_PACKAGE in caplog.text and "NOT exported" in caplog.text
    provider.shutdown()


# ---------------------------------------------------------------- OTLP to a real HTTP collector


def test_otlp_http_export_reaches_a_collector(otel_environ):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, str, bytes]] = []
    tokens: list[str | None] = []

    # Defined here, not at module level: the workflow sandbox re-imports this module and refuses
    # subclasses of http.server classes.
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            tokens.append(self.headers.get("x-collector-token"))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The exporter reads the endpoint (adding /v1/traces) and the headers itself.
        otel_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
                      "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=t0k3n"})
        provider = telemetry.setup_tracing("collections-worker", set_global=False)
        with provider.get_tracer("test").start_as_current_span("intake WL-1"):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()

    assert received, "the collector received nothing"
    path, content_type, body = received[0]
    assert path == "/v1/traces"
    assert tokens[0] == "t0k3n"
    assert content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    resource_spans = request.resource_spans[0]
    service = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}["service.name"]
    assert service == "collections-worker"
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == ["intake WL-1"]


# ---------------------------------------------------------------- one traced, metered workflow run


@pytest.fixture(scope="module")
async def probe_run(ts_env):
    """Run TelemetryProbeWorkflow once with tracing into memory and metrics on a real port."""
    exporter = InMemorySpanExporter()
    provider = telemetry.setup_tracing("collections-test", exporter=exporter, set_global=False)
    interceptors = telemetry.client_interceptors({"OTEL_TRACES_EXPORTER": "otlp"}, tracer_provider=provider)
    port = free_port()
    runtime = telemetry.metrics_runtime(env={"COLLECTIONS_METRICS_PORT": str(port)})
    assert runtime is not None

    target = ts_env.client.config()["service_client"].config.target_host
    client = await Client.connect(
        target,
        namespace=ts_env.client.namespace,
        data_converter=data_converter(Settings()),
        interceptors=interceptors,
        runtime=runtime,
    )
    task_queue = f"telemetry-{uuid.uuid4()}"
    workflow_id = f"telemetry-probe-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[TelemetryProbeWorkflow], activities=[probe_notify]):
        result = await client.execute_workflow(
            TelemetryProbeWorkflow.run, "sms", id=workflow_id, task_queue=task_queue
        )
        metrics_text = await _scrape_until(port, ["temporal_workflow_completed", "collections_notices_sent"])
    provider.force_flush()
    return {"result": result, "spans": exporter.get_finished_spans(), "metrics": metrics_text, "port": port}


async def _scrape_until(port: int, needles: list[str], timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    text = ""
    async with httpx.AsyncClient() as http:
        while True:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert response.status_code == 200
            text = response.text
            if all(needle in text for needle in needles) or asyncio.get_running_loop().time() > deadline:
                return text
            await asyncio.sleep(0.2)


async def test_client_worker_spans_form_one_linked_trace(probe_run):
    assert probe_run["result"] == "sent:sms"
    spans = {span.name: span for span in probe_run["spans"]}
    chain = [
        "StartWorkflow:TelemetryProbeWorkflow",
        "RunWorkflow:TelemetryProbeWorkflow",
        "StartActivity:telemetry_probe_notify",
        "RunActivity:telemetry_probe_notify",
    ]
    missing = [name for name in chain if name not in spans]
    assert not missing, f"missing spans {missing}; got {sorted(spans)}"
    trace_ids = {spans[name].context.trace_id for name in chain}
    assert len(trace_ids) == 1 and 0 not in trace_ids
    # TracingInterceptor's workflow spans are zero-length markers, so the workflow's own spans hang
    # off the span that started the workflow; the activity's run hangs off its scheduling.
    parent_of = {
        "RunWorkflow:TelemetryProbeWorkflow": "StartWorkflow:TelemetryProbeWorkflow",
        "StartActivity:telemetry_probe_notify": "StartWorkflow:TelemetryProbeWorkflow",
        "RunActivity:telemetry_probe_notify": "StartActivity:telemetry_probe_notify",
    }
    assert spans[chain[0]].parent is None
    for child, parent in parent_of.items():
        assert spans[child].parent is not None, f"{child} has no parent"
        assert spans[child].parent.span_id == spans[parent].context.span_id, f"{child} is not a child of {parent}"
    assert spans[chain[0]].resource.attributes["service.name"] == "collections-test"


async def test_prometheus_endpoint_serves_temporal_and_project_metrics(probe_run):
    text = probe_run["metrics"]
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]

    def samples(name: str) -> list[str]:
        return [line for line in lines if line.startswith(name + "{") or line.startswith(name + " ")]

    assert samples("temporal_workflow_completed_total"), "no Temporal SDK metrics on the endpoint"
    assert samples("temporal_activity_execution_latency_bucket") or samples("temporal_activity_execution_latency")
    stage = [s for s in samples("collections_stage_entries_total") if 'stage="call"' in s]
    assert stage and stage[0].rsplit(" ", 1)[1] == "1", stage
    notices = [s for s in samples("collections_notices_sent_total") if 'channel="sms"' in s]
    assert notices and 'kind="collection"' in notices[0] and notices[0].rsplit(" ", 1)[1] == "1", notices


# ---------------------------------------------------------------- the project's metric API


def test_metrics_port_is_validated_and_optional():
    assert telemetry.metrics_bind_address({}) is None
    assert telemetry.metrics_runtime(env={}) is None
    assert telemetry.metrics_bind_address({"COLLECTIONS_METRICS_PORT": "9464"}) == "0.0.0.0:9464"
    with pytest.raises(ValueError, match=r"COLLECTIONS_METRICS_PORT: 'abc' is not a port number"):
        telemetry.metrics_bind_address({"COLLECTIONS_METRICS_PORT": "abc"})
    with pytest.raises(ValueError, match=r"COLLECTIONS_METRICS_PORT: 70000 is out of range"):
        telemetry.metrics_bind_address({"COLLECTIONS_METRICS_PORT": "70000"})


def test_project_counters_refuse_bad_labels_naming_the_field():
    meter = MetricMeter.noop
    with pytest.raises(ValueError, match=r"stage: 'court' is not one of agency, call, legal, notice, visit"):
        telemetry.count_stage_entry(meter, stage="court")
    with pytest.raises(ValueError, match=r"channel: 'fax'"):
        telemetry.count_notice_sent(meter, channel="fax")
    with pytest.raises(ValueError, match=r"kind: 'spam'"):
        telemetry.count_notice_sent(meter, channel="sms", kind="spam")
    with pytest.raises(ValueError, match=r"currency: 'yuan'"):
        telemetry.count_payment(meter, currency="yuan", result="applied")
    with pytest.raises(ValueError, match=r"result: 'bounced'"):
        telemetry.count_payment(meter, currency="CNY", result="bounced")
    with pytest.raises(ValueError, match=r"outcome: 'maybe'"):
        telemetry.count_plan_outcome(meter, outcome="maybe")


async def test_project_counters_reach_the_endpoint_with_their_labels():
    port = free_port()
    runtime = telemetry.metrics_runtime(bind_address=f"127.0.0.1:{port}")
    meter = runtime.metric_meter
    from domain.models import Stage

    telemetry.count_payment(meter, currency="CNY", result="applied")
    telemetry.count_payment(meter, currency="CNY", result="applied")
    telemetry.count_payment(meter, currency="CNY", result="duplicate")
    telemetry.count_plan_outcome(meter, outcome="broken")
    telemetry.count_stage_entry(meter, stage=Stage.LEGAL)
    text = await _scrape_until(port, ["collections_payments", "collections_plan_outcomes", "collections_stage_entries"])
    lines = [line for line in text.splitlines() if line.startswith("collections_")]

    def value(name: str, *labels: str) -> str | None:
        for line in lines:
            if line.startswith(name + "{") and all(label in line for label in labels):
                return line.rsplit(" ", 1)[1]
        return None

    assert value("collections_payments_total", 'currency="CNY"', 'result="applied"') == "2"
    assert value("collections_payments_total", 'result="duplicate"') == "1"
    assert value("collections_plan_outcomes_total", 'outcome="broken"') == "1"
    assert value("collections_stage_entries_total", 'stage="legal"') == "1"
    assert set(telemetry.PROJECT_COUNTERS) == {
        "collections_notices_sent",
        "collections_payments",
        "collections_stage_entries",
        "collections_plan_outcomes",
    }
