"""`tracing`: OpenTelemetry traces from the core (core.observe.tracing), off by default.

Every key may also come from the standard OpenTelemetry environment variables, so a deployment
that already sets them for its other services needs no `tracing:` section; a key set in
interlock.yaml wins over its variable:

- enabled: OTEL_TRACES_EXPORTER (`otlp` turns tracing on), unless OTEL_SDK_DISABLED; off.
- protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL; http/protobuf
  (or grpc).
- endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT (read by the
  exporter itself); the exporter's default.
- sample_ratio: OTEL_TRACES_SAMPLER_ARG; 1.0.
- service_name: OTEL_SERVICE_NAME; interlock-core.
- capture_content: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT; off.

Headers (authentication to a collector) and TLS stay with the exporter's own variables
(OTEL_EXPORTER_OTLP_HEADERS, ...): they are secrets and never belong in the config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

PROTOCOLS = ("http/protobuf", "grpc")
_TRUE = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class TracingConfig:
    enabled: bool = False
    protocol: str = "http/protobuf"  # OTLP over HTTP (protobuf body) or gRPC
    # The collector's URL; None: the exporter's own (its variables, else its default).
    endpoint: str | None = None
    # The share of requests traced: parent-based, applied to every trace the gateway joins or
    # starts, so a tenant cannot force 100% by sending a sampled `traceparent`.
    sample_ratio: float = 1.0
    service_name: str = "interlock-core"
    # Prompts and completions on the attempt spans (the GenAI semconv's opt-in
    # gen_ai.input.messages / gen_ai.output.messages): never unless the operator says so.
    capture_content: bool = False


_TRACING = cp.keys_of(TracingConfig)


def _env_flag(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name, "").strip().lower()
    return None if not value else value in _TRUE


def _env_enabled(env: Mapping[str, str]) -> bool:
    if _env_flag(env, "OTEL_SDK_DISABLED"):
        return False
    exporters = {e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "").lower().split(",")}
    return "otlp" in exporters


def _ratio(s: dict[str, Any], env: Mapping[str, str], path: str) -> float:
    value: Any = s.get("sample_ratio")
    if value is None:
        value = env.get("OTEL_TRACES_SAMPLER_ARG") or 1.0
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(
                f"{path}.sample_ratio: OTEL_TRACES_SAMPLER_ARG is not a number"
            ) from None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ConfigError(f"{path}.sample_ratio: expected a number from 0 to 1")
    return float(value)


def parse_tracing(raw: Any, env: Mapping[str, str]) -> TracingConfig:
    path = "tracing"
    s = cp.section(raw, path, _TRACING)
    d = TracingConfig()
    protocol = cp.string(
        s,
        "protocol",
        path,
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or d.protocol,
    )
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{path}.protocol: expected one of {', '.join(PROTOCOLS)}")
    endpoint = cp.optional_string(s, "endpoint", path)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.endpoint: expected an http:// or https:// URL")
    content = _env_flag(env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    return TracingConfig(
        enabled=cp.boolean(s, "enabled", path, _env_enabled(env)),
        protocol=protocol,
        endpoint=endpoint,
        sample_ratio=_ratio(s, env, path),
        service_name=cp.string(
            s, "service_name", path, env.get("OTEL_SERVICE_NAME") or d.service_name
        ),
        capture_content=cp.boolean(s, "capture_content", path, bool(content)),
    )
