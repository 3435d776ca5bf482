"""The hop credential binds tenant, tier, models, request id, method and path."""

from __future__ import annotations

import dataclasses

from shared import hop

SECRET = b"x" * 40
IDENTITY = hop.HopIdentity("acme", "free", "mock-*", "req_1")


def test_round_trip() -> None:
    credential = hop.sign(SECRET, IDENTITY, "POST", "/v1/chat/completions")
    assert hop.verify(SECRET, credential, IDENTITY, "POST", "/v1/chat/completions")


def test_any_changed_field_fails() -> None:
    credential = hop.sign(SECRET, IDENTITY, "POST", "/v1/chat/completions")
    for field in ("tenant", "tier", "models", "request_id"):
        changed = dataclasses.replace(IDENTITY, **{field: "other"})
        assert not hop.verify(SECRET, credential, changed, "POST", "/v1/chat/completions")
    assert not hop.verify(SECRET, credential, IDENTITY, "POST", "/v1/models")
    assert not hop.verify(b"y" * 40, credential, IDENTITY, "POST", "/v1/chat/completions")


def test_stale_or_garbled_credentials_fail() -> None:
    old = hop.sign(SECRET, IDENTITY, "POST", "/p", now=1_000_000)
    assert not hop.verify(SECRET, old, IDENTITY, "POST", "/p", now=1_000_000 + 301)
    assert hop.verify(SECRET, old, IDENTITY, "POST", "/p", now=1_000_000 + 299)
    for garbage in ("", "v1", "v2:1:abc", "v1:notanumber:abc", "v1:1:"):
        assert not hop.verify(SECRET, garbage, IDENTITY, "POST", "/p")


def test_traceparent_continues_the_callers_trace_with_fresh_spans() -> None:
    from shared.traceparent import child_of, trace_id

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    children = {child_of(parent) for _ in range(1000)}
    assert len(children) == 1000  # a new span id each hop
    assert {trace_id(c) for c in children} == {"0af7651916cd43dd8448eb211c80319c"}
    fresh = child_of("garbage")
    assert fresh.startswith("00-") and len(fresh) == 55 and trace_id(fresh) != "0" * 32
