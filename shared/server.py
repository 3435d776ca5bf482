"""Run one tier's HTTP server: the only way interlock is started.

    python -m shared.server edge|core [--host H] [--port P] [--admin-port A] [--app mod:factory]

`interlock up`, `interlock serve`, the Lambda/container `run.sh`, the core image, Kubernetes,
the test stack and the benchmark all come through here, so every deployment gets the same
connection limits (shared/config_server.py, enforced by shared/server_protocol.py). The config
is read once; the app is built from it by the tier's factory (`edge.app:create_app` or
`core.app:create_app`), imported by name so shared/ never imports a tier. The edge reads only
its own sections of the file (`load_edge_config`); the core reads and checks all of it. The
core also listens on its admin address (`core.admin_host:admin_port`, loopback by default) in
the same process: the app serves /metrics and /readyz only there.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import importlib
import math
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from shared.config import (
    ConfigError,
    EdgeTierConfig,
    ServerConfig,
    load_config,
    load_edge_config,
)
from shared.drain import EXIT_WITHIN_S, DrainingServer
from shared.logs import configure_logging
from shared.server_protocol import configured

TIERS = ("edge", "core")


def default_max_connections() -> int:
    """Half the open-file limit, raised to its hard maximum first (the common soft default of
    1024 would cap a gateway at a few hundred streams): on the edge each client connection in
    flight also holds one to the core, and the process needs descriptors of its own. A server
    that runs out of descriptors fails in accept() for everyone; this cap answers 503 instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep the soft limit we were given
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(soft // 2, 1)


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket (IPv6 for a ':' host), SO_REUSEADDR like uvicorn's own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(
    app: Any,
    settings: ServerConfig,
    listeners: Sequence[tuple[str, int]],
    http: str = "auto",
    loop: str = "auto",
) -> None:
    """Serve `app` on every listener until SIGTERM/SIGINT (then drain, as uvicorn does)."""
    protocol = configured(settings, settings.max_connections or default_max_connections(), http)
    config = uvicorn.Config(
        app,
        http=protocol,
        loop=loop,
        lifespan="on",
        # No WebSocket upgrades: no route uses them, and an upgraded connection would leave
        # these protocols (and the connection budgets) without ever being released.
        ws="none",
        access_log=False,
        log_config=None,  # uvicorn's own lines go through shared.logs (one JSON format)
        # uvicorn takes whole seconds; rounding up never closes a connection early.
        timeout_keep_alive=max(1, math.ceil(settings.keepalive_timeout_s)),
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        backlog=settings.backlog,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # X-Forwarded-For is the edge's to judge (edge.trusted_proxies), never uvicorn's.
        proxy_headers=False,
        # No `server: uvicorn` on every answer: it tells a client what to attack, and costs
        # each response a header in both tiers.
        server_header=False,
        **_tls(settings),
    )
    sockets = [bind(host, port, settings.backlog) for host, port in listeners]
    for host, port in listeners:
        print(f"interlock listening on http://{host}:{port}", file=sys.stderr, flush=True)
    DrainingServer(config, EXIT_WITHIN_S).run(sockets=sockets)


def _tls(settings: ServerConfig) -> dict[str, Any]:
    """uvicorn's TLS options from `<tier>.server.tls_*` (none: plain HTTP)."""
    if settings.tls_cert_file is None:
        return {}
    client_ca = settings.tls_client_ca_file
    return {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
        "ssl_ca_certs": str(client_ca) if client_ca else None,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if client_ca else ssl.CERT_NONE,
    }


# A tier's config (the app is built from it), its server limits and its listeners.
Loaded = tuple[EdgeTierConfig, ServerConfig, list[tuple[str, int]]]


def edge_config(args: argparse.Namespace) -> Loaded:
    """The edge reads only its own sections (shared/config_edge.py); command-line host/port
    (run.sh's $HOST/$PORT, a test's free ports) win over the file."""
    config = load_edge_config(args.config)
    edge = config.edge
    edge = dataclasses.replace(edge, host=args.host or edge.host, port=args.port or edge.port)
    return dataclasses.replace(config, edge=edge), edge.server, [(edge.host, edge.port)]


def core_config(args: argparse.Namespace) -> Loaded:
    """The whole file, with command-line overrides; the app is built from the result, so it
    knows its own admin port."""
    config = load_config(args.config)
    core = config.core
    core = dataclasses.replace(
        core,
        host=args.host or core.host,
        port=args.port or core.port,
        admin_port=args.admin_port or core.admin_port,
    )
    if core.admin_port == core.port:
        raise ConfigError("core.admin_port: must differ from core.port")
    listeners = [(core.host, core.port), (core.admin_host, core.admin_port)]
    return dataclasses.replace(config, core=core), core.server, listeners


def load_factory(spec: str) -> Callable[[Any], Any]:
    module, _, name = spec.partition(":")
    factory: Callable[[Any], Any] = getattr(importlib.import_module(module), name)
    return factory


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shared.server", description=__doc__)
    parser.add_argument("tier", choices=TIERS)
    parser.add_argument("--config", help="interlock.yaml (default: $INTERLOCK_CONFIG, ...)")
    parser.add_argument("--host", help="listen address (default: the tier's `host`)")
    parser.add_argument("--port", type=int, help="listen port (default: the tier's `port`)")
    parser.add_argument("--admin-port", type=int, help="core only: the admin listener's port")
    parser.add_argument("--app", help="app factory module:function (default: <tier>.app)")
    parser.add_argument("--http", choices=("auto", "httptools", "h11"), default="auto")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    return parser.parse_args(argv)


# Allocations between two young-generation collections (CPython's default: 700). A request
# allocates hundreds of container objects, and refcounting frees them: the servers leave no
# reference cycles per connection or request (tests/test_server_teardown.py,
# tests/test_client_watch.py). At 700 the core ran ~180 young collections a second under load
# (3% of its CPU) that found nothing; cyclic garbage, if any, waits a little longer.
YOUNG_COLLECTION_EVERY = 20_000


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    # `kill -USR1 <pid>` prints every thread's stack to stderr (code locations, no values),
    # from C, so it answers even when the event loop is stuck: how a replica that will not
    # stop or answer is diagnosed (infra/README.md).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Start-up allocates for good (modules, config, tables): collecting while it runs finds
    # nothing, and once frozen those objects are left out of every later full collection, so
    # a collection under load scans what requests allocated, not the whole process.
    gc.disable()
    try:
        config, settings, listeners = (edge_config if args.tier == "edge" else core_config)(args)
        # The factory runs the tier's own start-up checks (the core's: core/startup.py, which
        # `interlock check-config` runs too); a bad config is reported the same way.
        app = load_factory(args.app or f"{args.tier}.app:create_app")(config)
    except ConfigError as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return 2
    finally:
        gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
        gc.enable()
    serve(app, settings, listeners, args.http, args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
