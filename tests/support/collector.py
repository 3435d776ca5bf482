"""The cyclic garbage collector off for a block, for tests that count what a path leaves in
reference cycles: with it off, such objects stay in memory where the test can find them,
instead of waiting, as in a server, for a collection of the old generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
