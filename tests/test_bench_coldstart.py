"""The cold-start bench's projection without a package (tests.bench.coldstart): what leaves
with it is read from the nesting of `-X importtime` output."""

from __future__ import annotations

from tests.bench import coldstart

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
