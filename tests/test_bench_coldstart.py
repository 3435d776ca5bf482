"""The cold-start bench (tests.bench.coldstart): the projection without a package (what leaves
with it is read from the nesting of `-X importtime` output), and imports timed from bytecode."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bench import coldstart
from tests.bench.stack import bytecode_env, fresh_python

# A module is listed after the modules its import pulled in, one level deeper (post-order).
TRACE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |       multidict._abc
import time:       200 |        300 |     multidict
import time:        50 |         50 |     email.utils
import time:       400 |        750 |   aiohttp.client
import time:       300 |       1050 | aiohttp
import time:        80 |         80 |   yarl._url
import time:        90 |        170 | yarl
import time:        70 |         70 |   orjson
import time:       500 |        570 | edge.app
"""


def test_imported_within_takes_a_package_and_all_it_first_imported() -> None:
    inside = coldstart.imported_within(TRACE, "aiohttp")
    assert inside == {"aiohttp", "aiohttp.client", "multidict", "multidict._abc", "email.utils"}
    # Imported by someone else (first, or only): stays counted.
    assert coldstart.imported_within(TRACE, "yarl") == {"yarl", "yarl._url"}
    assert coldstart.imported_within(TRACE, "httpx") == set()


def test_the_import_snippet_skips_what_is_not_installed() -> None:
    namespace: dict[str, object] = {}
    exec(coldstart._import_all(["json", "no_such_module_here"]), namespace)
    assert namespace["name"] == "no_such_module_here"


def test_timed_imports_run_from_bytecode_even_where_the_environment_forbids_writing_it(
    tmp_path: Path,
) -> None:
    """A cold Lambda loads the zip's precompiled .pyc; timing our imports with the compiler in
    them (PYTHONDONTWRITEBYTECODE, set in this workplace) would not be the cold start."""
    (tmp_path / "bench_bc_probe.py").write_text("VALUE = 1\n", encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tmp_path)}
    with bytecode_env(env) as env_pyc:
        cache = Path(env_pyc["PYTHONPYCACHEPREFIX"])
        assert "PYTHONDONTWRITEBYTECODE" not in env_pyc
        assert fresh_python(["-c", "import bench_bc_probe"], env_pyc).returncode == 0
        assert list(cache.rglob("bench_bc_probe*.pyc"))  # the second import loads this
    assert not cache.exists()
    assert not (tmp_path / "__pycache__").exists()  # nothing left beside the sources
