#!/bin/sh
# Entry point of the edge bundle: the Lambda handler (the AWS Lambda Web Adapter runs it and
# proxies invocations to $PORT) and the edge container's command. `exec` makes uvicorn the
# process itself, so it receives SIGTERM directly and nothing sits between it and the adapter.
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# The bundle is flat: dependencies, edge/ and shared/ all live next to this script.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# Defaults that make the bundle self-contained; the environment overrides each of them.
export INTERLOCK_CONFIG="${INTERLOCK_CONFIG:-$here/interlock.edge.yaml}"
export INTERLOCK_JWKS_FILE="${INTERLOCK_JWKS_FILE:-$here/jwks.json}"

# 127.0.0.1 on Lambda (only the adapter connects); containers set HOST=0.0.0.0.
# --no-proxy-headers: uvicorn would otherwise believe X-Forwarded-For from loopback; the edge
# reads it itself, only from edge.trusted_proxies (set [127.0.0.1/32] behind the adapter).
exec python3 -m uvicorn edge.main:app \
    --host "${HOST:-127.0.0.1}" \
    --port "${PORT:-8080}" \
    --no-access-log \
    --no-proxy-headers \
    --timeout-keep-alive 75
