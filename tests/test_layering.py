"""The tiers' import boundaries (README "How a request flows"): the edge never imports core/
and stays small for Lambda cold starts (no redis, boto3/botocore or OpenTelemetry); shared/
imports neither tier."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} must not be imported here")
        return None
sys.meta_path.insert(0, Block())
{body}
"""


def run_blocked(blocked: set[str], body: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.format(blocked=sorted(blocked), body=body)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_edge_imports_neither_core_nor_heavy_dependencies(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(
        '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", '
        '"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", '
        '"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    )
    raw = {
        "providers": {"m": {"kind": "mock"}},
        "auth": {"jwks_file": str(jwks)},
        "hop": {"secret": "s" * 40},
    }
    body = (
        "from shared.config import parse_config\n"
        "import shared.server  # the launcher the edge runs under\n"
        "from edge.app import create_app\n"
        f"create_app(parse_config({raw!r}, 'test', {{}}))\n"
        "print('edge ok')\n"
    )
    result = run_blocked({"core", "redis", "boto3", "botocore", "opentelemetry"}, body)
    assert result.returncode == 0, result.stderr
    assert "edge ok" in result.stdout


def test_shared_imports_neither_tier() -> None:
    modules = (
        "shared.config, shared.errors, shared.hop, shared.http, shared.periodic, "
        "shared.server, shared.server_protocol"
    )
    body = f"import {modules}\nprint('ok')"
    result = run_blocked({"core", "edge"}, body)
    assert result.returncode == 0, result.stderr


# The core's config sections: the edge's loader (shared.config_edge) never parses them, so a
# cold edge must not import their modules (issue 17: Lambda cold start). shared.config itself
# is the cheap front both tiers import names from.
CORE_ONLY_CONFIG = frozenset(
    f"shared.{name}"
    for name in (
        "config_full",
        "config_budgets",
        "config_cache",
        "config_conditions",
        "config_core",
        "config_ledger",
        "config_metrics",
        "config_models",
        "config_prices",
        "config_resilience",
        "config_routing",
        "config_strategy",
        "config_tracing",
    )
)


def imported_by(body: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has loaded after running `body` (from `cwd`, with the
    repository importable): what a cold start pays for."""
    code = f"{body}\nimport sys\nprint('\\n'.join(sys.modules))"
    environ = {**(env or {}), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_edge_cold_start_loads_only_what_it_reads(tmp_path: Path) -> None:
    """The edge as it starts (its launcher, shared.server, imports shared.config) with
    embedded defaults (no file): neither the core's config modules nor yaml are loaded; given a
    file, yaml is (the check above can fail), and a core name still resolves on demand."""
    env = {"INTERLOCK_HOME": str(tmp_path), "INTERLOCK_HOP_SECRET": "s" * 40}
    (tmp_path / "jwks.json").write_text(
        '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", '
        '"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", '
        '"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    )
    cold = imported_by("import shared.server, edge.main", tmp_path, env)
    assert "edge.app" in cold and "shared.config_edge" in cold
    assert not cold & CORE_ONLY_CONFIG and "yaml" not in cold
    (tmp_path / "interlock.yaml").write_text("edge:\n  core_timeout: 60s\n")
    assert "yaml" in imported_by("import edge.main", tmp_path, env)
    core = imported_by("from shared.config import Config, ProviderConfig", tmp_path, env)
    assert {"shared.config_full", "shared.config_core"} <= core


FETCH = """
import asyncio
from pathlib import Path
from edge.refresh import Refresher, Source
source = Source("JWKS", "keys", {url!r}, "auth.jwks_url", Path("x"), "auth.jwks_file", 99, 0)
refresher = Refresher(source, lambda text, key: text, lambda document: True)
async def main() -> None:
    try:
        await refresher.start()
    except Exception:
        pass
    await refresher.stop()
asyncio.run(main())
"""


def test_document_refreshers_import_aiohttp_only_to_fetch(tmp_path: Path) -> None:
    """JWKS and revocation lists read from files need no aiohttp; a URL fetch loads it (a
    closed loopback port: the fetch fails, the import has happened)."""
    body = "import edge.jwks, edge.revocation\n" + FETCH.format(url=None)
    assert "aiohttp" not in imported_by(body, tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/jwks.json"
    assert "aiohttp" in imported_by(FETCH.format(url=url), tmp_path)
