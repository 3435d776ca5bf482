"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, for the
dashboard's browser tests; screenshots go to a directory kept as the tests' artifacts
(INTERLOCK_ARTIFACTS, else a temporary directory named in the test output)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def chrome(width: int = 1366, height: int = 900) -> Any:
    """A headless Chromium; the test is skipped only when neither browser nor driver is
    installed (.ci/run installs both, so CI always runs it)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        if os.environ.get("CI"):  # .ci/run installs both: missing there is a breakage
            pytest.fail("chromium or chromium-driver is missing on CI")
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("INTERLOCK_ARTIFACTS")
    path = Path(named) / "dashboard" if named else tmp_path_factory.mktemp("dashboard-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def until(check: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    """Polls `check` until it returns a truthy value (never sleeps blindly)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # a stale element while the page redraws: ask again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def driver_session(width: int = 1366, height: int = 900) -> Iterator[Any]:
    driver = chrome(width, height)
    try:
        yield driver
    finally:
        driver.quit()
