"""Operator tooling: the `interlock` CLI, signing keys and tenant tokens, revocation lists, the
capability table generator."""
