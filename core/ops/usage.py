"""`interlock usage`: the usage API's report, read straight from the ledger store the config
names (`ledger.url`), as an operator (every tenant unless `--tenant`).

The options are the API's parameters, parsed and rendered by the same code (core.api.usage),
so the CLI and `GET /v1/usage` can never disagree; every page is followed to the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from core.api.usage import (
    METRICS,
    from_store_error,
    parse_query,
    read_usage,
    row_fields,
    to_csv,
)
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


def _option(message: str, param: str) -> str:
    """An API error message ("<param>: why") as the CLI's ("--<option>: why")."""
    return "--" + param.replace("_", "-") + message.removeprefix(param)


def report(config: Config, params: dict[str, str], as_csv: bool) -> str:
    """The report; ValueError (the CLI's exit 2) naming the option that is wrong, or
    ConnectionError (exit 2 too) when the store cannot answer: its class only, since a
    driver's message may quote the URL, which may carry a password."""
    try:
        query = parse_query(params, None, time.time())
    except GatewayError as error:
        raise ValueError(_option(error.message, error.param or "")) from None
    try:
        page, totals = asyncio.run(_read_all(config, query))
    except Exception as error:
        known = from_store_error(error) if isinstance(error, ValueError) else None
        if known is not None:  # the store's own query rules, e.g. a tag on a raw range
            raise ValueError(_option(known.message, known.param or "")) from None
        why = type(error).__name__
        raise ConnectionError(f"the ledger store is unavailable ({why})") from None
    if as_csv:
        return to_csv(query, page).rstrip("\n")
    header = [*query.group_by, *METRICS]
    rows = [[str(value) for value in row_fields(row).values()] for row in page.rows]
    total = row_fields(totals) if totals is not None else dict.fromkeys(METRICS, 0)
    footer = ["total", *[""] * (len(query.group_by) - 1)] if query.group_by else []
    footer += [str(total[name]) for name in METRICS]
    return table([header, *rows, footer])
