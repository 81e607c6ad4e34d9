"""`python -m worker [--demo]`: one Temporal worker for every workflow and activity, until SIGINT/SIGTERM.

Outside demo mode (`--demo` or COLLECTIONS_DEMO=1, for `collections demo` only) the worker refuses
a loan whose policy compresses time (worker.demo_guard).

On SIGINT or SIGTERM the worker stops polling, lets in-flight activities finish (up to
`COLLECTIONS_SHUTDOWN_TIMEOUT` seconds, default 10; after that they are cancelled and Temporal
retries them elsewhere) and exits 0. A second signal exits at once with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from runtime import telemetry
from runtime.client import ClientConfigError, connect, target
from runtime.config import Settings
from runtime.demo import DEMO_ENV, demo_mode

from . import wiring
from .demo_guard import CompressedDayGuard

log = logging.getLogger("worker")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
MAX_CONCURRENT_ACTIVITIES = 100
DEFAULT_MAX_WORKFLOW_TASKS = 2
"""Workflow activations in one Python process share the GIL and the sandbox's import machinery,
so running many at once makes each one slower without adding throughput. Measured with the demo's
28 loans on compressed days: 8 concurrent activations cost 4x the CPU of 2 (activations starved past
Temporal's 2 s deadlock detector, were evicted and replayed), 2 cost as little as an unsandboxed
worker. Scale out with more worker processes, not more threads (COLLECTIONS_MAX_CONCURRENT_WORKFLOW_TASKS)."""


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise wiring.WiringError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise wiring.WiringError(f"{name} must be at least 1")
    return value


def shutdown_timeout_from_env() -> timedelta:
    raw = os.environ.get("COLLECTIONS_SHUTDOWN_TIMEOUT") or ""
    if not raw:
        return timedelta(seconds=DEFAULT_SHUTDOWN_TIMEOUT)
    try:
        seconds = float(raw)
    except ValueError:
        raise wiring.WiringError(f"COLLECTIONS_SHUTDOWN_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if seconds < 0:
        raise wiring.WiringError("COLLECTIONS_SHUTDOWN_TIMEOUT must not be negative")
    return timedelta(seconds=seconds)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    providers: wiring.Providers | None = None,
    graceful_shutdown_timeout: timedelta | None = None,
    executor: ThreadPoolExecutor | None = None,
    demo: bool | None = None,
) -> Worker:
    """The worker: the contract's task queue, all workflows, all wired activities. `demo` (default:
    COLLECTIONS_DEMO) lets loans with a compressed day run; otherwise they are refused."""
    workflows = wiring.workflows()
    activities = wiring.activities(settings, providers, client)
    demo = demo_mode() if demo is None else demo
    kwargs: dict[str, object] = {}
    if not demo:
        kwargs["interceptors"] = [CompressedDayGuard()]
    runner = _workflow_runner()
    if runner is not None:
        kwargs["workflow_runner"] = runner
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=activities,
        activity_executor=executor or ThreadPoolExecutor(max_workers=MAX_CONCURRENT_ACTIVITIES),
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        max_concurrent_workflow_tasks=_int_env("COLLECTIONS_MAX_CONCURRENT_WORKFLOW_TASKS", DEFAULT_MAX_WORKFLOW_TASKS),
        graceful_shutdown_timeout=graceful_shutdown_timeout
        if graceful_shutdown_timeout is not None
        else shutdown_timeout_from_env(),
        **kwargs,
    )


def _workflow_runner():
    """The workflows package's sandbox runner, when it provides one (pass-through modules)."""
    try:
        import workflows
    except ImportError:  # pragma: no cover - workflows/ is part of the project
        return None
    factory = getattr(workflows, "workflow_runner", None)
    return factory() if callable(factory) else None


async def run_worker(
    settings: Settings,
    client: Client | None = None,
    stop: asyncio.Event | None = None,
    *,
    providers: wiring.Providers | None = None,
    graceful_shutdown_timeout: timedelta | None = None,
    demo: bool | None = None,
) -> None:
    """Run the worker until `stop` is set (forever without one), then shut it down gracefully.

    Used by `python -m worker`, by the tests and by anything embedding a worker in-process.
    """
    client = client or await connect(settings)
    demo = demo_mode() if demo is None else demo
    worker = build_worker(
        client, settings, providers=providers, graceful_shutdown_timeout=graceful_shutdown_timeout, demo=demo
    )
    stop = stop or asyncio.Event()
    log.info(
        "worker polling task queue %r on %s (namespace %s), outbox %s, SMTP %s:%s%s",
        settings.task_queue,
        client.service_client.config.target_host,
        client.namespace,
        settings.outbox_dir,
        settings.smtp.host,
        settings.smtp.port,
        "; DEMO MODE: loans with a compressed day are run" if demo else "",
    )
    run = asyncio.create_task(worker.run(), name="temporal-worker")
    waiter = asyncio.create_task(stop.wait(), name="worker-stop")
    try:
        done, _ = await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            # The worker ended by itself: that is a fatal error (it raises) or an outside shutdown.
            run.result()
            return
        log.info("shutting down: no new work; finishing in-flight activities")
        await worker.shutdown()
        await run
        log.info("worker stopped")
    finally:
        waiter.cancel()
        if not run.done():
            run.cancel()


def configure_logging() -> None:
    level = (os.environ.get("COLLECTIONS_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


async def _amain(demo: bool = False) -> int:
    try:
        demo = demo or demo_mode()
        settings = Settings.from_env()
        wiring.Providers.from_env()  # fail fast on a bad provider configuration
        shutdown_timeout_from_env()
        _int_env("COLLECTIONS_MAX_CONCURRENT_WORKFLOW_TASKS", DEFAULT_MAX_WORKFLOW_TASKS)
    except (ValueError, wiring.WiringError) as exc:
        log.error("bad configuration: %s", exc)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            _exit(1)
        log.info("%s received", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        telemetry.setup_tracing("collections-worker")
        runtime = telemetry.metrics_runtime(settings)
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    try:
        client = await (connect(settings, runtime=runtime) if runtime is not None else connect(settings))
    except ClientConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - report any connection failure plainly
        log.error("cannot connect to Temporal at %s: %s", target(settings), exc)
        return 1
    try:
        await run_worker(settings, client, stop, demo=demo)
    except Exception:
        log.exception("worker failed")
        return 1
    return 0


def _exit(status: int) -> None:
    # temporalio can abort at interpreter exit (exit 134): flush and leave without finalizers.
    try:
        telemetry.shutdown_tracing()  # batched spans
    except Exception:  # noqa: BLE001 - never block the exit on an exporter
        log.exception("flushing traces failed")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description="The collections worker.")
    parser.add_argument("--demo", action="store_true",
                        help=f"demo mode (as {DEMO_ENV}=1): run loans whose policy compresses time; "
                             "for `collections demo` only")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        status = asyncio.run(_amain(args.demo))
    except KeyboardInterrupt:
        status = 0
    _exit(status)
