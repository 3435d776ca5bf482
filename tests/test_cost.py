"""Cost per request, computed by hand: each provider family's recorded usage shape (the numbers
below are our own fixtures, in the shapes the providers send), through the adapter's usage
mapping, UsageSplit and CataloguePricing.

Prices are per million tokens, so a price of $P/1M is P micro-dollars per token: each expected
cost below is a sum of tokens x dollars-per-million, in micro-dollars, rounded half up once.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.anthropic import ADAPTER as ANTHROPIC
from core.providers.adapters.anthropic.response import canonical_usage
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.bedrock.response import convert_usage
from core.providers.adapters.gemini.response import usage as gemini_usage
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.spend.cost import Cost
from core.spend.pricing import DEFAULT_ESTIMATE_OUTPUT, CataloguePricing
from core.spend.usage import UsageSplit
from core.wire.sse import SSEDecoder
from shared.config import ProviderConfig
from shared.config_prices import PricesConfig
from tests.support.providers import provider_of

PRICING = CataloguePricing(PricesConfig())


def target(kind: str, model: str, **options: Any) -> Target:
    base_url = "https://example.openai.azure.com" if kind == "azure" else None
    if kind == "bedrock":
        options.setdefault("region", "us-east-1")
    config = ProviderConfig(kind, kind, base_url, ("k",), {}, None, True, options)
    return Target(provider_of(config), model, "k")


def cost(target: Target, usage: dict[str, Any]) -> Cost:
    return PRICING.cost(target, UsageSplit.from_usage(usage))


def test_anthropic_cache_read_and_5m_write() -> None:
    # A non-streamed Message with a cache read and a 5-minute cache write: the usage recorded
    # from the real API (claude-sonnet-4-5-20250929, the cache_read_nonstream exchange).
    usage = canonical_usage(
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 418,
            "cache_read_input_tokens": 1111,
            "cache_creation": {"ephemeral_5m_input_tokens": 418, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 33,
        }
    )
    # Sonnet 4.5: input $3, 5m write $3.75, read $0.30, output $15.
    # 3*3 + 418*3.75 + 1111*0.30 + 33*15 = 9 + 1567.5 + 333.3 + 495 = 2404.8 -> 2405
    got = cost(target("anthropic", "claude-sonnet-4-5-20250929"), usage)
    assert got == Cost(2405, "anthropic/claude-sonnet-4-5@2025-09-29")
    assert got.dollars == "0.002405"


def _anthropic_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    data = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )
    decoder, parser = ANTHROPIC.decoder(), ANTHROPIC.stream_parser({}, target("anthropic", "x"))
    chunks = [c for event in decoder.feed(data) for c in parser.feed(event)]
    chunks += [c for event in decoder.finish() for c in parser.feed(event)] + parser.finish()
    [usage] = [c["usage"] for c in chunks if c.get("usage")]
    return dict(usage)


def test_anthropic_1h_cache_writes_from_a_stream() -> None:
    # message_start reports the 1h writes; message_delta repeats the totals without the split.
    # Recorded from the real API (claude-sonnet-4-6, the cache_control_ttl_1h exchange).
    start_usage = {
        "input_tokens": 13,
        "cache_creation_input_tokens": 3913,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 3913},
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    usage = _anthropic_stream(
        [
            {"type": "message_start", "message": {**message, "usage": start_usage}},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {**start_usage, "cache_creation": None, "output_tokens": 4},
            },
            {"type": "message_stop"},
        ]
    )
    assert usage["prompt_tokens_details"]["cache_creation_1h_tokens"] == 3913
    # Sonnet 4.6: input $3, 1h write $6 (2x input), output $15.
    # 13*3 + 3913*6 + 4*15 = 39 + 23478 + 60 = 23577 (at the 5m price it would be 14773)
    got = cost(target("anthropic", "claude-sonnet-4-6"), usage)
    assert got.micros == 23577


def test_anthropic_reasoning_is_billed_as_output_and_estimates_are_marked() -> None:
    # The recorded thinking stream's totals (claude-haiku-4-5-20251001, thinking_stream).
    usage = {
        "prompt_tokens": 44,
        "completion_tokens": 46,
        "completion_tokens_details": {"reasoning_tokens": 30},
        "estimated": True,
    }
    # Haiku 4.5: $1 in, $5 out; thinking is output: 44*1 + 46*5 = 274
    got = cost(target("anthropic", "claude-haiku-4-5-20251001"), usage)
    assert got == Cost(274, "anthropic/claude-haiku-4-5@2025-10-15", estimated=True)


def test_anthropic_long_context_tier() -> None:
    # Sonnet 4.5 above 200k prompt tokens: $6 in, $7.50 5m write, $0.60 read, $22.50 out.
    usage = canonical_usage(
        {
            "input_tokens": 150_000,
            "cache_creation_input_tokens": 40_000,
            "cache_read_input_tokens": 60_000,
            "output_tokens": 2_000,
        }
    )
    # 150000*6 + 40000*7.5 + 60000*0.6 + 2000*22.5 = 900000 + 300000 + 36000 + 45000
    assert cost(target("anthropic", "claude-sonnet-4-5"), usage).micros == 1_281_000


def test_gemini_thinking_tokens_and_cache() -> None:
    usage = gemini_usage(
        {
            "promptTokenCount": 1013,
            "cachedContentTokenCount": 1000,
            "candidatesTokenCount": 8,
            "thoughtsTokenCount": 100,
        }
    )
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 100}
    # 2.5 Flash: $0.30 in, $0.03 cached, $2.50 out (thinking included):
    # 13*0.30 + 1000*0.03 + 108*2.50 = 3.9 + 30 + 270 = 303.9 -> 304
    assert cost(target("gemini", "gemini-2.5-flash"), usage).micros == 304


def test_gemini_pro_long_context_tier_applies_above_200k() -> None:
    pro = target("gemini", "models/gemini-2.5-pro")
    short = gemini_usage({"promptTokenCount": 200_000, "candidatesTokenCount": 1000})
    # at the threshold: 200000*1.25 + 1000*10 = 250000 + 10000
    assert cost(pro, short).micros == 260_000
    long = gemini_usage(
        {
            "promptTokenCount": 250_000,
            "cachedContentTokenCount": 50_000,
            "candidatesTokenCount": 1000,
        }
    )
    # above it: 200000*2.50 + 50000*0.25 + 1000*15 = 500000 + 12500 + 15000
    assert cost(pro, long).micros == 527_500


def test_bedrock_cache_read_and_write_with_region_prefix_and_arn() -> None:
    # Converse usage recorded from bedrock-runtime: converse_cache_read (reads) and
    # cache_point_nonstream (writes).
    read = convert_usage({"inputTokens": 13, "cacheReadInputTokens": 1504, "outputTokens": 5})
    haiku = target("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0")
    # A geographic profile of Haiku 4.5: the list price + 10%, $1.10 in, $0.11 read, $5.50 out:
    # 13*1.1 + 1504*0.11 + 5*5.5 = 14.3 + 165.44 + 27.5 = 207.24 -> 207
    assert cost(haiku, read) == Cost(207, "bedrock/anthropic.claude-haiku-4-5@2025-10-15")
    # Through the global profile, the list price: 13*1 + 1504*0.10 + 5*5 = 188.4 -> 188
    global_haiku = target("bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert cost(global_haiku, read) == Cost(
        188, "bedrock/global.anthropic.claude-haiku-4-5@2025-10-15"
    )
    write = convert_usage({"inputTokens": 14, "cacheWriteInputTokens": 1503, "outputTokens": 5})
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    sonnet = target("bedrock", arn + "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    # 14*3 + 1503*3.75 + 5*15 = 42 + 5636.25 + 75 = 5753.25 -> 5753
    assert cost(sonnet, write).micros == 5753
    # Models before 4.5 cost the same through every profile: Sonnet 4 via `eu.` is $3 / $15.
    old = target("bedrock", "eu.anthropic.claude-sonnet-4-20250514-v1:0")
    assert cost(old, write) == Cost(5753, "bedrock/anthropic.claude-sonnet-4@2025-05-22")


def test_bedrock_embeddings() -> None:
    usage = {"prompt_tokens": 12_345, "total_tokens": 12_345}
    # Titan v2 $0.02: 12345*0.02 = 246.9 -> 247; Cohere v3 $0.10: 1234.5 -> 1235 (half up)
    assert cost(target("bedrock", "amazon.titan-embed-text-v2:0"), usage).micros == 247
    assert cost(target("bedrock", "cohere.embed-english-v3"), usage).micros == 1235


def test_openai_uncached_cached_and_reasoning() -> None:
    mini = target("openai", "gpt-4o-mini-2024-07-18")
    # The usage chunk recorded from api.openai.com (gpt-4o-mini-2024-07-18,
    # include_usage_stream): 78*0.15 + 9*0.60 = 11.7 + 5.4 = 17.1 -> 17
    plain = {"prompt_tokens": 78, "completion_tokens": 9, "prompt_tokens_details": {}}
    assert cost(mini, plain) == Cost(17, "openai/gpt-4o-mini@2024-10-01")
    reasoning = {
        "prompt_tokens": 100,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 300},
    }
    # o4-mini: 60*1.10 + 40*0.275 + 500*4.40 = 66 + 11 + 2200
    assert cost(target("openai", "o4-mini"), reasoning).micros == 2277


def test_azure_bills_openai_prices_and_presets_their_own() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 1000}
    # gpt-4o: 1000*2.50 + 1000*10 = 12500
    assert cost(target("azure", "gpt-4o"), usage).micros == 12_500
    # DeepSeek: 1000*0.28 + 1000*0.42 = 700
    deepseek = cost(target("openai", "deepseek-chat", preset="deepseek"), usage)
    assert deepseek == Cost(700, "deepseek/deepseek-chat@2025-09-29")


def test_rounding_is_half_up_once_at_the_end() -> None:
    mini = target("openai", "gpt-4o-mini")
    # 3 tokens at $0.15: 0.45 -> 0; 10 tokens: 1.5 -> 2; 3 in + 1 out: 0.45 + 0.6 = 1.05 -> 1
    assert cost(mini, {"prompt_tokens": 3}).micros == 0
    assert cost(mini, {"prompt_tokens": 10}).micros == 2
    assert cost(mini, {"prompt_tokens": 3, "completion_tokens": 1}).micros == 1


def test_estimate_caps_output_at_the_model_limit() -> None:
    haiku = target("anthropic", "claude-haiku-4-5")
    # 1000*1 + min(100, 64000)*5 = 1500
    assert PRICING.estimate(haiku, 1000, 100) == Cost(
        1500, "anthropic/claude-haiku-4-5@2025-10-15", estimated=True
    )
    # max_tokens above the real limit (64000): 1000*1 + 64000*5 = 321000
    assert PRICING.estimate(haiku, 1000, 10**6).micros == 321_000
    assert PRICING.estimate(haiku, 1000, None).micros == 321_000
    # Long context prices the estimate too: Gemini 2.5 Pro, 300k in, 1000 out:
    # 300000*2.50 + 1000*15 = 765000
    assert PRICING.estimate(target("gemini", "gemini-2.5-pro"), 300_000, 1000).micros == 765_000
    # No output limit known (embeddings): the default 4096 tokens at the output price ($0)
    embed = target("openai", "text-embedding-3-small")
    assert DEFAULT_ESTIMATE_OUTPUT == 4096
    assert PRICING.estimate(embed, 1000, None).micros == 20  # 1000*0.02


@pytest.mark.parametrize(
    "model",
    ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"],
)
def test_dated_ids_find_their_model(model: str) -> None:
    assert PRICING.price(target("anthropic", model)).version == (
        "anthropic/claude-sonnet-4-5@2025-09-29"
    )


def test_a_longer_name_never_falls_back_to_a_shorter_model() -> None:
    assert PRICING.price(target("openai", "gpt-4o-mini")).version == "openai/gpt-4o-mini@2024-10-01"
    assert PRICING.price(target("openai", "gpt-4o-unknown-variant")).version is None


def test_openai_recorded_tool_call_stream() -> None:
    # The usage chunk recorded from api.openai.com (gpt-4o-2024-08-06, parallel_tool_calls_stream)
    usage = {
        "prompt_tokens": 149,
        "completion_tokens": 60,
        "total_tokens": 209,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    # gpt-4o: $2.50 in, $10 out: 149*2.5 + 60*10 = 372.5 + 600 = 972.5 -> 973 (half up)
    assert cost(target("openai", "gpt-4o-2024-08-06"), usage) == Cost(
        973, "openai/gpt-4o@2024-10-01"
    )
    # Azure bills the deployment's model at OpenAI's list price (its recorded stream,
    # prompt_filter_stream from gpt-4o-2024-11-20, reports no usage: the same counts here).
    assert cost(target("azure", "gpt-4o-2024-11-20"), usage).micros == 973


def test_gemini_3_pro_recorded_thinking_stream() -> None:
    # usageMetadata recorded from the Gemini API (gemini-3-pro-preview, function_call_stream)
    usage = gemini_usage(
        {"promptTokenCount": 29, "candidatesTokenCount": 10, "thoughtsTokenCount": 202}
    )
    # $2 in, $12 out (thinking included): 29*2 + (10 + 202)*12 = 58 + 2544 = 2602
    got = cost(target("gemini", "gemini-3-pro-preview"), usage)
    assert got == Cost(2602, "gemini/gemini-3-pro-preview@2025-11-18")


def test_gemini_3_pro_long_context_tier_with_cache_reads() -> None:
    pro = target("gemini", "models/gemini-3-pro-preview")
    long = gemini_usage(
        {
            "promptTokenCount": 300_000,
            "cachedContentTokenCount": 100_000,
            "candidatesTokenCount": 2_000,
            "thoughtsTokenCount": 1_000,
        }
    )
    # above 200k: $4 in, $0.40 cached, $18 out:
    # 200000*4 + 100000*0.40 + 3000*18 = 800000 + 40000 + 54000
    assert cost(pro, long).micros == 894_000
    short = gemini_usage({"promptTokenCount": 200_000, "cachedContentTokenCount": 100_000})
    # at the threshold, the base tier: 100000*2 + 100000*0.20 = 220000
    assert cost(pro, short).micros == 220_000


def test_gemini_2_5_flash_cache_reads_at_their_price() -> None:
    # Recorded shape of the text_stream exchange, with a context-cache hit added (its own
    # recording, gemini-2.0-flash-exp, used no cache): 2.5 Flash reads at $0.03, not $0.30.
    usage = gemini_usage(
        {"promptTokenCount": 10_013, "cachedContentTokenCount": 10_000, "candidatesTokenCount": 8}
    )
    # 13*0.30 + 10000*0.03 + 8*2.50 = 3.9 + 300 + 20 = 323.9 -> 324
    assert cost(target("gemini", "gemini-2.5-flash"), usage).micros == 324


def test_bedrock_nova_recorded_stream_usage() -> None:
    # The metadata frame recorded from bedrock-runtime (us.amazon.nova-micro-v1:0,
    # tool_use_stream): Nova Micro $0.035 in, $0.14 out.
    usage = convert_usage({"inputTokens": 471, "outputTokens": 91, "totalTokens": 562})
    micro = target("bedrock", "us.amazon.nova-micro-v1:0")
    # 471*0.035 + 91*0.14 = 16.485 + 12.74 = 29.225 -> 29
    assert cost(micro, usage) == Cost(29, "bedrock/amazon.nova-micro-v1@2024-12-03")
    # The same stream with cache reads (cache_point_stream, derived from that recording):
    # 12*0.035 + 1979*0.00875 + 91*0.14 = 0.42 + 17.31625 + 12.74 = 30.47625 -> 30
    cached = convert_usage(
        {
            "cacheReadInputTokens": 1979,
            "cacheWriteInputTokens": 0,
            "inputTokens": 12,
            "outputTokens": 91,
        }
    )
    assert cost(micro, cached).micros == 30


DEEPSEEK = target("openai", "deepseek-chat", preset="deepseek")
# DeepSeek's usage shape (api-docs.deepseek.com, "context caching"): prompt_tokens is the sum
# of prompt_cache_hit_tokens and prompt_cache_miss_tokens. No recorded DeepSeek exchange is at
# hand: the numbers are ours, in that shape.
DEEPSEEK_USAGE: dict[str, Any] = {
    "prompt_tokens": 1800,
    "completion_tokens": 120,
    "total_tokens": 1920,
    "prompt_cache_hit_tokens": 1536,
    "prompt_cache_miss_tokens": 264,
}
# deepseek-chat: $0.28 a miss, $0.028 a hit, $0.42 out:
# 264*0.28 + 1536*0.028 + 120*0.42 = 73.92 + 43.008 + 50.4 = 167.328 -> 167
# (554 if the hits were billed as misses: 1800*0.28 + 50.4 = 554.4)
DEEPSEEK_COST = Cost(167, "deepseek/deepseek-chat@2025-09-29")


def _deepseek_completion(usage: dict[str, Any]) -> bytes:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi"},
        "finish_reason": "stop",
    }
    return orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "deepseek-chat",
            "choices": [choice],
            "usage": usage,
        }
    )


def test_deepseek_cache_hits_are_priced_as_cache_reads() -> None:
    answer = OPENAI.parse_response(_deepseek_completion(DEEPSEEK_USAGE), DEEPSEEK)
    usage = answer["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1536}  # the canonical reads
    assert usage["prompt_cache_hit_tokens"] == 1536  # DeepSeek's own fields stay
    assert UsageSplit.from_usage(usage) == UsageSplit(input=264, cache_read=1536, output=120)
    assert cost(DEEPSEEK, usage) == DEEPSEEK_COST


def test_deepseek_cache_hits_in_a_stream_usage_chunk() -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "deepseek-chat"}
    data = (
        b"".join(
            b"data: " + orjson.dumps(c) + b"\n\n"
            for c in (
                {
                    **chunk,
                    "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}],
                },
                {**chunk, "choices": [], "usage": DEEPSEEK_USAGE},
            )
        )
        + b"data: [DONE]\n\n"
    )
    parser = OPENAI.stream_parser({}, DEEPSEEK)
    chunks = [c for event in SSEDecoder().feed(data) for c in parser.feed(event)]
    [usage] = [c["usage"] for c in chunks if c.get("usage")]
    assert cost(DEEPSEEK, usage) == DEEPSEEK_COST


def test_deepseek_reasoner_hits_fill_an_empty_cached_count() -> None:
    # Newer DeepSeek answers may also carry prompt_tokens_details with cached_tokens 0 beside
    # the hit count; reasoning is output at the output price.
    usage = {
        **DEEPSEEK_USAGE,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    reasoner = target("openai", "deepseek-reasoner", preset="deepseek")
    answer = OPENAI.parse_response(_deepseek_completion(usage), reasoner)
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 1536
    assert cost(reasoner, answer["usage"]).micros == 167  # same prices as deepseek-chat
    # An OpenAI-style count that is already there wins over the host's own fields.
    both = {**DEEPSEEK_USAGE, "prompt_tokens_details": {"cached_tokens": 1000}}
    answer = OPENAI.parse_response(_deepseek_completion(both), DEEPSEEK)
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 1000


def test_a_cache_hit_count_that_is_not_a_count_is_an_invalid_upstream_answer() -> None:
    bad = {**DEEPSEEK_USAGE, "prompt_cache_hit_tokens": "1536"}
    with pytest.raises(ProviderError) as info:
        OPENAI.parse_response(_deepseek_completion(bad), DEEPSEEK)
    assert info.value.status == 502
