"""core.observe.cache_writes: prompt-cache prefixes written but never read, per target."""

from __future__ import annotations

from core.observe.cache_writes import MAX_TARGETS, WINDOW_S, CacheWrites


def test_a_window_of_writes_without_a_read_is_counted_when_it_closes() -> None:
    watch = CacheWrites()
    for t in (0.0, 10.0, 20.0):
        watch.observe("claude/sonnet", 0, 1500, now=t)
    assert watch.flush(now=WINDOW_S - 1) == {"claude/sonnet": 0}  # still open
    assert watch.flush(now=WINDOW_S) == {"claude/sonnet": 3}
    # The next window's writes count on top once it closes too (at the target's next request).
    watch.observe("claude/sonnet", 0, 1500, now=WINDOW_S + 1)
    watch.observe("claude/sonnet", 0, 1500, now=2 * WINDOW_S + 2)
    assert watch.flush(now=2 * WINDOW_S + 3) == {"claude/sonnet": 4}


def test_a_read_in_the_window_clears_it_and_plain_requests_are_ignored() -> None:
    watch = CacheWrites()
    watch.observe("bedrock/nova", 0, 1200, now=0.0)
    watch.observe("bedrock/nova", 1200, 0, now=5.0)
    watch.observe("openai/gpt", 0, 0, now=5.0)  # no cache use at all: no series
    assert watch.flush(now=WINDOW_S + 1) == {"bedrock/nova": 0}


def test_the_map_is_bounded() -> None:
    watch = CacheWrites()
    for k in range(MAX_TARGETS + 10):
        watch.observe(f"p/{k}", 0, 10, now=0.0)
    assert len(watch.flush(now=WINDOW_S)) == MAX_TARGETS
    assert len(watch.flush(now=0.0)) == MAX_TARGETS
