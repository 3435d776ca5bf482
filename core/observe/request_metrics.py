"""Per-request metrics, from the one record every request outcome makes (core.ledger.record).

Every outcome (served, failed, cancelled, cut, a cache hit, a coalesced follower) produces a
LedgerRecord in one place (core.observe.records), ledger on or off, so the metrics see exactly
what the ledger sees and need no hook of their own in any endpoint.

Names and attributes follow the OpenTelemetry GenAI semantic conventions v1.41.0
(`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
`gen_ai.client.operation.time_to_first_chunk`, with `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.token.type`,
`error.type`), in Prometheus form (dots become underscores, seconds get their unit suffix); the
gateway's own are `interlock_*`.

Label values only from configuration: a requested model not configured is `_other`, a served
model not named in any target is `<provider>/*`, a tenant not listed under `metrics.tenants`
is `_other`, and outcomes are the gateway's fixed set.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import Metric

from core.ledger.record import LedgerRecord
from core.observe.instruments import Counter, Histogram
from shared.config import Config

OTHER = "_other"
NONE = "_none"  # no provider served the request
# Bucket boundaries the conventions give.
TOKEN_BOUNDS = tuple(4**k for k in range(14))  # 1, 4, 16, ... 67,108,864
SECONDS_BOUNDS = tuple(0.01 * 2**k for k in range(14))  # 0.01 ... 81.92
# Operations that generate nothing: no output-token sample.
NO_OUTPUT = frozenset(("embeddings", "count_tokens"))
GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
SERVED = (*GENAI, "gen_ai_response_model")
OK = frozenset(("ok", "cache_hit", "coalesced"))


class Labels:
    """Configured names, read once at start-up: what a label value may be."""

    def __init__(self, config: Config) -> None:
        self.models = frozenset((*config.models, *config.aliases, *config.routing.routes))
        self.targets = frozenset(
            (t.provider, t.model) for m in config.models.values() for t in m.targets
        )
        self.tenants = frozenset(config.metrics.tenants)

    def requested(self, model: str) -> str:
        return model if model in self.models else OTHER

    def served(self, provider: str | None, model: str | None) -> str:
        if provider is None or model is None:
            return NONE
        return model if (provider, model) in self.targets else f"{provider}/*"

    def tenant(self, tenant: str) -> str:
        return tenant if tenant in self.tenants else OTHER


@dataclass(frozen=True, slots=True)
class Observed:
    """One request outcome in label terms (configured names only), read once from its
    record."""

    api: str
    operation: str
    provider: str
    requested: str
    served: str
    outcome: str
    failed: bool
    tenant: str
    duration_s: float
    first_chunk_s: float | None  # streams that answered
    input_tokens: int
    output_tokens: int | None  # None: the operation has no output (embeddings)
    cost_micros: int
    cache_read: int
    cache_write: int
    saved_input: int
    saved_output: int


def observed(record: LedgerRecord, operation: str, labels: Labels) -> Observed:
    usage = record.usage
    failed = record.outcome not in OK
    return Observed(
        api=record.api,
        operation=operation,
        provider=record.provider or NONE,
        requested=labels.requested(record.requested_model),
        served=labels.served(record.provider, record.served_model),
        outcome=record.outcome,
        failed=failed,
        tenant=labels.tenant(record.tenant),
        duration_s=record.latency_ms / 1000,
        first_chunk_s=None if failed or record.ttft_ms is None else record.ttft_ms / 1000,
        input_tokens=usage.input_total,
        output_tokens=None if operation in NO_OUTPUT else usage.output,
        cost_micros=record.cost_micros,
        cache_read=usage.cache_read,
        cache_write=usage.cache_write_5m + usage.cache_write_1h,
        saved_input=record.saved_input,
        saved_output=record.saved_output,
    )


class RequestMetrics:
    """Reads each outcome record once into the instruments (rendered by /metrics, exported
    by core.observe.otel_metrics when OTLP is on)."""

    def __init__(self, labels: Labels) -> None:
        self._labels = labels
        self.instruments = RequestInstruments()

    def observe(self, record: LedgerRecord, operation: str) -> None:
        self.instruments.record(observed(record, operation, self._labels))

    def families(self) -> list[Metric]:
        return [instrument.family() for instrument in self.instruments.all()]


class RequestInstruments:
    """The aggregates, in Prometheus names (core.observe.instruments)."""

    def __init__(self) -> None:
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used (billable), per request.",
            (*SERVED, "gen_ai_token_type"),
            TOKEN_BOUNDS,
        )
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration: the gateway request, retries and failovers included.",
            (*SERVED, "error_type"),
            SECONDS_BOUNDS,
        )
        self.first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time to the first chunk of a streamed answer.",
            SERVED,
            SECONDS_BOUNDS,
        )
        self.requests = Counter(
            "interlock_requests_total",
            "Requests by API, operation and outcome (ok, cancelled, cut:<class>, cache_hit, "
            "coalesced, or the failure class).",
            ("api", "gen_ai_operation_name", "outcome", "tenant"),
        )
        self.spend = Counter(
            "interlock_spend_microdollars_total",
            "What served requests cost, in micro-dollars.",
            ("gen_ai_provider_name", "gen_ai_response_model", "tenant"),
        )
        self.prompt_cache = Counter(
            "interlock_prompt_cache_tokens_total",
            "Input tokens read from or written to a provider's prompt cache.",
            ("gen_ai_provider_name", "gen_ai_response_model", "kind"),
        )
        self.saved = Counter(
            "interlock_response_cache_saved_tokens_total",
            "Tokens a response-cache hit or a coalesced request did not spend upstream.",
            ("outcome", "gen_ai_token_type"),
        )

    def record(self, o: Observed) -> None:
        key = (o.operation, o.provider, o.requested, o.served)
        self.duration.observe((*key, o.outcome if o.failed else ""), o.duration_s)
        self.requests.add((o.api, o.operation, o.outcome, o.tenant))
        if o.first_chunk_s is not None:
            self.first_chunk.observe(key, o.first_chunk_s)
        if o.input_tokens or o.output_tokens:
            self.tokens.observe((*key, "input"), o.input_tokens)
            if o.output_tokens is not None:
                self.tokens.observe((*key, "output"), o.output_tokens)
        if o.cost_micros:
            self.spend.add((o.provider, o.served, o.tenant), o.cost_micros)
        if o.cache_read:
            self.prompt_cache.add((o.provider, o.served, "read"), o.cache_read)
        if o.cache_write:
            self.prompt_cache.add((o.provider, o.served, "write"), o.cache_write)
        if o.saved_input or o.saved_output:
            self.saved.add((o.outcome, "input"), o.saved_input)
            self.saved.add((o.outcome, "output"), o.saved_output)

    def all(self) -> list[Counter | Histogram]:
        return [
            self.requests,
            self.duration,
            self.first_chunk,
            self.tokens,
            self.spend,
            self.prompt_cache,
            self.saved,
        ]
