"""ASGI entry point: `uvicorn edge.main:app` (config from $INTERLOCK_CONFIG or defaults)."""

from edge.app import create_app
from shared.config import load_config
from shared.logs import configure_logging

configure_logging()
app = create_app(load_config())
