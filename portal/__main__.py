"""`python -m portal`: the gateway on PORTAL_PORT (default 8000)."""

from __future__ import annotations

import os
import sys


def main() -> int:
    from runtime.codec import EncryptionConfigError
    from runtime.config import Settings

    from .app import create_app
    from .config import PortalConfig, PortalConfigError
    from .serve import serve

    try:
        settings = Settings.from_env()
        config = PortalConfig.from_env()
        app = create_app(settings, config=config)
        if settings.encryption_key:  # validate the key now, not on the first request
            from runtime.codec import codec_from_settings

            codec_from_settings(settings)
    except (PortalConfigError, EncryptionConfigError, ValueError) as exc:
        print(f"portal: cannot start: {exc}", file=sys.stderr)
        return 2
    return serve(app, config.host, settings.portal_port, proxy_headers=True)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
