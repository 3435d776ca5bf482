"""The account stage: closes every admitted request exactly once (core.pipeline.run calls it
after the stages, or when the request ends early), whatever its API."""

from __future__ import annotations

from typing import Any

from core.cache.affinity import Affinities
from core.observe import accounting
from core.observe.accounting import Priced
from core.observe.records import Records
from core.pipeline.exchange import Exchange
from core.providers.adapters.base import ProviderError, Target
from core.resilience.dispatch import Outcome
from core.spend.cost import Pricing
from shared.errors import UpstreamTarget

AnyExchange = Exchange[Any, Any, Any]


class Account:
    """Closes an admitted request exactly once: one usage line (never any content), one ledger
    record (with its cost, from the `pricing` built at start-up; core.ledger), and its token
    reservations (the tenant's, the key's) settled to what was used. A complete answer is
    accounted when encoded, a stream when it ends (`Exchange.finish`), a failure when it
    leaves; a request that ended before admission has nothing to account. A stream's end also
    settles the serving target's breaker verdict (core.resilience.lease): its outcome is known
    only then, and so is whether it wrote or read its cached prefix (core.cache.affinity)."""

    name = "account"

    def __init__(
        self,
        records: Records | None = None,
        pricing: Pricing | None = None,
        affinity: Affinities | None = None,
    ) -> None:
        self._records = records
        self._pricing = pricing
        self._affinity = affinity

    def _priced(
        self, x: AnyExchange, target: UpstreamTarget | None, usage: dict[str, Any] | None
    ) -> Priced:
        """The request's usage split and cost, computed once: the price encode already put on
        the answer when it is the same usage, else priced here."""
        split = x.split_of(usage)
        cost = x.cost_of(usage) if x.pricing is not None and isinstance(target, Target) else None
        return split, cost or accounting.cost_of(self._pricing, target, split)

    def _record(
        self,
        x: AnyExchange,
        target: UpstreamTarget | None,
        attempts: int,
        status: str,
        priced: Priced,
    ) -> None:
        """The request's outcome record, handed to the metrics and the ledger's writer (a deque
        append, no I/O)."""
        if self._records is None:
            return
        timing = (x.started, x.first_chunk)
        served = (target, attempts)
        record = accounting.ledger_record(
            x.caller, x.spec.api, x.request.model, served, status, timing, priced
        )
        self._records.append(record, x.spec.operation)

    def served(
        self,
        x: AnyExchange,
        usage: dict[str, Any] | None,
        status: str,
        error: ProviderError | None = None,
    ) -> None:
        if x.accounted:
            return
        x.accounted = True
        x.outcome.settle(error, clean=status == "ok")
        priced = self._priced(x, x.outcome.target, usage)
        accounting.record(
            x.caller, x.request.model, x.outcome, usage, status, x.started, x.admission, priced
        )
        if x.affinity is not None and self._affinity is not None and status == "ok":
            self._affinity.served(x.affinity, x.route.name, x.outcome.target, priced[0])
        self._record(x, x.outcome.target, x.outcome.attempts, status, priced)

    def failed(self, x: AnyExchange, error: ProviderError) -> None:
        """No target served: the failure is logged and nothing reserved is kept. The error
        says how many tries were made and carries the tenant's x-ratelimit-* headers."""
        if x.admission is None or x.accounted:
            return
        x.accounted = True
        accounting.record_failure(x.caller, x.request.model, error, x.started, x.admission)
        self._record(
            x, error.target, error.attempts, error.failure_class, self._priced(x, None, None)
        )
        error.headers["x-interlock-attempts"] = str(error.attempts)
        error.headers.update(x.admission.headers)

    def cancelled(self, x: AnyExchange) -> None:
        """The client left before the answer started: the upstream work was cancelled, so
        nothing was used; the usage line says `cancelled` and the reservation is given back."""
        if x.admission is None or x.accounted:
            return
        outcome = _served_by(x)
        if outcome is not None:  # served, but the client left before the answer was sent
            self.served(x, None, "cancelled")
            return
        x.accounted = True
        accounting.record_cancelled(x.caller, x.request.model, x.started, x.admission)
        self._record(x, None, 0, accounting.CANCELLED, self._priced(x, None, None))

    def released(self, x: AnyExchange) -> None:
        """Ended by something else (an image that could not be fetched, a bug): nothing was
        used, so the reservation is given back whole."""
        if x.admission is None or x.accounted:
            return
        x.accounted = True
        x.admission.settle(0)
        outcome = _served_by(x)
        if outcome is not None:
            outcome.settle(None, clean=False)
            if outcome.lease is not None:
                outcome.lease.settle(0)
            if outcome.budget is not None:
                outcome.budget.release()
        if outcome is None:
            self._record(x, None, 0, RELEASED, self._priced(x, None, None))
        else:
            nothing = self._priced(x, outcome.target, None)
            self._record(x, outcome.target, outcome.attempts, RELEASED, nothing)


# The ledger's outcome for a request ended by something other than an upstream (an image that
# could not be fetched): nothing was used or billed.
RELEASED = "error"


def _served_by(x: AnyExchange) -> Outcome | None:
    """Who served the request, once dispatch has (its slot is unset before)."""
    outcome: Outcome | None = getattr(x, "outcome", None)
    return outcome
