"""What one image costs, by the quality and size it was made at.

Providers bill images per image, at a price that depends on both: OpenAI's dall-e-3 by quality
(standard, hd) and exact size, gpt-image-1 by quality (low, medium, high) and size, Bedrock's
Titan and Nova Canvas by quality (standard, premium) and a size bracket ("up to 1024 x 1024").
One rule covers them all. A price entry lists rows "<quality>/<W>x<H>"
(shared.config_prices.ImagePrice), either part `*`; an image of quality q and size s costs:

1. the rows of quality q (skipped when q is unknown), then those of quality `*`: among them,
   the row of exactly size s, else the smallest row whose pixel count covers s (a bracket:
   Bedrock's "up to"), else the `*` size row, else the largest row (a size above every
   bracket is billed at the top one); an unknown size takes only the `*` size row;
2. when no row answers: the entry's `per_image`, the model's default image.

Quality `auto` and an unknown size are unknown: providers bill what they actually made, which
gpt-image-1 reports in its answer (the translators put the reported quality and size in the
usage, else the requested ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.spend.usage import UsageSplit
from shared.config_prices import ImagePrice

ANY = "*"
MAX_REQUESTED = 10  # images one request may ask for (the images API's own limit)
UNKNOWN_QUALITIES = ("", "auto", ANY)
_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


@dataclass(frozen=True, slots=True)
class ImagePrices:
    """An entry's per-image prices, sorted for the lookup above (resolved once per target)."""

    default: int  # micro-dollars per image when no row answers
    rows: tuple[ImagePrice, ...] = ()  # sorted by quality, then pixel count

    @classmethod
    def of(cls, default: int | None, rows: Iterable[ImagePrice]) -> ImagePrices:
        ordered = sorted(rows, key=lambda r: (r.quality, r.area, r.width))
        return cls(default or 0, tuple(ordered))

    @property
    def listed(self) -> bool:
        return bool(self.rows) or self.default > 0

    def price(self, quality: str, size: str) -> int:
        """Micro-dollars for one image of `quality` and `size` (either may be "")."""
        if not self.rows:
            return self.default
        wanted = _size(size)
        known = quality not in UNKNOWN_QUALITIES
        for q in (quality, ANY) if known else (ANY,):
            rows = [r for r in self.rows if r.quality == q]
            if rows:
                found = _pick(rows, wanted)
                if found is not None:
                    return found
        return self.default


def _size(text: str) -> tuple[int, int] | None:
    match = _SIZE.fullmatch(text)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def _pick(rows: list[ImagePrice], size: tuple[int, int] | None) -> int | None:
    """The rows of one quality (sorted by pixel count): exact, covering, `*`, largest."""
    anysize = next((r.price for r in rows if r.area == 0), None)
    sized = [r for r in rows if r.area > 0]
    if size is None or not sized:
        return anysize
    for r in sized:
        if (r.width, r.height) == size:
            return r.price
    area = size[0] * size[1]
    for r in sized:
        if r.area >= area:
            return r.price
    return anysize if anysize is not None else sized[-1].price


def requested_images(payload: Mapping[str, Any]) -> UsageSplit:
    """The images an images request asks for (`n`, `quality`, `size` as validated by
    core.api.images.request), as units for Pricing.estimate: what a budget reserves before
    the call. The quality is the client's word (OpenAI's); an entry that lists only the
    provider's own (Bedrock's premium) prices it at its `*` rows."""
    n = payload.get("n")
    count = n if type(n) is int and 1 <= n <= MAX_REQUESTED else 1
    wanted = {"images": count, "image_quality": payload.get("quality")}
    return UsageSplit.from_usage({**wanted, "image_size": payload.get("size")})
