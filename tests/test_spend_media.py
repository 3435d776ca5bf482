"""Media priced by the unit the provider bills, hand-computed from the price pages: images by
quality and size (exact sizes, Bedrock's "up to" brackets, `*` for any other quality, the
model's default image when nothing is known), token-billed image models whose per-image prices
stand in only when no tokens are reported, audio per second, minute or hour exactly (no
rounding of the rate), the operator's overrides of all of it, and the usage each translator
reports for pricing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.api.audio.speech import speech_usage
from core.api.images.request import validate_images
from core.providers.adapters.base import Target
from core.providers.adapters.bedrock.images import IMAGES as BEDROCK_IMAGES
from core.providers.adapters.openai_media import IMAGES as OPENAI_IMAGES
from core.spend.cost import Cost
from core.spend.images import ImagePrices, requested_images
from core.spend.pricing import CataloguePricing
from core.spend.usage import UsageSplit
from shared.config import ProviderConfig
from shared.config_prices import ImagePrice, PricesConfig, parse_prices
from shared.configparse import ConfigError
from tests.support.providers import provider_of

CATALOGUE = CataloguePricing(PricesConfig())


def target(kind: str, model: str, name: str = "p", **options: Any) -> Target:
    config = ProviderConfig(name, kind, None, ("k",), {}, None, True, options)
    return Target(provider_of(config), model, "k")


OPENAI = {"preset": "openai"}
AWS = {"region": "us-east-1"}  # the key is a Bedrock API key


def images(n: int, quality: str = "", size: str = "", **tokens: int) -> UsageSplit:
    usage = {"images": n, "image_quality": quality, "image_size": size, **tokens}
    return UsageSplit.from_usage(usage)


def micros(t: Target, usage: UsageSplit, pricing: CataloguePricing = CATALOGUE) -> int:
    return pricing.cost(t, usage).micros


@pytest.mark.parametrize(
    ("quality", "size", "n", "expected"),
    [
        ("hd", "1792x1024", 1, 120_000),  # $0.12
        ("hd", "1024x1024", 1, 80_000),
        ("standard", "1024x1792", 1, 80_000),  # no "standard" rows: the * (default) rows
        ("", "1024x1792", 1, 80_000),  # quality not given: dall-e-3's default, standard
        ("auto", "1024x1024", 1, 40_000),
        ("hd", "", 1, 80_000),  # size unknown: the "hd/*" row (hd at the default 1024x1024)
        ("", "", 2, 80_000),
    ],
)
def test_dalle_3_by_quality_and_size(quality: str, size: str, n: int, expected: int) -> None:
    dalle = target("openai", "dall-e-3", **OPENAI)
    assert micros(dalle, images(n, quality, size)) == expected


def test_dalle_2_by_size() -> None:
    dalle = target("openai", "dall-e-2", **OPENAI)
    got = [micros(dalle, images(1, "", s)) for s in ("256x256", "512x512", "1024x1024")]
    assert got == [16_000, 18_000, 20_000]


def test_gpt_image_bills_tokens_when_reported_and_images_only_without() -> None:
    gpt_image = target("openai", "gpt-image-1", **OPENAI)
    # 50 x $5 + 4160 x $40 per million tokens = $0.00025 + $0.1664; the image is not billed
    # again on top of the tokens it is made of.
    reported = images(1, "high", "1024x1024", prompt_tokens=50, completion_tokens=4160)
    assert micros(gpt_image, reported) == 166_650
    assert micros(gpt_image, images(2, "medium", "1536x1024")) == 126_000  # 2 x $0.063
    assert micros(gpt_image, images(1, "low", "1024x1536")) == 16_000
    assert micros(gpt_image, images(1, "auto", "1024x1024")) == 167_000  # unknown: as high
    assert micros(gpt_image, images(1, "low", "auto")) == 11_000  # size unknown: 1024x1024
    mini = target("openai", "gpt-image-1-mini", **OPENAI)
    assert micros(mini, images(3, "low", "1024x1024")) == 15_000  # 3 x $0.005


@pytest.mark.parametrize(
    ("model", "quality", "size", "expected"),
    [
        ("amazon.nova-canvas-v1:0", "standard", "1024x1024", 40_000),
        ("amazon.nova-canvas-v1:0", "premium", "1280x720", 60_000),  # up to 1024 x 1024
        ("amazon.nova-canvas-v1:0", "standard", "2048x1152", 60_000),  # up to 2048 x 2048
        ("amazon.nova-canvas-v1:0", "premium", "2048x2048", 80_000),
        ("amazon.nova-canvas-v1:0", "premium", "4096x4096", 80_000),  # above: the top bracket
        ("us.amazon.nova-canvas-v1:0", "standard", "1024x1024", 40_000),
        ("amazon.titan-image-generator-v2:0", "standard", "512x512", 8_000),
        ("amazon.titan-image-generator-v2:0", "standard", "768x768", 10_000),
        ("amazon.titan-image-generator-v2:0", "premium", "1024x1024", 12_000),
        ("amazon.titan-image-generator-v1", "premium", "512x512", 10_000),
    ],
)
def test_bedrock_images_by_quality_and_size_bracket(
    model: str, quality: str, size: str, expected: int
) -> None:
    bedrock = target("bedrock", model, **AWS)
    assert micros(bedrock, images(1, quality, size)) == expected


def test_imagen_is_one_price_whatever_the_size() -> None:
    imagen = target("gemini", "imagen-4.0-ultra-generate-001")
    assert micros(imagen, images(2, "hd", "1792x1024")) == 120_000  # 2 x $0.06


@pytest.mark.parametrize(
    ("model", "kind", "options", "seconds", "expected"),
    [
        ("whisper-1", "openai", OPENAI, 90.5, 9_050),  # $0.006 a minute x 90.5 s
        ("gpt-4o-mini-transcribe", "openai", OPENAI, 60, 3_000),  # no token usage reported
        ("whisper-large-v3", "openai", {"preset": "groq"}, 3600, 111_000),  # $0.111 an hour
        ("whisper-large-v3", "openai", {"preset": "groq"}, 3.2 * 3600, 355_200),
        ("whisper-large-v3", "openai", {"preset": "groq"}, 17, 524),  # 524.17: rounded once
        ("whisper-large-v3-turbo", "openai", {"preset": "groq"}, 90, 1_000),  # $0.04 an hour
    ],
)
def test_audio_per_minute_and_per_hour_exactly(
    model: str, kind: str, options: dict[str, str], seconds: float, expected: int
) -> None:
    t = target(kind, model, **options)
    assert micros(t, UsageSplit.from_usage({"seconds": seconds})) == expected


def test_token_billed_transcription_ignores_its_per_minute_price() -> None:
    transcribe = target("openai", "gpt-4o-transcribe", **OPENAI)
    usage = UsageSplit.from_usage({"prompt_tokens": 1000, "completion_tokens": 100})
    assert micros(transcribe, usage) == 7_000  # 1000 x $6 + 100 x $10 per million


def test_operator_overrides_price_images_and_audio() -> None:
    config = parse_prices(
        {
            "models": {
                "oai/dall-e-3": {
                    "per_image": "0.03",
                    "image_prices": {"hd/*": 0.09, "*/1792x1024": "0.06"},
                },
                "groq/*": {"per_minute": "0.001"},
                "lab/painter": {"image_prices": {"*/*": 0.005}},
            }
        }
    )
    pricing = CataloguePricing(config)
    dalle = target("openai", "dall-e-3", "oai", **OPENAI)
    assert micros(dalle, images(1, "hd", "1024x1024"), pricing) == 90_000
    assert micros(dalle, images(1, "", "1792x1024"), pricing) == 60_000
    assert micros(dalle, images(1, "", ""), pricing) == 30_000
    cost = pricing.cost(dalle, images(1, "", ""))
    assert cost.price_version == "config:oai/dall-e-3"
    groq = target("openai", "whisper-large-v3", "groq", preset="groq")
    assert micros(groq, UsageSplit.from_usage({"seconds": 30}), pricing) == 500
    lab = target("openai", "painter", "lab")  # a self-hosted model: priced by the operator
    assert pricing.cost(lab, images(4, "x", "64x64")) == Cost(20_000, "config:lab/painter")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"image_prices": {"hd-1024": 1}}, r"image_prices\.hd-1024: expected <quality>/"),
        ({"image_prices": {"HD/1024x1024": 1}}, r"expected <quality>/"),
        ({"image_prices": {"hd/0x1024": 1}}, r"expected <quality>/"),
        ({"image_prices": {"hd/1024x1024": -1}}, r"image_prices\.hd/1024x1024: expected a"),
        ({"image_prices": ["hd"]}, r"image_prices: expected a mapping"),
        ({"per_second": 0.001, "per_hour": 1}, r"give one of per_second, per_minute, per_hour"),
        ({"per_hour": "x"}, r"per_hour: expected an amount"),
    ],
)
def test_bad_media_prices_are_config_errors(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_prices({"models": {"oai/m": entry}})


def test_image_price_lookup_order() -> None:
    rows = [
        ImagePrice("hd", 1024, 1024, 2),
        ImagePrice("hd", 2048, 2048, 3),
        ImagePrice("*", 1024, 1024, 5),
        ImagePrice("*", 0, 0, 7),
    ]
    prices = ImagePrices.of(1, rows)
    assert prices.price("hd", "1024x1024") == 2  # exact
    assert prices.price("hd", "1500x1500") == 3  # the bracket that covers it
    assert prices.price("hd", "4000x4000") == 3  # above every bracket: the top one
    assert prices.price("hd", "") == 7  # no hd row for an unknown size: the * quality's *
    assert prices.price("low", "512x512") == 5  # no low rows: * quality, covering bracket
    assert prices.price("low", "4000x4000") == 7  # above: the * size row
    assert ImagePrices.of(1, [ImagePrice("hd", 1024, 1024, 2)]).price("low", "") == 1


def test_translators_report_what_the_image_was_billed_as() -> None:
    request = validate_images({"model": "m", "prompt": "p", "quality": "auto", "size": "auto"})
    answer = {"data": [{"b64_json": "AA=="}], "quality": "medium", "size": "1024x1536"}
    parsed = OPENAI_IMAGES.parse(orjson.dumps(answer), request)
    split = UsageSplit.from_usage(parsed.usage)  # gpt-image-1 says what `auto` became
    assert (split.images, split.image_quality, split.image_size) == (1, "medium", "1024x1536")
    asked = validate_images({"model": "m", "prompt": "p", "quality": "hd", "size": "1792x1024"})
    dalle = OPENAI_IMAGES.parse(orjson.dumps({"data": [{"url": "https://x/y.png"}]}), asked)
    assert UsageSplit.from_usage(dalle.usage).image_quality == "hd"
    hd = validate_images({"model": "m", "prompt": "p", "quality": "hd", "n": 2})
    canvas = BEDROCK_IMAGES.parse(orjson.dumps({"images": ["AA==", "AA=="]}), hd)
    split = UsageSplit.from_usage(canvas.usage)  # AWS's words, and the size it was asked
    assert (split.images, split.image_quality, split.image_size) == (2, "premium", "1024x1024")


def test_a_providers_quality_words_are_bounded() -> None:
    split = UsageSplit.from_usage({"images": 1, "image_quality": "x" * 33, "image_size": 7})
    assert (split.image_quality, split.image_size) == ("", "")


def test_speech_counts_the_characters_spoken() -> None:
    assert UsageSplit.from_usage(speech_usage("tts-1", "héllo")).characters == 5
    estimated = UsageSplit.from_usage(speech_usage("gpt-4o-mini-tts", "hello there"))
    assert (estimated.characters, estimated.estimated) == (11, True)


def test_an_images_request_is_estimated_by_what_it_asks_for() -> None:
    """Before the call (budget reservations): the images asked for, at their quality and size,
    on top of the prompt's tokens; a token-billed model's images at their per-image price."""
    dalle = target("openai", "dall-e-3", **OPENAI)
    asked = requested_images({"model": "d", "prompt": "p", "quality": "hd", "size": "1792x1024"})
    assert CATALOGUE.estimate(dalle, 12, 0, asked).micros == 120_000
    assert CATALOGUE.estimate(dalle, 12, 0).micros == 0  # without the units: nothing
    gpt_image = target("openai", "gpt-image-1", **OPENAI)
    payload = {"prompt": "p", "n": 2, "quality": "high", "size": "1024x1536"}
    # 50 x $5 per million prompt tokens, plus 2 x $0.25
    assert CATALOGUE.estimate(gpt_image, 50, 0, requested_images(payload)).micros == 500_250
    assert requested_images({"n": 99}).images == 1  # never more than validation allows
    assert requested_images({}).images == 1
