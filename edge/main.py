"""The edge's ASGI app built from $INTERLOCK_CONFIG (or defaults), for tools that import it.

Serve it with `python -m shared.server edge` (what `interlock serve edge` and run.sh do): a bare
`uvicorn edge.main:app` would run without the header/body timeouts and connection budgets.
"""

from edge.app import create_app
from shared.config_edge import load_edge_config
from shared.logs import configure_logging

configure_logging()
app = create_app(load_edge_config())
