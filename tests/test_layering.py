"""The tiers' import boundaries (README "How a request flows"): the edge never imports core/
and stays small for Lambda cold starts (no redis, boto3/botocore or OpenTelemetry); shared/
imports neither tier."""

from __future__ import annotations

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
