"""Reaching providers: pure adapters per provider kind, the one HTTP transport, the upstream
seam the dispatcher calls, the scrubber for upstream error text, and the built-in mock."""
