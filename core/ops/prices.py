"""`interlock prices`: what each configured target costs, and the catalogue behind it.

The first table is the config's targets as the core prices them (the same CataloguePricing,
built the same way), so a target that would be unpriced at request time is flagged here, and
so is a provider that takes any model name without a price for names the catalogue lacks;
`--check` exits 1 when a configured target is unpriced (for CI). The second table is the
shipped catalogue (`--catalogue`), with the operator's entries marked as overriding it.
"""

from __future__ import annotations

from core.providers.provider import Provider, build_provider
from core.spend.pricing import (
    CataloguePricing,
    PartRates,
    Price,
    build_pricing,
    configured_targets,
    priced,
)
from core.startup import no_session
from shared.config import Config

_PRICES = ("input", "output", "cache read", "write 5m", "write 1h", "media")
Rows = list[list[str]]


def usd(micros_per_million: int) -> str:
    """Micro-dollars as decimal dollars, exactly (no float): 2500000 -> 2.50."""
    whole, frac = divmod(micros_per_million, 1_000_000)
    return f"{whole}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


def _rates(rates: PartRates | None) -> list[str]:
    if rates is None:
        return ["-"] * len(_PRICES)
    parts = (rates.input, rates.output, rates.cache_read, rates.cache_write_5m)
    return [usd(n) for n in (*parts, rates.cache_write_1h)] + [_media(rates)]


def _media(rates: PartRates) -> str:
    """The media units' prices: the default image (and how many quality/size rows refine it),
    audio per hour; "-" for a model priced by tokens only."""
    shown = []
    images = rates.images
    if images.listed:
        rows = f"(+{len(images.rows)})" if images.rows else ""
        shown.append(f"{usd(images.default)}/image{rows}")
    if rates.audio_per_hour:
        shown.append(f"{usd(rates.audio_per_hour)}/hour")
    return ",".join(shown) or "-"


def table(rows: Rows) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _status(price: Price) -> str:
    if price.version is not None:
        return "overridden" if price.overridden else "catalogue"
    return "UNPRICED: refused" if price.refuse else f"UNPRICED: reserve ${usd(price.reserve)}"


def _row(provider: str, model: str, price: Price) -> list[str]:
    version = price.version or "-"
    return [provider, model, *_rates(price.base), version, price.source or "-", _status(price)]


def configured(config: Config, pricing: CataloguePricing, providers: dict[str, Provider]) -> Rows:
    """The configured targets' prices (per million tokens, dollars)."""
    rows = [["provider", "model", *_PRICES, "entry", "source", "status"]]
    for name, model in configured_targets(config):
        rows.append(_row(name, model, pricing.price_of(providers[name], model)))
    for name, provider in providers.items():
        if provider.allow_any_model:  # names tenants choose: the catalogue or the policy
            rows.append(_row(name, "<any>", pricing.price_of(provider, "\0")))
    return rows


def catalogue_rows(pricing: CataloguePricing) -> Rows:
    rows = [["family", "model", *_PRICES, "max output", "effective", "source"]]
    for family, models in pricing.catalogue.items():
        for listed in models.values():
            entry = listed.entry
            rates = _rates(priced(entry, "", False).base)
            if entry.input is None:  # priced by media units only
                rates[:5] = ["-"] * 5
            limit = str(entry.max_output or "-")
            rows.append([family, listed.model, *rates, limit, entry.effective, entry.source])
    return rows


def report(config: Config, show_catalogue: bool) -> tuple[str, int]:
    """The report and how many configured targets have no price."""
    providers = {
        name: build_provider(provider, config.core, no_session)
        for name, provider in config.providers.items()
    }
    pricing = build_pricing(config, providers)
    rows = configured(config, pricing, providers)
    unpriced = sum(1 for row in rows[1:] if row[1] != "<any>" and row[-1].startswith("UNPRICED"))
    parts = ["prices per 1M tokens, USD (media: per image, per hour of audio)", table(rows)]
    if unpriced:
        parts.append(f"{unpriced} configured target(s) have no price (see prices: in README)")
    if show_catalogue:
        parts += ["", "catalogue", table(catalogue_rows(pricing))]
    return "\n".join(parts), unpriced
