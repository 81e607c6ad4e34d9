# syntax=docker/dockerfile:1
#
# One image for every process of the collections engine; the command picks which:
#
#   docker run IMAGE worker         python -m worker               (default)
#   docker run IMAGE portal         python -m portal               (PORTAL_PORT, default 8000)
#   docker run IMAGE codec-server   python -m portal.codec_server  (COLLECTIONS_CODEC_PORT, default 8081)
#   docker run IMAGE collections intake /data/portfolio.csv        (operator CLI)
#
# Configuration is the environment only (docs/deployment.md); nothing secret is baked in.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- build: wheels only
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# The OTLP exporter ships traces to the collector; the code logs and carries on without it.
RUN pip wheel --wheel-dir /wheels . "opentelemetry-exporter-otlp-proto-http>=1.30"

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="collections-engine" \
      org.opencontainers.image.description="Debt-collection orchestration engine on Temporal" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COLLECTIONS_OUTBOX_DIR=/app/var/outbox

# System zoneinfo for borrowers' time zones (the tzdata wheel covers Python; this covers the OS),
# CA certificates for TLS to Temporal Cloud and SMTP relays.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 collections \
 && useradd --system --uid 10001 --gid collections --home-dir /app --shell /usr/sbin/nologin collections

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/collections-entrypoint
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/collections-healthcheck

WORKDIR /app
# Owned by the service user, so a named volume mounted here starts writable.
RUN mkdir -p /app/var/outbox && chown -R collections:collections /app

USER 10001:10001

EXPOSE 8000 8081 9464

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["collections-healthcheck"]

ENTRYPOINT ["collections-entrypoint"]
CMD ["worker"]
