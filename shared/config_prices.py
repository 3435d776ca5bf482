"""`prices`: the operator's price entries and what happens to a model that has no price.

One declaration of a price entry (`PriceEntry`) serves both the catalogue shipped in
core/spend/catalogue.json (integers, micro-dollars per million tokens) and the operator's
entries here (decimal dollars per million tokens, as price pages write them), so the two cannot
drift apart. Money is read exactly (Decimal from the text, never a float) and stored as integer
micro-dollars.

Unpriced models are never silently free. The default policy is `reserve`: the request is served,
charged a fixed amount (`unpriced_reserve`, $0.01) and its cost marked `unpriced`, because a
gateway that refuses every model missing from a catalogue would break on the day a provider
ships a new model, while a visible non-zero charge keeps budgets counting and `interlock prices
--check` names the gap. An operator who wants no unknown spend sets `unpriced: refuse`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

UNPRICED_POLICIES = ("reserve", "refuse")
DEFAULT_UNPRICED_RESERVE = 10_000  # micro-dollars: $0.01 per request of an unpriced model
_MAX_PRICE = 10**12  # micro-dollars per unit: $1M per million tokens, far above any real price

# Reads one price: the catalogue's integers or the operator's decimal dollars.
MoneyReader = Callable[[Any, str], int]


@dataclass(frozen=True, slots=True)
class Rates:
    """Prices per million tokens, in micro-dollars. A part without its own price is billed at
    the price it derives from: cache reads and writes at `input`, 1h writes at 5m writes,
    reasoning at `output` (every provider bills it as output unless its page says otherwise)."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    reasoning: int | None = None


@dataclass(frozen=True, slots=True)
class LongContext(Rates):
    """Rates that replace the base ones when a request's prompt exceeds `threshold` tokens
    (Gemini 2.5 Pro above 200k, Claude Sonnet's 1M context above 200k)."""

    threshold: int = 0


@dataclass(frozen=True, slots=True)
class PriceEntry(Rates):
    """One model's prices: the catalogue's or the operator's (same keys)."""

    long_context: LongContext | None = None
    per_image: int | None = None  # micro-dollars per image: the default of `image_prices`
    # Per image by quality and size (core.spend.images): "<quality>/<WxH>" keys, either part
    # "*" (any other), read as ImagePrice rows.
    image_prices: tuple[ImagePrice, ...] = ()
    # Audio, micro-dollars per second, minute or hour (at most one: price pages use all three,
    # and $0.111 an hour is no whole number of micro-dollars a second).
    per_second: int | None = None
    per_minute: int | None = None
    per_hour: int | None = None
    max_output: int | None = None  # the model's real output limit, for budget estimates
    effective: str = ""  # the date the price took effect (YYYY-MM-DD)
    source: str = ""  # the price page or contract it comes from
    note: str = ""
    # Operator entries only: this model's unpriced policy (an entry with no price).
    unpriced: str | None = None
    unpriced_reserve: int | None = None

    @property
    def priced(self) -> bool:
        units = (self.per_image, self.per_second, self.per_minute, self.per_hour)
        return bool(self.image_prices) or any(
            price is not None for price in (self.input, self.output, *units)
        )

    @property
    def audio_per_hour(self) -> int:
        """The audio price in micro-dollars per hour (exact for any of the three units)."""
        for price, per_hour in ((self.per_second, 3600), (self.per_minute, 60), (self.per_hour, 1)):
            if price is not None:
                return price * per_hour
        return 0


@dataclass(frozen=True, slots=True)
class ImagePrice:
    """One `image_prices` row: images of `quality` ("*": any other) up to `width` x `height`
    pixels (0 x 0: any size) cost `price` micro-dollars each."""

    quality: str
    width: int
    height: int
    price: int

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class PricesConfig:
    unpriced: str = "reserve"  # the default policy for a model without a price
    unpriced_reserve: int = DEFAULT_UNPRICED_RESERVE  # micro-dollars per request
    # "<provider>/<model>" or "<provider>/*" (configured provider names) to entries.
    models: dict[str, PriceEntry] = field(default_factory=dict)


_PRICES = cp.keys_of(PricesConfig)
_ENTRY = cp.keys_of(PriceEntry)
_LONG_CONTEXT = cp.keys_of(LongContext)
_RATES = tuple(f.name for f in dataclasses.fields(Rates))
_UNIT_PRICES = ("per_image", "per_second", "per_minute", "per_hour")
_AUDIO_PRICES = _UNIT_PRICES[1:]
_IMAGE_KEY = re.compile(r"(\*|[a-z0-9_-]{1,32})/(\*|([1-9]\d{0,4})x([1-9]\d{0,4}))")
_TEXT = ("effective", "source", "note")


