"""Traces and metrics: OpenTelemetry tracing through Temporal, Prometheus metrics from the SDK.

Three pieces, all configured from the environment (see docs/observability.md):

- Tracing. `setup_tracing(service_name)` installs an OpenTelemetry SDK `TracerProvider` built from
  the standard `OTEL_*` variables; `client_interceptors()` returns Temporal's `TracingInterceptor`
  when tracing is on, and `runtime.client.connect()` adds it to every client, so the worker's
  workflows and activities and the portal's and CLI's calls share one trace per request
  (StartWorkflow -> RunWorkflow -> StartActivity -> RunActivity).

  Tracing is ON when `OTEL_TRACES_EXPORTER` is set to anything but `none`, or, with it unset, when an
  OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
  It is OFF otherwise, and always with `OTEL_SDK_DISABLED=true`: a process with no tracing
  configured pays nothing for it.

- SDK metrics. `metrics_runtime()` returns a `temporalio.runtime.Runtime` whose Prometheus endpoint
  (`/metrics` on `COLLECTIONS_METRICS_PORT`) exposes Temporal's own worker and client metrics, or
  None when the variable is unset. Pass it as `runtime=` to `Client.connect` (or to
  `runtime.client.connect(settings, runtime=...)`).

- The project's metrics. Workflows and activities count business events through Temporal's metric
  meter (`workflow.metric_meter()` is replay-safe; `activity.metric_meter()`), so they leave through
  the same endpoint: `count_notice_sent`, `count_payment`, `count_stage_entry`,
  `count_plan_outcome`. Each validates its labels and raises ValueError naming the bad one.

This module imports only the standard library, temporalio.common and domain/ at import time, so a
workflow may import it (inside `workflow.unsafe.imports_passed_through()`); OpenTelemetry is
imported when tracing is set up.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from temporalio.common import MetricMeter

from domain.commands import NoticeKind
from domain.models import Stage

if TYPE_CHECKING:  # pragma: no cover - typing only
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.runtime import Runtime

    from .config import Settings

log = logging.getLogger(__name__)

OTLP_HTTP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"
OTLP_GRPC_PACKAGE = "opentelemetry-exporter-otlp-proto-grpc"
METRICS_PORT_ENV = "COLLECTIONS_METRICS_PORT"

# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}

_installed_provider: TracerProvider | None = None


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def traces_exporters(env: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for, by their OpenTelemetry names (`otlp`, `console`,
    or any other exporter an installed package registers, e.g. `zipkin_json`).

    `OTEL_TRACES_EXPORTER` is a comma-separated list (`none` turns tracing off); unset, it means
    `otlp` when an OTLP endpoint is configured and nothing otherwise (the project's rule: a process
    with no tracing configured pays nothing). `OTEL_SDK_DISABLED=true` turns everything off. A name
    that no installed package registers is a ValueError naming the variable.
    """
    e = _env(env)
    if (_get(e, "OTEL_SDK_DISABLED") or "").lower() in _TRUE:
        return []
    raw = _get(e, "OTEL_TRACES_EXPORTER")
    if raw is None:
        endpoint = _get(e, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _get(e, "OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    known = _known_exporters()
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)!s}; "
            f"expected a comma-separated list of {', '.join(sorted(known))}"
        )
    if "none" in names:
        return []
    return list(dict.fromkeys(names))  # de-duplicated, order kept


EXPORTER_ENTRY_POINTS = "opentelemetry_traces_exporter"
"""The entry-point group in which OpenTelemetry packages register span exporters by name."""

_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_PACKAGE_BY_ENTRY_POINT = {"otlp_proto_http": OTLP_HTTP_PACKAGE, "otlp_proto_grpc": OTLP_GRPC_PACKAGE}


