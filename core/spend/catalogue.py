"""The price catalogue shipped with interlock (catalogue.json) and how model ids find their entry.

The catalogue is grouped by provider family: the provider's kind (anthropic, gemini, bedrock,
mock), the preset for kind `openai` (openai, deepseek, mistral, ...), and `openai` for Azure
deployments (Azure bills OpenAI's list prices; an operator entry overrides that). Model ids
arrive in many spellings of one model: dated snapshots (`claude-sonnet-4-5-20250929`,
`gpt-4o-2024-08-06`, Vertex's `claude-sonnet-4-5@20250929`), Bedrock ids with a version
(`anthropic.claude-sonnet-4-5-20250929-v1:0`), a cross-region prefix (`us.`, `eu.`, `global.`)
or a whole ARN. `candidates` yields the id and then shorter forms, stripping only such
date/version/region decorations (never a word that names another model: `gpt-4o-mini` never
becomes `gpt-4o`), so the most specific entry wins (`global.anthropic.claude-sonnet-4-5`, billed
at the list price, before `anthropic.claude-sonnet-4-5`, billed 10% above it).

Read once at start-up (core.spend.pricing builds the lookup from it); nothing here runs per
request except `candidates`, and only the first time a target is priced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import orjson

from core.providers.provider import Provider
from shared.config_prices import PriceEntry, micros, parse_entry
from shared.configparse import ConfigError

_BEDROCK_GEO = frozenset(("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"))
# Decorations a model id may carry after the name of its model, stripped one at a time.
_SUFFIX = re.compile(
    r"(?:-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8}|@latest|-latest|-v\d+|:\d+|-\d{3}"
    r"|-preview-\d{2}-\d{2}|-exp(?:-\d{4})?)$"
)


@dataclass(frozen=True, slots=True)
class Listed:
    """A catalogue entry with the names it is filed under."""

    family: str
    model: str
    entry: PriceEntry


Catalogue = dict[str, dict[str, Listed]]  # family -> lower-cased model id -> entry


def load_catalogue(text: bytes | None = None) -> Catalogue:
    """The shipped catalogue (or `text`), checked as strictly as the operator's entries."""
    raw = text if text is not None else _shipped()
    try:
        families = orjson.loads(raw)["families"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ConfigError("core/spend/catalogue.json: not a price catalogue") from None
    catalogue: Catalogue = {}
    for family, body in families.items():
        models = catalogue.setdefault(family, {})
        for model, raw_entry in body["models"].items():
            where = f"catalogue.{family}.{model}"
            entry = parse_entry(raw_entry, where, micros)
            if not entry.effective or not entry.source:
                raise ConfigError(f"{where}: every entry needs an effective date and a source")
            models[model.lower()] = Listed(family, model, entry)
    return catalogue


def _shipped() -> bytes:
    return resources.files("core.spend").joinpath("catalogue.json").read_bytes()


def family_of(provider: Provider) -> str | None:
    """The catalogue family a provider bills under; None for hosts without public prices
    (a generic OpenAI-compatible host)."""
    if provider.kind == "azure":
        return "openai"
    if provider.kind == "openai":
        preset = getattr(provider.settings, "preset", None)
        name = getattr(preset, "name", None)
        return name if isinstance(name, str) else None
    return provider.kind


def candidates(model: str) -> Iterator[str]:
    """The model id, then shorter forms without its decorations (lower case). A Bedrock
    cross-region profile (`global.`, `us.`, ...) is tried with its prefix first, then without:
    AWS bills Claude 4.5 and later at the list price only through `global.` profiles, and 10%
    more through geographic and in-region ones, so `global.<model>` has its own entry."""
    name = model.strip().lower()
    if name.startswith("arn:"):  # arn:aws:bedrock:<region>:<account>:<type>/<id>
        name = name.rpartition("/")[2]
    name = name.removeprefix("models/")  # Gemini's resource names
    head, dot, rest = name.partition(".")
    if dot and head in _BEDROCK_GEO and "." in rest:
        yield from _shorter(name)
        name = rest
    yield from _shorter(name)


def _shorter(name: str) -> Iterator[str]:
    yield name
    while (match := _SUFFIX.search(name)) is not None and match.start() > 0:
        name = name[: match.start()]
        yield name


def find(catalogue: Catalogue, family: str | None, model: str) -> Listed | None:
    """The most specific catalogue entry for `model` in `family`."""
    models = catalogue.get(family) if family is not None else None
    if not models:
        return None
    for name in candidates(model):
        listed = models.get(name)
        if listed is not None:
            return listed
    return None
