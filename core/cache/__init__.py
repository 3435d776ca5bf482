"""The exact response cache (README: Response cache): one pipeline stage (core.cache.stage),
its keys and request directives (key.py), its backends (backend.py), and the conversions
between a complete answer and its stream (replay.py, assemble.py)."""