def _known_exporters() -> set[str]:
    from importlib.metadata import entry_points

    return {"otlp", "none", *_PACKAGE_BY_ENTRY_POINT, *entry_points(group=EXPORTER_ENTRY_POINTS).names}


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns tracing on (see the module docstring for the rule)."""
    return bool(traces_exporters(env))


def client_interceptors(
    env: Mapping[str, str] | None = None, *, tracer_provider: Any | None = None
) -> list[Any]:
    """Interceptors for every Temporal client: Temporal's TracingInterceptor when tracing is on.

    A client's interceptors also apply to workers built on it, so one call covers client calls,
    workflows and activities. The interceptor uses `tracer_provider` when given, else the global
    provider (the one `setup_tracing` installs; before that, a proxy that starts exporting as
    soon as a provider is installed).
    """
    if not tracing_enabled(env):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    tracer = None
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("collections.temporal")
    # Order matters: the request interceptor must sit inside the tracing one (see its docstring).
    return [TracingInterceptor(tracer), RequestTraceInterceptor()]


@functools.cache
def _request_trace_interceptor_class() -> type:
    import temporalio.client
    import temporalio.worker
    from opentelemetry import context as otel_context
    from opentelemetry import propagate
    from temporalio import workflow

    # Imported here, outside any workflow sandbox: the sandbox must not import OpenTelemetry itself.
    textmap = propagate.get_global_textmap()

    class _Outbound(temporalio.worker.WorkflowOutboundInterceptor):
        def __init__(self, next: temporalio.worker.WorkflowOutboundInterceptor, inbound: _Inbound) -> None:
            super().__init__(next)
            self._inbound = inbound

        def _in_request(self) -> Any:
            """The caller's context while the workflow acts on its input, else None."""
            carrier = self._inbound.carrier
            if carrier is None or not getattr(workflow.instance(), "acting_on_input", False):
                return None
            return textmap.extract(carrier)

        def start_activity(self, input: temporalio.worker.StartActivityInput) -> workflow.ActivityHandle[Any]:
            ctx = self._in_request()
            if ctx is None:
                return super().start_activity(input)
            token = otel_context.attach(ctx)
            try:
                return super().start_activity(input)
            finally:
                otel_context.detach(token)

        async def start_child_workflow(self, input: temporalio.worker.StartChildWorkflowInput) -> Any:
            ctx = self._in_request()
            if ctx is None:
                return await super().start_child_workflow(input)
            token = otel_context.attach(ctx)
            try:
                return await super().start_child_workflow(input)
            finally:
                otel_context.detach(token)

    class _Inbound(temporalio.worker.WorkflowInboundInterceptor):
        carrier: dict[str, str] | None = None

        def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
            super().init(_Outbound(outbound, self))

        def _remember(self, headers: Any) -> None:
            header = headers.get(REQUEST_TRACE_HEADER)
            if header is not None:
                self.carrier = workflow.payload_converter().from_payloads([header])[0]

        async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
            self._remember(input.headers)
            await super().handle_signal(input)

        async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
            self._remember(input.headers)
            return await super().handle_update_handler(input)

    class RequestTraceInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
        """Puts what a workflow does in answer to a signal or update into the caller's trace.

        Temporal's TracingInterceptor keeps a long-lived workflow in the trace that started it and only
        links the spans of later signals and updates to their callers. A loan lives for months, but
        the activities it runs right after a payment or a plan proposal (closing the loan, cancelling
        tasks, starting the plan's child) are that request's consequences: while the workflow says it
        is acting on input (its `acting_on_input` attribute), this interceptor makes the caller's span
        the parent of the activities and child workflows it starts, so one trace follows a portal
        request through the signal into the workflow, to the activity and the SMTP send. It must come
        after the TracingInterceptor in the interceptor list (client_interceptors returns both).
        """

        def workflow_interceptor_class(self, input: Any) -> type[_Inbound]:
            return _Inbound

    return RequestTraceInterceptor


REQUEST_TRACE_HEADER = "_tracer-data"
"""The header in which Temporal's TracingInterceptor carries the caller's trace context."""


def RequestTraceInterceptor() -> Any:  # noqa: N802 - the class is built once, lazily (temporalio.worker is heavy)
    return _request_trace_interceptor_class()()


def _exporter_entry_point(name: str) -> str:
    """`otlp` is OTLP over the protocol OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL names: http/protobuf
    unless it says grpc (the SDK's own default would be grpc, whose package the image does not carry)."""
    if name != "otlp":
        return name
    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = _get(os.environ, variable)
    if protocol is None:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = _get(os.environ, variable) or "http/protobuf"
    try:
        return _OTLP_BY_PROTOCOL[protocol.lower()]
    except KeyError:
        raise ValueError(
            f"{variable}: unsupported protocol {protocol!r}; expected {' or '.join(_OTLP_BY_PROTOCOL)}"
        ) from None