def dollars(value: Any, path: str) -> int:
    """Decimal dollars (`2.5`, `"0.075"`) as integer micro-dollars, exactly."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{path}: expected an amount in dollars such as 2.50")
    try:
        amount = Decimal(str(value).strip()) * 1_000_000
    except InvalidOperation:
        raise ConfigError(f"{path}: expected an amount in dollars such as 2.50") from None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount < 0:
        raise ConfigError(f"{path}: expected a non-negative amount with at most 6 decimals")
    if amount > _MAX_PRICE:
        raise ConfigError(f"{path}: implausibly large")
    return int(amount)


def micros(value: Any, path: str) -> int:
    """The catalogue's integers (micro-dollars)."""
    if type(value) is not int or not 0 <= value <= _MAX_PRICE:
        raise ConfigError(f"{path}: expected a non-negative integer of micro-dollars")
    return value


def parse_entry(raw: Any, path: str, money: MoneyReader) -> PriceEntry:
    s = cp.section(raw, path, _ENTRY)
    if not s:
        raise ConfigError(f"{path}: expected a mapping of prices")
    given: dict[str, Any] = {
        key: money(s[key], f"{path}.{key}") for key in (*_RATES, *_UNIT_PRICES) if key in s
    }
    given.update((key, str(s[key])) for key in _TEXT if s.get(key) is not None)
    unpriced = s.get("unpriced")
    if unpriced is not None and unpriced not in UNPRICED_POLICIES:
        raise ConfigError(f"{path}.unpriced: expected reserve or refuse")
    if len([key for key in _AUDIO_PRICES if key in s]) > 1:
        raise ConfigError(f"{path}: give one of {', '.join(_AUDIO_PRICES)}, not several")
    reserve = s.get("unpriced_reserve")
    entry = PriceEntry(
        **given,
        image_prices=_image_prices(s.get("image_prices"), f"{path}.image_prices", money),
        long_context=_long_context(s.get("long_context"), f"{path}.long_context", money),
        max_output=cp.integer(s, "max_output", path, 0, 0, 10**9) or None,
        unpriced=unpriced,
        unpriced_reserve=None if reserve is None else money(reserve, f"{path}.unpriced_reserve"),
    )
    if entry.priced and unpriced is not None:
        raise ConfigError(f"{path}.unpriced: only for an entry without prices")
    return entry


def _image_prices(raw: Any, path: str, money: MoneyReader) -> tuple[ImagePrice, ...]:
    """`{"hd/1024x1792": 0.12, "*/1024x1024": 0.04, ...}` as rows (quality, size, price)."""
    rows = []
    for key, value in cp.named(raw, path, "quality/size to a price per image").items():
        match = _IMAGE_KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise ConfigError(
                f"{path}.{key}: expected <quality>/<width>x<height>, either part * "
                "(e.g. hd/1024x1792, */1024x1024, premium/*)"
            )
        width, height = int(match.group(3) or 0), int(match.group(4) or 0)
        rows.append(ImagePrice(match.group(1), width, height, money(value, f"{path}.{key}")))
    return tuple(rows)


def _long_context(raw: Any, path: str, money: MoneyReader) -> LongContext | None:
    if raw is None:
        return None
    s = cp.section(raw, path, _LONG_CONTEXT)
    threshold = cp.integer(s, "threshold", path, 0, 1, 10**9)
    prices = {key: money(s[key], f"{path}.{key}") for key in _RATES if key in s}
    return LongContext(threshold=threshold, **prices)


def parse_prices(raw: Any) -> PricesConfig:
    path = "prices"
    s = cp.section(raw, path, _PRICES)
    policy = cp.string(s, "unpriced", path, "reserve")
    if policy not in UNPRICED_POLICIES:
        raise ConfigError(f"{path}.unpriced: expected reserve or refuse")
    reserve = s.get("unpriced_reserve")
    models: dict[str, PriceEntry] = {}
    for name, entry in cp.named(s.get("models"), f"{path}.models", "provider/model").items():
        where = f"{path}.models.{name}"
        provider, _, model = str(name).partition("/")
        if not isinstance(name, str) or not provider or not model:
            raise ConfigError(f"{where}: expected <provider>/<model> or <provider>/*")
        models[name] = parse_entry(entry, where, dollars)
    return PricesConfig(
        unpriced=policy,
        unpriced_reserve=(
            DEFAULT_UNPRICED_RESERVE
            if reserve is None
            else dollars(reserve, f"{path}.unpriced_reserve")
        ),
        models=models,
    )
