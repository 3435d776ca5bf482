"""interlock.yaml: one file configures edge, core, providers, models and routes.

Loaded once at start-up into frozen dataclasses; nothing here runs per request. Both tiers
import their config names from here. Importing this module is cheap on purpose: the edge's names
come from the edge's own modules (shared/config_edge.py), and the core's (`Config`, providers,
models, routing, prices, budgets ...: shared/config_full.py and the section modules) are
imported on first use of one of them. An edge process, which imports this module through its
launcher (shared/server.py), so never loads the core's sections: a Lambda cold start does not
pay for them.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from shared.config_edge import (
    DEFAULT_CORE_PORT,
    DEFAULT_EDGE_PORT,
    AuthConfig,
    EdgeConfig,
    EdgeTierConfig,
    HopConfig,
    RouteConfig,
    load_edge_config,
)
from shared.config_file import PathLike, errors_located, read_config_file
from shared.config_server import ServerConfig
from shared.configparse import ConfigError

if TYPE_CHECKING:
    from shared.config_budgets import BudgetConfig
    from shared.config_core import DEFAULT_CORE_ADMIN_PORT, CoreConfig, ProviderConfig, RateLimit
    from shared.config_full import (
        Config,
        LimitsConfig,
        StateConfig,
        embedded_defaults,
        parse_config,
    )
    from shared.config_models import ModelConfig, TargetConfig
    from shared.config_resilience import ResilienceConfig
    from shared.config_routing import RoutingConfig

__all__ = [
    "DEFAULT_CORE_ADMIN_PORT",
    "DEFAULT_CORE_PORT",
    "DEFAULT_EDGE_PORT",
    "AuthConfig",
    "BudgetConfig",
    "Config",
    "ConfigError",
    "CoreConfig",
    "EdgeConfig",
    "EdgeTierConfig",
    "HopConfig",
    "LimitsConfig",
    "ModelConfig",
    "ProviderConfig",
    "RateLimit",
    "ResilienceConfig",
    "RouteConfig",
    "RoutingConfig",
    "ServerConfig",
    "StateConfig",
    "TargetConfig",
    "embedded_defaults",
    "load_config",
    "load_edge_config",
    "parse_config",
]

# The core's names and the module each is imported from when first asked for (PEP 562).
_CORE_NAMES = {
    "BudgetConfig": "shared.config_budgets",
    "DEFAULT_CORE_ADMIN_PORT": "shared.config_core",
    "CoreConfig": "shared.config_core",
    "ProviderConfig": "shared.config_core",
    "RateLimit": "shared.config_core",
    "Config": "shared.config_full",
    "LimitsConfig": "shared.config_full",
    "StateConfig": "shared.config_full",
    "embedded_defaults": "shared.config_full",
    "parse_config": "shared.config_full",
    "ModelConfig": "shared.config_models",
    "TargetConfig": "shared.config_models",
    "ResilienceConfig": "shared.config_resilience",
    "RoutingConfig": "shared.config_routing",
}


def __getattr__(name: str) -> Any:
    """A core name, imported on first use and kept here (later look-ups are plain ones)."""
    module = _CORE_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_config(path: PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the config file named by `path`, $INTERLOCK_CONFIG, ./interlock.yaml, or defaults.
    Every section is read and checked: what the core and the CLI use (the edge has its own
    loader, `load_edge_config`, that reads only the edge's sections)."""
    from shared.config_full import embedded_defaults, parse_config

    environ = dict(os.environ) if env is None else env
    found = read_config_file(path, environ)
    if found is None:
        return parse_config(embedded_defaults(environ), "embedded defaults", environ)
    with errors_located(found[1]):  # the error names the key; this adds its line in the file
        return parse_config(*found, environ)
