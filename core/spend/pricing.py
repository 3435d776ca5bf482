"""The `Pricing` the core runs with: the shipped catalogue under the operator's entries.

Built once at start-up (core.startup). A target's price is resolved the first time it is priced
and kept per (provider, model): configured targets are resolved at start-up, and the names
tenants choose (`provider/<any>`) are cached up to DYNAMIC_PRICES entries, then resolved each
time (a few dictionary lookups), so the cache stays bounded. Per request: two lookups and
integer arithmetic.

Rounding: each part is tokens x (micro-dollars per million tokens), images x their price by
quality and size (core.spend.images), milliseconds of audio x the price per hour, summed
exactly as integers (in micro-dollars x SCALE), then divided once, rounding half up. No float
ever touches money.

Lookup order: the operator's `<provider>/<model>` entry, its `<provider>/*` entry, the
catalogue entry of the provider's family (core.spend.catalogue), else unpriced, with the
operator's policy for that model, that provider, or the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.providers.adapters.base import Target
from core.providers.provider import Provider
from core.spend.catalogue import Catalogue, family_of, find, load_catalogue
from core.spend.cost import Cost
from core.spend.images import ImagePrices
from core.spend.usage import UsageSplit
from shared.config import Config
from shared.config_prices import LongContext, PriceEntry, PricesConfig, Rates
from shared.configparse import ConfigError

DYNAMIC_PRICES = 4096
# Costs are summed exactly as integers in micro-dollars x SCALE, then rounded once: tokens are
# priced per million, audio per hour (3.6e6 ms), so SCALE is a multiple of both.
SCALE = 3_600_000_000
NO_IMAGE_PRICES = ImagePrices(0)
DEFAULT_ESTIMATE_OUTPUT = 4096  # output tokens an estimate assumes when nothing bounds it


@dataclass(frozen=True, slots=True)
class PartRates:
    """Every part's price, derivations applied (micro-dollars per million tokens), and the
    media units' (per image by quality and size, per hour of audio)."""

    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    reasoning: int
    images: ImagePrices = NO_IMAGE_PRICES
    audio_per_hour: int = 0  # micro-dollars per hour of audio

    @classmethod
    def of(cls, rates: Rates, base: Rates | None = None) -> PartRates:
        """`rates` completed: a missing part is the price the base tier lists for it, else the
        price it derives from in `rates`' own tier (reads and writes from input, 1h writes
        from 5m writes, reasoning from output). A long-context tier never inherits a derived
        base price: thinking above Gemini's 200k threshold is billed at the tier's output."""

        def pick(own: int | None, listed: int | None, derived: int) -> int:
            return own if own is not None else listed if listed is not None else derived

        b = base or Rates()
        input_ = pick(rates.input, b.input, 0)
        output = pick(rates.output, b.output, 0)
        write_5m = pick(rates.cache_write_5m, b.cache_write_5m, input_)
        return cls(
            input=input_,
            output=output,
            cache_read=pick(rates.cache_read, b.cache_read, input_),
            cache_write_5m=write_5m,
            cache_write_1h=pick(rates.cache_write_1h, b.cache_write_1h, write_5m),
            reasoning=pick(rates.reasoning, b.reasoning, output),
        )

    def scaled(self, usage: UsageSplit) -> int:
        """The usage's cost in micro-dollars x SCALE (exact). The media units are billed
        unless the usage reports tokens the entry prices: gpt-image-1 and gpt-4o-transcribe
        bill tokens, and their per-image and per-second prices (OpenAI's own per-unit
        figures) stand in only for an answer that reports none."""
        reasoning = min(usage.reasoning, usage.output)
        tokens = (
            usage.input * self.input
            + usage.cache_read * self.cache_read
            + usage.cache_write_5m * self.cache_write_5m
            + usage.cache_write_1h * self.cache_write_1h
            + (usage.output - reasoning) * self.output
            + reasoning * self.reasoning
        )
        if tokens:
            return tokens * (SCALE // 1_000_000)
        image = self.images.price(usage.image_quality, usage.image_size) if usage.images else 0
        # audio_ms x micro-dollars per hour / 3.6e6 ms an hour, times SCALE (3.6e9)
        return usage.images * image * SCALE + usage.audio_ms * self.audio_per_hour * 1000


@dataclass(frozen=True, slots=True)
class Price:
    """A target's resolved price (or its unpriced policy)."""

    version: str | None  # "<family or config:provider>/<model>@<effective>"; None: unpriced
    base: PartRates | None
    long: PartRates | None
    threshold: int  # prompt tokens above which `long` applies (0: no tier)
    max_output: int | None
    overridden: bool = False
    source: str = ""
    refuse: bool = False  # unpriced and refused
    reserve: int = 0  # unpriced: the fixed charge, micro-dollars

    def rates(self, prompt_tokens: int) -> PartRates | None:
        if self.long is not None and prompt_tokens > self.threshold:
            return self.long
        return self.base


def _round(scaled: int) -> int:
    """Micro-dollars, rounded half up (the one rounding of a cost)."""
    return (scaled + SCALE // 2) // SCALE


def priced(entry: PriceEntry, version: str, overridden: bool) -> Price:
    images = ImagePrices.of(entry.per_image, entry.image_prices)
    base = dataclasses.replace(
        PartRates.of(entry), images=images, audio_per_hour=entry.audio_per_hour
    )
    tier: LongContext | None = entry.long_context
    return Price(
        version=version,
        base=base,
        long=PartRates.of(tier, entry) if tier is not None else None,
        threshold=tier.threshold if tier is not None else 0,
        max_output=entry.max_output,
        overridden=overridden,
        source=entry.source or "interlock.yaml",
    )


class CataloguePricing:
    """`core.spend.cost.Pricing` over the catalogue and the operator's `prices` section."""

    def __init__(self, config: PricesConfig, catalogue: Catalogue | None = None) -> None:
        self._config = config
        self._catalogue = catalogue if catalogue is not None else load_catalogue()
        self._prices: dict[tuple[str, str], Price] = {}

    def prime(self, targets: Iterable[tuple[Provider, str]]) -> None:
        """Resolve the configured targets at start-up, so their lookups never miss."""
        for provider, model in targets:
            self._prices[provider.name, model] = self._resolve(provider, model)

    def price(self, target: Target) -> Price:
        return self.price_of(target.provider, target.model)

    def price_of(self, provider: Provider, model: str) -> Price:
        key = (provider.name, model)
        found = self._prices.get(key)
        if found is None:
            found = self._resolve(provider, model)
            if len(self._prices) < DYNAMIC_PRICES:
                self._prices[key] = found
        return found

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def cost(self, target: Target, usage: UsageSplit) -> Cost:
        price = self.price(target)
        rates = price.rates(usage.input_total)
        if rates is None:  # the operator's fixed charge, for work done: a failure costs nothing
            worked = (
                usage.input_total
                or usage.output
                or usage.images
                or usage.audio_ms
                or usage.characters
            )
            charge = price.reserve if worked else 0
            return Cost(charge, None, unpriced=True, estimated=usage.estimated)
        micros = _round(rates.scaled(usage))
        return Cost(micros, price.version, estimated=usage.estimated)

    def estimate(
        self,
        target: Target,
        input_tokens: int,
        max_output_tokens: int | None,
        units: UsageSplit | None = None,
    ) -> Cost:
        price = self.price(target)
        rates = price.rates(input_tokens)
        if rates is None:
            return Cost(price.reserve, None, unpriced=True, estimated=True)
        limits = [n for n in (max_output_tokens, price.max_output) if n is not None]
        output = min(limits) if limits else DEFAULT_ESTIMATE_OUTPUT
        usage = UsageSplit(input=max(0, input_tokens), output=max(0, output))
        scaled = rates.scaled(usage)
        if units is not None:  # a media request: its units priced as if no tokens came back
            scaled += rates.scaled(media_only(units))
        return Cost(_round(scaled), price.version, estimated=True)

    def refuses(self, target: Target) -> bool:
        return self.price(target).refuse

    def _resolve(self, provider: Provider, model: str) -> Price:
        entries = self._config.models
        for key in (f"{provider.name}/{model}", f"{provider.name}/*"):
            entry = entries.get(key)
            if entry is not None and entry.priced:
                return priced(entry, _version(f"config:{key}", entry), True)
        listed = find(self._catalogue, family_of(provider), model)
        if listed is not None:
            name = f"{listed.family}/{listed.model}"
            return priced(listed.entry, _version(name, listed.entry), False)
        return self._unpriced(provider.name, model)

    def _unpriced(self, provider: str, model: str) -> Price:
        policy, reserve = self._config.unpriced, self._config.unpriced_reserve
        for key in (f"{provider}/*", f"{provider}/{model}"):  # the model's own entry wins
            entry = self._config.models.get(key)
            if entry is not None:
                policy = entry.unpriced or policy
                reserve = entry.unpriced_reserve if entry.unpriced_reserve is not None else reserve
        return Price(None, None, None, 0, None, refuse=policy == "refuse", reserve=reserve)


def media_only(usage: UsageSplit) -> UsageSplit:
    """The media units of `usage` without its tokens (what they cost on their own)."""
    return UsageSplit(
        images=usage.images,
        audio_ms=usage.audio_ms,
        characters=usage.characters,
        image_quality=usage.image_quality,
        image_size=usage.image_size,
    )


def _version(name: str, entry: PriceEntry) -> str:
    return f"{name}@{entry.effective}" if entry.effective else name


def check_providers(config: PricesConfig, providers: Iterable[str]) -> None:
    """Every operator entry names a configured provider (a typo would price nothing)."""
    known = set(providers)
    for key in config.models:
        if key.partition("/")[0] not in known:
            raise ConfigError(f"prices.models.{key}: no provider named '{key.partition('/')[0]}'")


def configured_targets(config: Config) -> list[tuple[str, str]]:
    """Every (provider, model) the config routes to, in order, once each: models' targets
    (per tier too) and the routing policy's named routes (which a rule may send any request
    to, so `interlock prices --check` must see them)."""
    seen: dict[tuple[str, str], None] = {}
    lists = [t for model in config.models.values() for t in (model.targets, *model.tiers.values())]
    lists += [route.targets for route in config.routing.routes.values()]
    for targets in lists:
        for target in targets:
            seen[target.provider, target.model] = None
    return list(seen)


def build_pricing(config: Config, providers: Mapping[str, Provider]) -> CataloguePricing:
    """The core's Pricing: checked against the providers, its configured targets resolved."""
    check_providers(config.prices, providers)
    pricing = CataloguePricing(config.prices)
    pricing.prime((providers[p], model) for p, model in configured_targets(config))
    return pricing
