"""Shared state behind one seam: in-memory (embedded default) or Redis (production, tests)."""
