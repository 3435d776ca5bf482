"""The price catalogue, the operator's `prices` section, the unpriced policy and `interlock
prices`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.ops.cli import main
from core.providers.adapters.base import Target
from core.providers.adapters.presets import PRESETS
from core.spend.catalogue import load_catalogue
from core.spend.cost import Cost
from core.spend.pricing import DYNAMIC_PRICES, CataloguePricing, build_pricing
from core.spend.usage import UsageSplit
from shared.config import ProviderConfig, load_config
from shared.config_prices import parse_prices
from shared.configparse import ConfigError
from tests.support.providers import provider_of, providers_of

CATALOGUE = load_catalogue()
KINDS = {"anthropic", "gemini", "bedrock", "mock"}


def target(name: str, kind: str, model: str, **options: Any) -> Target:
    config = ProviderConfig(name, kind, None, ("k",), {}, None, True, options)
    return Target(provider_of(config), model, "k")


def test_every_entry_has_a_date_a_source_and_integer_prices() -> None:
    assert sum(len(models) for models in CATALOGUE.values()) > 50
    for family, models in CATALOGUE.items():
        assert family in KINDS or family in PRESETS, family  # a family a provider bills under
        for listed in models.values():
            entry = listed.entry
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.effective), listed
            assert entry.source.startswith("https://") or family == "mock", listed
            assert entry.priced, listed
            for price in (entry.input, entry.output, entry.cache_read, entry.per_image):
                assert price is None or (type(price) is int and price >= 0), listed
            chat = (entry.output or 0) > 0
            assert not chat or (entry.max_output or 0) > 0, f"{listed}: no output limit"


def test_anthropic_cache_prices_follow_the_published_multipliers() -> None:
    for family in ("anthropic", "bedrock"):
        for listed in CATALOGUE[family].values():
            entry = listed.entry
            if (
                not listed.model.removeprefix("global.")
                .removeprefix("anthropic.")
                .startswith("claude")
            ):
                continue
            assert entry.input is not None
            assert entry.cache_write_5m == entry.input * 5 // 4, listed
            assert entry.cache_write_1h == entry.input * 2, listed
            assert entry.cache_read == entry.input // 10, listed


def test_a_catalogue_entry_without_a_source_is_refused() -> None:
    text = b'{"families": {"x": {"models": {"m": {"input": 1, "effective": "2025-01-01"}}}}}'
    with pytest.raises(ConfigError, match=r"catalogue\.x\.m: every entry needs"):
        load_catalogue(text)
    with pytest.raises(ConfigError, match=r"catalogue\.x\.m\.input: expected a non-negative"):
        load_catalogue(b'{"families": {"x": {"models": {"m": {"input": 1.5}}}}}')


def test_operator_entries_override_the_catalogue_exactly() -> None:
    config = parse_prices(
        {
            "models": {
                "openai/gpt-4o": {
                    "input": "2.0",
                    "output": 8,
                    "cache_read": 0.5,
                    "effective": "2026-01-01",
                    "source": "contract 42",
                },
                "local/*": {"input": 0.05, "output": 0.1},
            }
        }
    )
    pricing = CataloguePricing(config, CATALOGUE)
    usage = UsageSplit(input=1000, cache_read=1000, output=1000)
    gpt = target("openai", "openai", "gpt-4o")
    # 1000*2 + 1000*0.5 + 1000*8 = 10500 (the catalogue's would be 2500 + 1250 + 10000)
    assert pricing.cost(gpt, usage) == Cost(10_500, "config:openai/gpt-4o@2026-01-01")
    assert pricing.price(gpt).overridden
    # A self-hosted host at cost, every model: 1000*0.05 + 1000*0.05 (read at input) + 1000*0.1
    local = target("local", "openai", "llama-3-70b", preset="vllm")
    assert pricing.cost(local, usage) == Cost(200, "config:local/*")
    # Other models of the same provider still come from the catalogue.
    assert pricing.price(target("openai", "openai", "gpt-4o-mini")).version == (
        "openai/gpt-4o-mini@2024-10-01"
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"unpriced": "free"}, r"prices\.unpriced: expected reserve or refuse"),
        ({"models": {"gpt-4o": {"input": 1}}}, r"prices\.models\.gpt-4o: expected <provider>/"),
        ({"models": {"a/b": {"input": 0.0000001}}}, r"prices\.models\.a/b\.input: expected a"),
        ({"models": {"a/b": {"input": -1}}}, r"prices\.models\.a/b\.input: expected a non-neg"),
        ({"models": {"a/b": {"input": 1.0, "typo": 1}}}, r"prices\.models\.a/b\.typo: unknown"),
        ({"models": {"a/b": {"input": 1, "unpriced": "refuse"}}}, r"a/b\.unpriced: only for"),
        ({"unpriced_reserve": "ten"}, r"prices\.unpriced_reserve: expected an amount"),
    ],
)
def test_bad_price_config_names_the_key(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_prices(raw)


def test_an_entry_for_an_unknown_provider_is_a_config_error(tmp_path: Path) -> None:
    path = _config_file(tmp_path, {"prices": {"models": {"nope/m": {"input": 1}}}})
    config = load_config(path, env={})
    with pytest.raises(ConfigError, match=r"prices\.models\.nope/m: no provider named 'nope'"):
        build_pricing(config, providers_of(config))


def test_unpriced_models_reserve_by_default_and_are_marked() -> None:
    pricing = CataloguePricing(parse_prices(None), CATALOGUE)
    unknown = target("openai", "openai", "gpt-unreleased")
    assert not pricing.refuses(unknown)
    assert pricing.cost(unknown, UsageSplit(input=10**6)) == Cost(10_000, None, unpriced=True)
    assert pricing.estimate(unknown, 10, 10) == Cost(10_000, None, unpriced=True, estimated=True)
    # The fixed charge is for work done: a request that used nothing (failed) costs nothing.
    assert pricing.cost(unknown, UsageSplit()) == Cost(0, None, unpriced=True)


def test_unpriced_policy_per_provider_and_per_model() -> None:
    config = parse_prices(
        {
            "unpriced": "refuse",
            "models": {
                "lab/*": {"unpriced": "reserve", "unpriced_reserve": "0.25"},
                "lab/risky": {"unpriced": "refuse"},
            },
        }
    )
    pricing = CataloguePricing(config, CATALOGUE)
    assert pricing.refuses(target("openai", "openai", "gpt-unreleased"))  # the default
    lab = target("lab", "openai", "llama", preset="vllm")
    assert not pricing.refuses(lab)
    assert pricing.cost(lab, UsageSplit(input=5)) == Cost(250_000, None, unpriced=True)
    assert pricing.refuses(target("lab", "openai", "risky", preset="vllm"))


def test_dynamic_names_are_cached_up_to_a_bound() -> None:
    pricing = CataloguePricing(parse_prices(None), CATALOGUE)
    provider = target("openai", "openai", "x").provider
    for i in range(DYNAMIC_PRICES + 50):
        pricing.cost(Target(provider, f"tenant-chosen-{i}", "k"), UsageSplit(input=1))
    assert len(pricing._prices) == DYNAMIC_PRICES


def _config_file(tmp_path: Path, extra: dict[str, Any]) -> Path:
    raw = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "mock": {"kind": "mock"},
            "lab": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mine": {"provider": "lab", "model": "my-finetune"},
        },
        **extra,
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cli_lists_prices_and_check_fails_on_an_unpriced_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_file(tmp_path, {})
    assert main(["--config", str(path), "prices"]) == 0
    assert main(["--config", str(path), "prices", "--check"]) == 1
    out = capsys.readouterr().out
    [mock] = [line for line in out.splitlines() if line.startswith("mock ")][:1]
    assert mock.split()[:4] == ["mock", "mock-1", "1.00", "2.00"]
    assert "mock/mock-1@2026-12-01" in mock and mock.endswith("catalogue")
    [lab] = [line for line in out.splitlines() if line.startswith("lab ")][:1]
    assert "my-finetune" in lab and lab.endswith("UNPRICED: reserve $0.01")
    assert "1 configured target(s) have no price" in out


def test_cli_check_passes_once_the_operator_prices_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = {"models": {"lab/my-finetune": {"input": 0.2, "output": "0.6", "source": "at cost"}}}
    path = _config_file(tmp_path, {"prices": prices})
    assert main(["--config", str(path), "prices", "--check", "--catalogue"]) == 0
    out = capsys.readouterr().out
    [lab] = [line for line in out.splitlines() if line.startswith("lab ")]
    assert lab.split()[:4] == ["lab", "my-finetune", "0.20", "0.60"]
    assert lab.endswith("overridden")
    assert "claude-sonnet-4-5" in out and "https://docs.anthropic.com" in out  # the catalogue


def test_check_covers_the_targets_of_named_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target only a routing policy's named route reaches is priced and checked like a
    model's (the cost strategy orders by those prices)."""
    prices = {"models": {"lab/my-finetune": {"input": 0.2, "output": "0.6", "source": "at cost"}}}
    routes = {"routes": {"side": {"targets": [{"provider": "lab", "model": "route-only"}]}}}
    path = _config_file(tmp_path, {"prices": prices, "routing": routes})
    assert main(["--config", str(path), "prices", "--check"]) == 1
    out = capsys.readouterr().out
    [lab] = [line for line in out.splitlines() if line.startswith("lab ") and "route-only" in line]
    assert lab.endswith("UNPRICED: reserve $0.01")
