"""`metrics`: what the core's metrics may say about tenants, and where else they go.

    metrics:
      tenants: [acme, globex]   # the only tenants named in labels; every other is "_other"
      otlp: false               # also export through OpenTelemetry (OTLP, the OTEL_* env vars)

Label values come from configuration only (core.observe.request_metrics), so a tenant can never
grow the page by choosing names; tenants are named only when the operator lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

MAX_NAMED_TENANTS = 1000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    tenants: tuple[str, ...] = ()
    otlp: bool = False


_KEYS = cp.keys_of(MetricsConfig)


def parse_metrics(raw: Any) -> MetricsConfig:
    path = "metrics"
    s = cp.section(raw, path, _KEYS)
    tenants = cp.string_list(s, "tenants", path)
    if len(tenants) > MAX_NAMED_TENANTS:
        raise ConfigError(f"{path}.tenants: at most {MAX_NAMED_TENANTS} tenants")
    return MetricsConfig(tenants=tenants, otlp=cp.boolean(s, "otlp", path, False))