def _span_exporter(name: str) -> SpanExporter | None:
    """The exporter the installed OpenTelemetry packages register under `name`, built with no
    arguments, so that it reads its own OTEL_EXPORTER_* variables (endpoint, headers, timeout,
    compression, certificates). None, with one warning naming the package, when it is not installed."""
    from importlib.metadata import entry_points

    point = _exporter_entry_point(name)
    package = _PACKAGE_BY_ENTRY_POINT.get(point, f"the package registering {point!r}")
    found = list(entry_points(group=EXPORTER_ENTRY_POINTS, name=point))
    try:
        if not found:
            raise ImportError(point)
        exporter_class = found[0].load()
    except ImportError:
        hint = (
            "or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with the collector's HTTP port (4318)"
            if point == "otlp_proto_grpc"
            else "or set OTEL_TRACES_EXPORTER=console"
        )
        log.warning(
            "tracing: the %s exporter was asked for but %s is not installed; traces are NOT exported. "
            "Install it (pip install %s), %s.",
            name, package, package, hint,
        )
        return None
    return exporter_class()


def _resource(service_name: str) -> Any:
    """The SDK's resource (it reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself), with
    the process's defaults where the environment says nothing: `service.name` (the SDK's own
    default is `unknown_service`), `service.namespace` "collections" and the package's version."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    defaults: dict[str, str] = {SERVICE_NAME: service_name, "service.namespace": "collections"}
    try:
        from importlib.metadata import PackageNotFoundError, version

        defaults["service.version"] = version("collections-engine")
    except PackageNotFoundError:
        pass
    have = resource.attributes
    fill = {
        key: value
        for key, value in defaults.items()
        if key not in have or (key == SERVICE_NAME and str(have[key]).startswith("unknown_service"))
    }
    return resource.merge(Resource(fill))


def setup_tracing(
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Build the OpenTelemetry TracerProvider the environment describes; None when tracing is off.

    Whether tracing is on is the project's rule (`traces_exporters`); everything else is the
    OpenTelemetry SDK reading its own variables: the resource (`OTEL_SERVICE_NAME`,
    `OTEL_RESOURCE_ATTRIBUTES`; `service_name`, e.g. "collections-worker", where they name none),
    the sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) and span limits
    (`OTEL_SPAN_*`) in the TracerProvider, the exporters registered under the names in
    `OTEL_TRACES_EXPORTER` (each reading its `OTEL_EXPORTER_*` variables: OTLP's endpoint, headers,
    timeout, compression, certificates) and batching (`OTEL_BSP_*`). An explicit `exporter` (tests,
    debugging) is added with a synchronous processor and forces a provider even when the
    environment has tracing off.

    With `set_global` (the default) the provider becomes OpenTelemetry's global one, which the
    interceptor from `client_interceptors()` uses; a second call returns the provider installed
    first. Call `shutdown_tracing()` before the process exits to flush batched spans.
    """
    global _installed_provider
    if set_global and _installed_provider is not None:
        return _installed_provider
    names = traces_exporters()
    if not names and exporter is None:
        return None

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    exporters = [(name, _span_exporter(name)) for name in names]  # a bad protocol fails before anything is built
    provider = TracerProvider(resource=_resource(service_name))
    exporting: list[str] = []
    for name, span_exporter in exporters:
        if span_exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
            exporting.append(f"{name} ({type(span_exporter).__name__})")
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        exporting.append(type(exporter).__name__)
    log.info(
        "tracing: service %s exporting to %s",
        provider.resource.attributes.get("service.name"),
        ", ".join(exporting) or "nothing",
    )
    if set_global:
        trace.set_tracer_provider(provider)
        _installed_provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and shut down the provider `setup_tracing` installed (no-op if none).

    Call it before `os._exit`, which skips interpreter-exit hooks: batched spans would be lost.
    """
    global _installed_provider
    provider, _installed_provider = _installed_provider, None
    if provider is not None:
        provider.shutdown()


# --------------------------------------------------------------------------------------------
# Temporal SDK metrics (Prometheus)
# --------------------------------------------------------------------------------------------


def metrics_bind_address(env: Mapping[str, str] | None = None) -> str | None:
    """`0.0.0.0:<COLLECTIONS_METRICS_PORT>`, or None when the variable is unset or empty."""
    raw = _get(_env(env), METRICS_PORT_ENV)
    if raw is None:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{METRICS_PORT_ENV}: {raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{METRICS_PORT_ENV}: {port} is out of range (1-65535)")
    return f"0.0.0.0:{port}"


def metrics_runtime(
    settings: Settings | None = None,
    *,
    env: Mapping[str, str] | None = None,
    bind_address: str | None = None,
) -> Runtime | None:
    """A Temporal Runtime serving Prometheus metrics at http://<bind>/metrics, or None if not configured.

    The address is `bind_address` when given, else `0.0.0.0:<port>` with the port from
    `settings.metrics_port` (if Settings has one) or `COLLECTIONS_METRICS_PORT` (e.g. 9464);
    without any, None: the caller keeps temporalio's default runtime (no metrics endpoint).

    Everything recorded through this runtime's meters appears there: Temporal's own metrics
    (prefixed `temporal_`: workflow/activity task latencies, poll results, completions,
    failures, sticky cache, request counts; labelled with namespace and task_queue) and the
    project's counters below. Counters carry the OpenMetrics `_total` suffix.
    """
    address = bind_address
    if address is None:
        port = getattr(settings, "metrics_port", None)
        address = f"0.0.0.0:{port}" if port else metrics_bind_address(env)
    if address is None:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address, counters_total_suffix=True))
    )
    log.info("metrics: Prometheus endpoint at http://%s/metrics", address)
    return runtime


# --------------------------------------------------------------------------------------------
# The project's own metrics, through Temporal's metric meter
# --------------------------------------------------------------------------------------------

NOTICES_SENT = "collections_notices_sent"
PAYMENTS = "collections_payments"
STAGE_ENTRIES = "collections_stage_entries"
PLAN_OUTCOMES = "collections_plan_outcomes"

NOTICE_CHANNELS = frozenset({"sms", "email", "voice"})
NOTICE_KINDS = frozenset(kind.value for kind in NoticeKind)
PAYMENT_RESULTS = frozenset({"applied", "duplicate", "rejected"})
STAGES = frozenset(stage.value for stage in Stage)
PLAN_OUTCOME_VALUES = frozenset({"accepted", "rejected", "broken", "completed"})

PROJECT_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    NOTICES_SENT: ("Notices delivered to borrowers (SMS, email, voice)", ("channel", "kind")),
    PAYMENTS: ("Payment signals handled by loan workflows", ("currency", "result")),
    STAGE_ENTRIES: ("Loans entering a collection stage", ("stage",)),
    PLAN_OUTCOMES: ("Payment-plan decisions and ends", ("outcome",)),
}
"""name -> (description, label names): what docs/observability.md lists for dashboards."""


def _label(field: str, value: object, allowed: frozenset[str]) -> str:
    text = str(getattr(value, "value", value))
    if text not in allowed:
        raise ValueError(f"{field}: {text!r} is not one of {', '.join(sorted(allowed))}")
    return text


def _counter(meter: MetricMeter, name: str) -> Any:
    description, _labels = PROJECT_COUNTERS[name]
    return meter.create_counter(name, description)


def count_notice_sent(meter: MetricMeter, *, channel: str, kind: str | NoticeKind = NoticeKind.COLLECTION) -> None:
    """`collections_notices_sent{channel, kind}` += 1; call after a provider accepted the notice.

    From an activity: `count_notice_sent(activity.metric_meter(), channel="sms", kind=request.kind)`.
    """
    attributes = {"channel": _label("channel", channel, NOTICE_CHANNELS), "kind": _label("kind", kind, NOTICE_KINDS)}
    _counter(meter, NOTICES_SENT).add(1, attributes)


def count_payment(meter: MetricMeter, *, currency: str, result: str) -> None:
    """`collections_payments{currency, result}` += 1; result: applied, duplicate or rejected."""
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise ValueError(f"currency: {currency!r} is not an ISO 4217 code")
    attributes = {"currency": currency, "result": _label("result", result, PAYMENT_RESULTS)}
    _counter(meter, PAYMENTS).add(1, attributes)


def count_stage_entry(meter: MetricMeter, *, stage: str | Stage) -> None:
    """`collections_stage_entries{stage}` += 1; from the workflow when a loan enters a stage.

    `count_stage_entry(workflow.metric_meter(), stage=Stage.CALL)`: the workflow meter records
    nothing while replaying, so a stage entered once counts once.
    """
    _counter(meter, STAGE_ENTRIES).add(1, {"stage": _label("stage", stage, STAGES)})


def count_plan_outcome(meter: MetricMeter, *, outcome: str) -> None:
    """`collections_plan_outcomes{outcome}` += 1; outcome: accepted, rejected, broken or completed."""
    _counter(meter, PLAN_OUTCOMES).add(1, {"outcome": _label("outcome", outcome, PLAN_OUTCOME_VALUES)})
