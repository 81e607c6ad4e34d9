#!/bin/sh
# Entry point of the collections-engine image: the first argument picks the process.
#
#   worker        python -m worker               (all workflows and activities)
#   portal        python -m portal               (borrower/agent HTTP gateway, PORTAL_PORT, default 8000)
#   codec-server  python -m portal.codec_server  (payload codec for the Temporal UI, COLLECTIONS_CODEC_PORT, default 8081)
#   collections   the operator CLI, e.g. `collections intake /data/portfolio.csv`
#   anything else is run as given (e.g. `sh`, `python -c ...`).
#
# `exec` keeps the Python process as the one that receives SIGTERM from `docker stop`, so the worker
# drains in-flight work and exits 0 (the contract's shutdown behaviour).
set -eu

PYTHON="${PYTHON:-python}"

if [ "$#" -eq 0 ]; then
    set -- worker
fi

role="$1"
case "$role" in
    worker)
        shift
        exec "$PYTHON" -m worker "$@"
        ;;
    portal)
        shift
        exec "$PYTHON" -m portal "$@"
        ;;
    codec-server | codec_server | codec)
        shift
        exec "$PYTHON" -m portal.codec_server "$@"
        ;;
    help | --help | -h)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        exec "$@"
        ;;
esac
