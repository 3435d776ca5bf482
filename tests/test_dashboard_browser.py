"""The dashboard in a real headless Chromium (Selenium, Debian's chromium and chromedriver)
against a running edge and core with a seeded ledger (tests/support/dashboard_stack.py): the
charts draw on canvas with the series the API has, the totals shown equal the API's, filters
and the stack-by choice change what is shown, a tenant token sees only its own data and is
refused the operator view, the layout fits a phone, and a fresh `interlock up` (make run)
shows non-empty charts after a few requests. Screenshots are saved as artifacts
(INTERLOCK_ARTIFACTS/dashboard, else a temporary directory)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import raw
from tests.support.browser import artifacts_dir, driver_session, until
from tests.support.dashboard_stack import LIVE, SEEDED, B, admin_token, dashboard_stack, get
from tests.support.ledger_load import ledger_rows
from tests.support.net import free_port
from tests.support.stack import Stack
from tests.support.up import BANNER_END, read_until, start_up, up_env

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from dashboard_stack(tmp_path_factory.mktemp("dashboard-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from driver_session()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = artifacts_dir(tmp_path_factory)
    print(f"dashboard screenshots: {path}")
    return path


def loaded(browser: Any, before: str | None = None) -> tuple[int, int]:
    """Waits for the page to finish a load newer than `before`; the range it showed."""
    done = until(
        lambda: (
            (mark := browser.execute_script("return document.body.dataset.loaded || ''"))
            and mark != before
            and mark
        ),
        what="the dashboard to load",
    )
    assert done
    start, end, _grain = browser.execute_script("return document.body.dataset.range").split(",")
    return int(start), int(end)


def open_page(browser: Any, url: str, token: str, query: str = "") -> None:
    browser.get("about:blank")  # a new document, whatever the last URL was
    browser.get(f"{url}/dashboard/{query}#token={token}")


def change(browser: Any, action: str) -> tuple[int, int]:
    """Runs `action` (JS) that triggers a reload, and waits for the new load."""
    before = browser.execute_script("return document.body.dataset.loaded")
    browser.execute_script(action)
    return loaded(browser, before)


def shown(browser: Any, name: str) -> str:
    text: str = browser.execute_script(
        f"return document.querySelector('[data-total=\"{name}\"]').textContent"
    )
    return text


def series(browser: Any, panel: str) -> list[str]:
    names: str = browser.execute_script(
        f"const p = document.querySelector('#{panel} .plot'); return p ? p.dataset.series : ''"
    )
    return names.split("\n") if names else []


def painted(browser: Any, panel: str) -> int:
    """Pixels of the chart's canvas in its first series' colour (#2d6cdf; axes and grid are
    grey): the bars or line actually drawn, not the frame around them."""
    count: int = browser.execute_script(
        f"""const c = document.querySelector('#{panel} canvas');
        if (!c) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {{
          if (d[i + 3] > 200 && Math.abs(d[i] - 45) < 24 && Math.abs(d[i + 1] - 108) < 24
              && Math.abs(d[i + 2] - 223) < 24) n++;
        }}
        return n;"""
    )
    return count


def column(browser: Any, selector: str, index: int) -> list[str]:
    """The text of cell `index` of each row the selector finds."""
    found: list[str] = browser.execute_script(
        f"return [...document.querySelectorAll('{selector}')]"
        f".map(r => r.children[{index}].textContent)"
    )
    return found


def ranked(rows: list[dict[str, Any]], key: str) -> list[str]:
    return [r[key] for r in sorted(rows, key=lambda r: (-r["cost_micros"], r[key]))][:10]


def set_input(selector: str, value: str) -> str:
    return f"document.querySelector('{selector}').value = '{value}';"


SUBMIT = "document.querySelector('#controls').requestSubmit();"


def test_operator_view_draws_what_the_api_says_and_filters_change_it(
    stack: Stack, browser: Any, shots: Path
) -> None:
    token = admin_token(stack)
    open_page(browser, stack.edge_url, token)
    loaded(browser)
    start, end = change(browser, set_input("#range", "30d") + SUBMIT)
    assert end - start == 30 * 86400
    api = get(stack, "/v1/usage", token, start=start, end=end, group_by="day,provider").json()
    totals = api["totals"]
    rows = ledger_rows(stack.config.ledger.url, SEEDED + len(LIVE))
    assert totals["requests"] == len([r for r in rows if start <= r["ts"] < end]) > SEEDED * 0.9
    assert shown(browser, "cost") == "$" + totals["cost"]
    assert shown(browser, "requests") == f"{totals['requests']:,}"
    assert shown(browser, "output_tokens") == f"{totals['output_tokens']:,}"
    providers = {row["provider"] for row in api["data"]}
    for panel in ("p-spend", "p-tokens"):
        assert set(series(browser, panel)) == providers, panel
        assert painted(browser, panel) > 2000, panel
    assert series(browser, "p-rps") == ["requests/s"] and painted(browser, "p-rps") > 100
    tenants = get(stack, "/v1/usage", token, start=start, end=end, group_by="tenant").json()
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#p-tenants [data-bar]')].map(e => e.dataset.bar)"
    )
    assert bars == ranked(tenants["data"], "tenant")
    browser.set_window_size(1366, 3200)
    browser.save_screenshot(str(shots / "operator-30d.png"))

    # A filter changes what is shown, to what the API says for it.
    change(browser, set_input("#f-provider", "openai") + SUBMIT)
    only = get(stack, "/v1/usage", token, start=start, end=end, provider="openai").json()
    assert 0 < only["totals"]["requests"] < totals["requests"]
    assert shown(browser, "requests") == f"{only['totals']['requests']:,}"
    assert shown(browser, "cost") == "$" + only["totals"]["cost"]
    assert series(browser, "p-spend") == ["openai"]
    change(browser, set_input("#stack", "model") + SUBMIT)
    assert series(browser, "p-spend") == ["gpt-x"]
    log_providers = column(browser, "#p-log tbody tr", 4)
    assert log_providers and set(log_providers) == {"openai"}
    browser.save_screenshot(str(shots / "operator-filtered.png"))


def test_request_log_links_a_request_to_its_trace_and_csv_matches_the_api(
    stack: Stack, browser: Any, shots: Path
) -> None:
    token = admin_token(stack)
    open_page(browser, stack.edge_url, token, "?view=operator")
    start, end = loaded(browser)
    first = browser.execute_script(
        "return document.querySelector('#p-log [data-request]').dataset.request"
    )
    newest = get(stack, "/v1/dashboard/requests", token, start=start, end=end, limit=1).json()
    assert first == newest["data"][0]["request_id"]
    browser.execute_script("document.querySelector('#p-log [data-request]').click()")
    detail = until(
        lambda: browser.execute_script(
            "const d = document.querySelector('#p-log tr.detail'); return d && d.textContent"
        ),
        what="the request's detail row",
    )
    assert "trace id:" in detail
    trace = newest["data"][0].get("trace_id")
    assert (trace in detail) if trace else ("no trace ids" in detail or "none recorded" in detail)
    if trace:  # with a trace viewer's URL set, the trace id is a link to it
        browser.execute_script(
            set_input("#l-trace-url", "https://traces.example/trace/{trace_id}")
            + "document.querySelector('#log-filters').requestSubmit();"
        )
        link = until(
            lambda: browser.execute_script(
                "const b = document.querySelector('#p-log [data-request]'); if (!b) return null;"
                "if (!document.querySelector('#p-log tr.detail')) b.click();"
                "const a = document.querySelector('#p-log a[data-trace]'); return a && a.href"
            ),
            what="the trace link",
        )
        assert link == f"https://traces.example/trace/{trace}"
    assert "hello from" not in browser.page_source  # metadata only, never prompt text
    # The page's CSV export is the usage API's CSV (every page of it).
    text = browser.execute_async_script(
        f"const done = arguments[0]; Api.usageCsv({{start: {start}, end: {end}, "
        "group_by: 'hour,provider'}).then(done, (e) => done('failed: ' + e.message));"
    )
    api = get(
        stack, "/v1/usage", token, start=start, end=end, group_by="hour,provider", format="csv"
    )
    assert text == api.body.decode() and len(list(csv.DictReader(io.StringIO(text)))) > 0
    browser.save_screenshot(str(shots / "operator-log.png"))


def test_a_tenant_sees_only_its_own_data_and_is_refused_the_operator_view(
    stack: Stack, browser: Any, shots: Path
) -> None:
    token = stack.token(B)
    open_page(browser, stack.edge_url, token)
    loaded(browser)
    start, end = change(browser, set_input("#range", "30d") + SUBMIT)
    mine = get(stack, "/v1/usage", token, start=start, end=end).json()["totals"]
    everyone = get(stack, "/v1/usage", admin_token(stack), start=start, end=end).json()["totals"]
    assert 0 < mine["requests"] < everyone["requests"]
    assert shown(browser, "requests") == f"{mine['requests']:,}"
    assert shown(browser, "cost") == "$" + mine["cost"]
    assert not browser.find_element("id", "p-tenants").is_displayed()
    assert not browser.find_element("id", "p-circuits").is_displayed()
    assert not browser.find_element("id", "views").is_displayed()
    ids = browser.execute_script(
        "return [...document.querySelectorAll('#p-log [data-request]')].map(e => e.dataset.request)"
    )
    rows = ledger_rows(stack.config.ledger.url, SEEDED + len(LIVE))
    theirs = {r["request_id"] for r in rows if r["tenant"] == B}
    assert ids and set(ids) <= theirs
    budgets = column(browser, "#p-budgets tbody tr", 0)
    assert budgets == ["beta-monthly"]
    assert browser.find_element("id", "p-limits").is_displayed()
    browser.save_screenshot(str(shots / "tenant-30d.png"))

    open_page(browser, stack.edge_url, token, "?view=operator")
    refused = until(
        lambda: (
            browser.find_element("id", "refused").is_displayed()
            and browser.find_element("id", "refused-text").text
        ),
        what="the refusal",
    )
    assert "operator token" in refused
    assert not browser.find_element("id", "main").is_displayed()
    browser.save_screenshot(str(shots / "tenant-refused-operator.png"))


def test_empty_range_and_phone_width(stack: Stack, browser: Any, shots: Path) -> None:
    open_page(browser, stack.edge_url, stack.token("nobody"))
    loaded(browser)
    empty = browser.execute_script("return document.querySelector('#p-spend .empty').textContent")
    assert "No data" in empty and shown(browser, "requests") == "0"
    browser.set_window_size(390, 844)
    open_page(browser, stack.edge_url, admin_token(stack))
    loaded(browser)
    width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], width  # nothing wider than the phone's screen
    canvas = browser.execute_script("return document.querySelector('#p-spend canvas').clientWidth")
    assert 0 < canvas <= width[1]
    browser.set_window_size(390, 3200)
    browser.save_screenshot(str(shots / "phone.png"))
    browser.set_window_size(1366, 900)


def test_a_fresh_make_run_shows_non_empty_charts(tmp_path: Path, browser: Any, shots: Path) -> None:
    edge_port = free_port()
    env = up_env(edge_port)
    process = start_up(tmp_path, env)
    try:
        lines = read_until(process, BANNER_END)
        operator = next(line for line in lines if line.startswith("dashboard (operator):"))
        url = operator.split(": ", 1)[1].strip()
        assert url.startswith(f"http://127.0.0.1:{edge_port}/dashboard/#token=")
        export = next(line for line in lines if line.startswith("export INTERLOCK_TOKEN="))
        curl = next(line for line in lines if line.startswith("curl "))
        for _ in range(3):  # the quickstart's own example request
            subprocess.run(
                ["bash", "-c", f"{export}\n{curl}"],
                env=env,
                check=True,
                timeout=30,
                capture_output=True,
            )
        token = url.split("#token=", 1)[1]
        edge = f"http://127.0.0.1:{edge_port}"
        until(  # the ledger writes in batches: the page reads what it holds
            lambda: (
                raw.request(
                    "GET", f"{edge}/v1/usage", headers={"authorization": f"Bearer {token}"}
                ).json()["totals"]["requests"]
                >= 3
            ),
            what="the requests in the ledger",
        )
        browser.get("about:blank")
        browser.get(url)
        loaded(browser)
        assert shown(browser, "requests") == "3"
        assert series(browser, "p-spend") == ["mock"] and painted(browser, "p-spend") > 200
        browser.save_screenshot(str(shots / "make-run.png"))
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


def test_panels_show_a_loading_state_until_their_answer_comes(stack: Stack, browser: Any) -> None:
    open_page(browser, stack.edge_url, stack.token(B))
    loaded(browser)
    browser.execute_cdp_cmd("Network.enable", {})
    slow = {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", slow)
    try:
        before = browser.execute_script("return document.body.dataset.loaded")
        browser.execute_script(SUBMIT)
        loading = browser.execute_script(
            "return [...document.querySelectorAll('.body.loading')].map(e => e.parentNode.id)"
        )
        assert {"p-spend", "p-tokens", "p-log", "p-budgets"} <= set(loading)
    finally:
        fast = {**slow, "latency": 0}
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", fast)
    loaded(browser, before)
    assert browser.execute_script("return document.querySelectorAll('.body.loading').length") == 0
