"""Budget alerts: each threshold (a percentage of a budget's limit) fires once per period
across replicas: the first replica to see settled spend cross it claims the
(budget, period, threshold) key (SET NX, for the rest of the period) and only it logs, counts
and posts the webhook. Each replica also remembers what it has seen fired, so a crossed
threshold costs one claim per replica, not one per settlement.

Webhooks are sent by one background worker from a bounded queue (full: the alert is logged and
counted, never blocks a request), POSTed as JSON with retries and backoff, redirects refused
(the URL is operator config, but a redirect could still point anywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import orjson

from core.budgets.periods import Window
from core.state.store import Store
from shared.config import BudgetConfig

log = logging.getLogger("interlock.budgets")

QUEUE_SIZE = 1000
ATTEMPTS = 4
BACKOFF_S = 0.5  # doubled after each failed attempt
TIMEOUT_S = 5.0
MAX_REMEMBERED = 10_000
alerts_total: dict[tuple[str, int], int] = {}  # (budget, threshold) -> alerts fired here


class Webhooks:
    """Posts alerts from a bounded queue, in the background."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.failed = 0

    def post(self, url: str, body: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((url, orjson.dumps(body)))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("budget alert webhook queue full: alert not posted")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            while True:
                url, body = await self._queue.get()
                await self._send(session, url, body)

    async def _send(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        headers = {"content-type": "application/json"}
        for attempt in range(ATTEMPTS):
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    if 200 <= response.status < 300:
                        return
                    if 300 <= response.status < 500 and response.status != 429:
                        break  # a redirect or a refusal: retrying will not help
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(BACKOFF_S * 2**attempt)
        self.failed += 1
        log.warning("budget alert webhook failed after %d attempts", ATTEMPTS)


class Alerts:
    def __init__(self, store: Store, webhooks: Webhooks | None = None) -> None:
        self._store = store
        self.webhooks = webhooks or Webhooks()
        self._seen: set[tuple[str, str, int]] = set()  # (budget, period id, threshold)

    async def check(self, budget: BudgetConfig, w: Window, spent: int) -> None:
        """Fires every threshold the settled spend has reached that no replica fired yet."""
        for threshold in budget.alerts:
            if spent * 100 < threshold * budget.limit_micros:
                break
            seen = (budget.name, w.id, threshold)
            if seen in self._seen:
                continue
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()  # claims in the store still hold: only a claim call more
            self._seen.add(seen)
            key = f"il:{{budgets}}:alert:{budget.name}:{w.id}:{threshold}"
            if await self._store.claim(key, max(60.0, w.end - w.start)):
                self._fire(budget, w, threshold, spent)

    def _fire(self, budget: BudgetConfig, w: Window, threshold: int, spent: int) -> None:
        counted = (budget.name, threshold)
        alerts_total[counted] = alerts_total.get(counted, 0) + 1
        log.warning(
            "budget %s reached %d%% of its limit this %s", budget.name, threshold, budget.period
        )
        if budget.webhook is not None:
            self.webhooks.post(
                budget.webhook,
                {
                    "type": "budget.threshold",
                    "budget": budget.name,
                    "threshold_percent": threshold,
                    "period": w.id,
                    "limit_micros": budget.limit_micros,
                    "spent_micros": spent,
                    "action": budget.action,
                },
            )

    def start(self) -> None:
        self.webhooks.start()

    async def stop(self) -> None:
        await self.webhooks.stop()
