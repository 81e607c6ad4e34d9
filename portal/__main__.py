"""`python -m portal`: the gateway on PORTAL_PORT (default 8000).

Tracing is on when the standard OTEL_* variables ask for it (runtime.telemetry.setup_tracing installs
the global provider): FastAPI's built-in OpenTelemetry support then opens a SERVER span per request
(continuing the caller's W3C `traceparent`), and the Temporal client's TracingInterceptor puts the
request's queries, signals and updates in that trace. Batched spans are flushed at exit.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from runtime import telemetry
    from runtime.codec import EncryptionConfigError
    from runtime.config import Settings

    from .app import create_app
    from .config import PortalConfig, PortalConfigError
    from .serve import serve

    try:
        settings = Settings.from_env()
        config = PortalConfig.from_env()
        # Before create_app: the client it connects gets the TracingInterceptor from the environment,
        # and FastAPI traces requests once a global provider is installed.
        telemetry.setup_tracing("collections-portal")
        app = create_app(settings, config=config)
        if settings.encryption_key:  # validate the key now, not on the first request
            from runtime.codec import codec_from_settings

            codec_from_settings(settings)
    except (PortalConfigError, EncryptionConfigError, ValueError) as exc:
        print(f"portal: cannot start: {exc}", file=sys.stderr)
        telemetry.shutdown_tracing()
        return 2
    try:
        return serve(app, config.host, settings.portal_port, proxy_headers=True)
    finally:
        telemetry.shutdown_tracing()  # flush batched spans before os._exit


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
