"""ASGI entry point: `uvicorn core.main:app` (config from $INTERLOCK_CONFIG or defaults)."""

from core.app import create_app
from shared.config import load_config
from shared.logs import configure_logging

configure_logging()
app = create_app(load_config())
