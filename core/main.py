"""The core's ASGI app built from $INTERLOCK_CONFIG (or defaults), for tools that import it.

Serve it with `python -m shared.server core` (what `interlock serve core` does): a bare
`uvicorn core.main:app` would run without the connection limits and without the admin listener
that serves /readyz and /metrics.
"""

from core.app import create_app
from shared.config import load_config
from shared.logs import configure_logging

configure_logging()
app = create_app(load_config())
