#!/bin/sh
# Entry point of the edge bundle: the Lambda handler (the AWS Lambda Web Adapter runs it and
# proxies invocations to $PORT) and the edge container's command. `exec` makes the server the
# process itself, so it receives SIGTERM directly and nothing sits between it and the adapter.
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# The bundle is flat: dependencies, edge/ and shared/ all live next to this script.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# Defaults that make the bundle self-contained; the environment overrides each of them.
export INTERLOCK_CONFIG="${INTERLOCK_CONFIG:-$here/interlock.edge.yaml}"
export INTERLOCK_JWKS_FILE="${INTERLOCK_JWKS_FILE:-$here/jwks.json}"

# 127.0.0.1 on Lambda (only the adapter connects); containers set HOST=0.0.0.0. The launcher
# (shared/server.py) is uvicorn with interlock's connection limits: header, body and keep-alive
# timeouts and a per-peer connection budget (edge.server). On Lambda the Web Adapter is the only
# peer and sends one request at a time, so the budget never applies to it.
exec python3 -m shared.server edge --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
