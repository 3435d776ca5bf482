"""`interlock usage`: the usage API's report, read straight from the ledger store the config
names (`ledger.url`), as an operator (every tenant unless `--tenant`).

The options are the API's parameters, parsed and rendered by the same code (core.api.usage),
so the CLI and `GET /v1/usage` can never disagree; every page is followed to the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from core.api.usage import METRICS, parse_query, read_usage, row_fields, to_csv
from core.ledger import store_for
from core.ledger.store import UsagePage, UsageQuery, UsageRow
from core.ops.prices import table
from shared.config import Config
from shared.errors import GatewayError

# CLI option -> API parameter (the option names are the parameters with dashes).
OPTIONS = ("start", "end", "group_by", "model", "provider", "served_model", "tag", "tenant")


async def _read_all(config: Config, query: UsageQuery) -> tuple[UsagePage, UsageRow | None]:
    store = store_for(config.ledger.url, config.ledger.partition)
    await store.open()
    try:
        page, totals = await read_usage(store, query)
        rows = list(page.rows)
        while page.next_cursor is not None:
            page, _ = await read_usage(store, replace(query, cursor=page.next_cursor))
            rows += page.rows
        return UsagePage(rows, None), totals
    finally:
        await store.close()


def report(config: Config, params: dict[str, str], as_csv: bool) -> str:
    """The report; ValueError (the CLI's exit 2) naming the option that is wrong."""
    try:
        query = parse_query(params, None, time.time())
    except GatewayError as error:
        param = error.param or ""
        option = "--" + param.replace("_", "-")
        raise ValueError(option + error.message.removeprefix(param)) from None
    page, totals = asyncio.run(_read_all(config, query))
    if as_csv:
        return to_csv(query, page).rstrip("\n")
    header = [*query.group_by, *METRICS]
    rows = [[str(value) for value in row_fields(row).values()] for row in page.rows]
    total = row_fields(totals) if totals is not None else dict.fromkeys(METRICS, 0)
    footer = ["total", *[""] * (len(query.group_by) - 1)] if query.group_by else []
    footer += [str(total[name]) for name in METRICS]
    return table([header, *rows, footer])
