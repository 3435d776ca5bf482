"""Process logging set-up. Content (prompts, completions, keys) is never logged by default."""

from __future__ import annotations

import logging
import os
import sys


def configure_logging() -> None:
    level = os.environ.get("INTERLOCK_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("interlock")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
