"""The real edge and core in front of the fault-injecting fake (tests/support/fake_faults.py):
one provider `faults` at the fake, the models a test names, and the resilience settings it
tunes. The connect timeout is short so that tests may set short timeouts by kind (they must
exceed it, as start-up checks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.fake_faults import FakeFaults
from tests.support.stack import Stack

# Provider settings for tests that name fault models directly (`faults/fault/<kind>`).
ANY_MODEL = {"allow_any_model": True}


def to_faults(model: str, provider: str = "faults") -> dict[str, str]:
    """A target at the fake; `model` is usually `fault/<kind>[/<arg>]`."""
    return {"provider": provider, "model": model}


def faults_provider(fake: FakeFaults, **settings: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": f"{fake.url}/v1", "api_key": "sk-test", **settings}


@contextmanager
def fault_stack(
    workdir: Path,
    fake: FakeFaults,
    resilience: dict[str, Any],
    models: dict[str, Any],
    core: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    overrides = {
        "core": {"connect_timeout": "500ms", **(core or {}), "resilience": resilience},
        "providers": {"faults": faults_provider(fake, **(provider or {}))},
        "models": models,
    }
    running = Stack(workdir, overrides).start()
    try:
        yield running
    finally:
        running.stop()
