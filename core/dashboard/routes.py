"""The dashboard's routes on the core's public listener: the page's static files and the
JSON panels (core.dashboard.api, hop-authenticated like every other /v1 route).

The static files are read once at start-up (about 60 KB: the page, its script and style, and
uPlot, vendored with its license, so nothing is fetched from a CDN and the page works on an
air-gapped network) and served from memory: no file I/O on the event loop, and no path from
the URL ever reaches the filesystem (only the listed names are served). They hold no data: the
page asks the API with the token the user gives it, so serving them needs no credential. The
Content-Security-Policy allows only this origin's own scripts, styles and API.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.dashboard.reads import RawReads
from core.ledger.store import LedgerStore

STATIC_DIR = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Also what the edge sets when it relays a file (edge/dashboard.py keeps its own copy: the
# edge's package carries no core code).
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of the static directory, by name, with its content type."""
    return {
        path.name: (path.read_bytes(), _TYPES[path.suffix])
        for path in sorted(STATIC_DIR.iterdir())
        if path.is_file() and path.suffix in _TYPES
    }


def static_routes() -> list[Route]:
    files = load_static()

    async def serve(request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        found = files.get(name)
        if found is None:
            body = b'{"error":{"message":"not found","type":"invalid_request_error"}}'
            return Response(body, status_code=404, media_type="application/json")
        return Response(found[0], media_type=found[1], headers=HEADERS)

    async def to_slash(request: Request) -> Response:
        """A relative Location: never built from the client's Host header."""
        return Response(status_code=308, headers={"location": "dashboard/"})

    return [
        Route("/dashboard", to_slash, methods=["GET"]),
        Route("/dashboard/", serve, methods=["GET"]),
        Route("/dashboard/{name}", serve, methods=["GET"]),
    ]


def raw_reads(store: LedgerStore | None, partition: str) -> RawReads | None:
    """The dashboard's raw-record reads on the ledger's store, in the store's SQL dialect."""
    if store is None:
        return None
    from core.ledger import sqlite

    if isinstance(store, sqlite.SqliteStore):
        return RawReads(store, partition, sqlite.DIALECT)
    from core.ledger import postgres  # asyncpg is only imported when used

    return RawReads(store, partition, postgres.DIALECT)
