#!/bin/sh
# Creates or upgrades Temporal's two PostgreSQL databases (persistence and visibility) to the schema
# shipped in the temporalio/admin-tools image of the same version as the server. Run by the
# `temporal-schema` compose service before the server starts; safe to run again (create and
# setup-schema are no-ops on an existing database, update-schema applies only newer versions).
set -eu

HOST="${POSTGRES_SEEDS:-postgresql}"
PORT="${DB_PORT:-5432}"
USER="${POSTGRES_USER:-temporal}"
export SQL_PASSWORD="${POSTGRES_PWD:?POSTGRES_PWD is required}"
SCHEMA_ROOT="${SCHEMA_ROOT:-/etc/temporal/schema/postgresql/v12}"

log() { echo "[temporal-schema] $*"; }

attempt=1
until nc -z -w 5 "$HOST" "$PORT"; do
    if [ "$attempt" -ge 30 ]; then
        log "PostgreSQL at $HOST:$PORT does not answer"
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

sql() { temporal-sql-tool --plugin postgres12 --ep "$HOST" -p "$PORT" -u "$USER" "$@"; }

for pair in temporal:temporal temporal_visibility:visibility; do
    db="${pair%%:*}"
    dir="${pair##*:}"
    log "database $db"
    sql --db "$db" create
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$SCHEMA_ROOT/$dir/versioned"
done
log "schema ready"
