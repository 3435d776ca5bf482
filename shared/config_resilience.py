"""`core.resilience`: retries, timeouts, circuit breakers and waiting for key capacity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

MIN_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class ResilienceConfig:
    max_retries: int = 2  # extra attempts on the last target left
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 8.0
    retry_after_cap_s: float = 20.0
    total_deadline_s: float = 600.0
    # Streams: until the first chunk is in hand.
    first_byte_timeout_s: float = 120.0
    # Non-streaming calls: until the whole answer is in (a long reasoning completion sends
    # nothing before it is done). Both are also bounded by the provider's total timeout.
    completion_timeout_s: float = 600.0
    # Retry a timed-out call on the same target even though the upstream had the request
    # (it may still be running, and billed, there). Failing over to another target is
    # always allowed.
    retry_timeouts: bool = False
    stream_idle_timeout_s: float = 120.0
    # After a stream's first byte, at least stream_min_bytes in every window (0: no guard).
    # Lenient by default, so it never cuts a real slow model: any keep-alive (an 8-byte SSE
    # comment every 30 s is 80 bytes per 5 min) satisfies it, and any token chunk is bigger.
    # The window is longer than the idle timeout, so a silent stall is named idle.
    stream_min_bytes: int = 64
    stream_throughput_window_s: float = 300.0
    breaker_failure_ratio: float = 0.5
    breaker_min_requests: int = 10
    breaker_window_s: float = 30.0
    breaker_open_s: float = field(default=15.0, metadata=cp.read_from("breaker_open_for"))
    # How long a request may wait for a key pool to have capacity before failing over / 429.
    key_wait_max_s: float = 10.0
    # The largest single stream event (SSE event or event-stream message) accepted from an
    # upstream; a bigger one ends the stream as an invalid upstream response. Real events are
    # a few KB; the cap bounds what one stream can make the core buffer.
    max_event_bytes: int = 8 * 1024 * 1024
    # The latency and score strategies: an estimate no replica refreshed for this long is
    # stale, and one request per period probes its target (core.resilience.latency).
    latency_explore_after_s: float = 10.0


_RESILIENCE = cp.keys_of(ResilienceConfig)


def parse_resilience(raw: Any) -> ResilienceConfig:
    path = "core.resilience"
    s = cp.section(raw, path, _RESILIENCE)
    d = ResilienceConfig()
    ratio = s.get("breaker_failure_ratio", d.breaker_failure_ratio)
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise ConfigError(f"{path}.breaker_failure_ratio: expected a number in (0, 1]")
    max_event_bytes = cp.size(s, "max_event_bytes", path, d.max_event_bytes)
    if max_event_bytes < MIN_EVENT_BYTES:
        raise ConfigError(f"{path}.max_event_bytes: at least 64KiB (real events can be that big)")
    window = cp.duration(s, "stream_throughput_window", path, d.stream_throughput_window_s)
    if window <= 0:
        raise ConfigError(f"{path}.stream_throughput_window: must be positive")
    return ResilienceConfig(
        max_retries=cp.integer(s, "max_retries", path, d.max_retries, 0, 10),
        backoff_base_s=cp.duration(s, "backoff_base", path, d.backoff_base_s),
        backoff_cap_s=cp.duration(s, "backoff_cap", path, d.backoff_cap_s),
        retry_after_cap_s=cp.duration(s, "retry_after_cap", path, d.retry_after_cap_s),
        total_deadline_s=cp.duration(s, "total_deadline", path, d.total_deadline_s),
        first_byte_timeout_s=cp.duration(s, "first_byte_timeout", path, d.first_byte_timeout_s),
        completion_timeout_s=cp.duration(s, "completion_timeout", path, d.completion_timeout_s),
        retry_timeouts=cp.boolean(s, "retry_timeouts", path, d.retry_timeouts),
        stream_idle_timeout_s=cp.duration(s, "stream_idle_timeout", path, d.stream_idle_timeout_s),
        stream_min_bytes=cp.integer(s, "stream_min_bytes", path, d.stream_min_bytes, 0, 2**30),
        stream_throughput_window_s=window,
        breaker_failure_ratio=float(ratio),
        breaker_min_requests=cp.integer(
            s, "breaker_min_requests", path, d.breaker_min_requests, 1, 10**6
        ),
        breaker_window_s=cp.duration(s, "breaker_window", path, d.breaker_window_s),
        breaker_open_s=cp.duration(s, "breaker_open_for", path, d.breaker_open_s),
        key_wait_max_s=cp.duration(s, "key_wait_max", path, d.key_wait_max_s),
        max_event_bytes=max_event_bytes,
        latency_explore_after_s=_explore_after(s, path, d.latency_explore_after_s),
    )


def _explore_after(s: dict[str, Any], path: str, default: float) -> float:
    value = cp.duration(s, "latency_explore_after", path, default)
    if value <= 0:
        raise ConfigError(f"{path}.latency_explore_after: must be positive")
    return value
