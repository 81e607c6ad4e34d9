#!/bin/sh
# One-shot Temporal setup for the collections engine, run by the `temporal-setup` compose service
# (temporalio/admin-tools image) and usable by hand against any cluster with the `temporal` CLI:
#
#   1. wait until the frontend answers `temporal operator cluster health`;
#   2. create the namespace if it does not exist (retention NAMESPACE_RETENTION, default 30d);
#   3. register the contract's search attributes that the namespace lacks.
#
# Idempotent: run it again and it changes nothing. It fails (exit 1) when an attribute exists with
# another type, which no code can fix: the namespace needs an operator.
#
# Environment:
#   TEMPORAL_ADDRESS                 frontend host:port            (default temporal:7233)
#   TEMPORAL_NAMESPACE               namespace to set up           (default default)
#   NAMESPACE_RETENTION              retention of a new namespace  (default 30d)
#   COLLECTIONS_SEARCH_ATTRIBUTES    "Name=Type,..." (required; docker-compose.yml holds the contract's list)
#   SETUP_ATTEMPTS                   health/namespace polls, 2 s apart (default 60)
# TLS or an API key (Temporal Cloud): the CLI reads TEMPORAL_TLS*, TEMPORAL_API_KEY itself.
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${NAMESPACE_RETENTION:-30d}"
ATTEMPTS="${SETUP_ATTEMPTS:-60}"
ATTRIBUTES="${COLLECTIONS_SEARCH_ATTRIBUTES:?COLLECTIONS_SEARCH_ATTRIBUTES is required, e.g. LoanId=Keyword,DaysPastDue=Int}"
TEMPORAL="${TEMPORAL_CLI:-temporal}"

log() { echo "[temporal-setup] $*"; }

# Some images resolve the service name to an IPv6 address first, which the frontend does not bind.
host="${ADDRESS%:*}"
port="${ADDRESS##*:}"
if command -v getent >/dev/null 2>&1; then
    ip="$(getent ahosts "$host" 2>/dev/null | awk '$1 ~ /^[0-9.]+$/ {print $1; exit}')" || ip=""
    if [ -n "$ip" ]; then
        ADDRESS="$ip:$port"
    fi
fi

t() { "$TEMPORAL" "$@" --address "$ADDRESS"; }

attempt=1
until t operator cluster health >/dev/null 2>&1; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
        log "Temporal at $ADDRESS is not healthy after $ATTEMPTS attempts"
        exit 1
    fi
    log "waiting for Temporal at $ADDRESS ($attempt/$ATTEMPTS)"
    attempt=$((attempt + 1))
    sleep 2
done
log "Temporal at $ADDRESS is serving"

if t operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    log "namespace $NAMESPACE exists"
else
    log "creating namespace $NAMESPACE (retention $RETENTION)"
    t operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
fi

# A new namespace reaches every frontend after the namespace cache refreshes: wait for it.
attempt=1
until t operator search-attribute list --namespace "$NAMESPACE" >/dev/null 2>&1; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
        log "namespace $NAMESPACE is not usable after $ATTEMPTS attempts"
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

existing="$(t operator search-attribute list --namespace "$NAMESPACE")"
status=0
old_ifs="$IFS"
IFS=','
for pair in $ATTRIBUTES; do
    IFS="$old_ifs"
    name="$(echo "${pair%%=*}" | tr -d ' ')"
    type="$(echo "${pair#*=}" | tr -d ' ')"
    if [ -z "$name" ] || [ -z "$type" ] || [ "$name" = "$pair" ]; then
        log "COLLECTIONS_SEARCH_ATTRIBUTES: '$pair' is not Name=Type"
        exit 1
    fi
    have="$(echo "$existing" | awk -v n="$name" '$1 == n {print $2}')"
    if [ "$have" = "$type" ]; then
        log "search attribute $name ($type) exists"
    elif [ -n "$have" ]; then
        log "search attribute $name exists as $have, the contract needs $type: fix it by hand"
        status=1
    else
        log "creating search attribute $name ($type)"
        t operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
    fi
    IFS=','
done
IFS="$old_ifs"

if [ "$status" -eq 0 ]; then
    log "namespace $NAMESPACE is ready"
fi
exit "$status"
