"""Which Redis failures mean "shared state unavailable", and how a Redis error reply is named.

An error reply is classified by redis-py's own parser table, so the lean client raises exactly
the exception redis-py would raise for the same reply:

| reply prefix                              | exception (redis.exceptions)      | policy | drop |
|-------------------------------------------|-----------------------------------|--------|------|
| (refused, reset, lost, TLS failure)       | ConnectionError                   | yes    | yes  |
| (no reply within the timeout)             | TimeoutError                      | yes    | yes  |
| WRONGPASS, NOAUTH, ERR invalid password   | AuthenticationError (Connection-) | yes    | yes  |
| LOADING                                   | BusyLoadingError (Connection-)    | yes    | yes  |
| ERR max number of clients reached         | ConnectionError                   | yes    | yes  |
| READONLY (a replica, after a failover)    | ReadOnlyError                     | yes    | yes  |
| MASTERDOWN, CLUSTERDOWN                   | MasterDownError, ClusterDownError | yes    | yes  |
| TRYAGAIN                                  | TryAgainError                     | yes    | yes  |
| OOM (maxmemory with noeviction)           | OutOfMemoryError                  | yes    | yes  |
| NOPERM (the ACL refuses our commands)     | NoPermissionError                 | yes    | yes  |
| NOSCRIPT                                  | NoScriptError (the store reloads) | no     | no   |
| anything else (WRONGTYPE, ERR ...)        | ResponseError                     | no     | no   |

"policy": ResilientStore applies the Redis-down setting (fail_open: per-process state;
fail_closed: 503 `state_unavailable`) and retries Redis shortly after, so fixing the cause (a
password, an ACL, a finished load, a failover) recovers without a restart. redis-py itself
treats only the ConnectionError family as availability; the other rows are replies our own
fixed, well-formed commands can only get when the server cannot serve shared state right now,
so they belong to the same operator decision rather than to a 500. "drop": the lean client
closes its connection (redis-py disconnects on the ConnectionError family and on timeouts), so
a failed AUTH is never cached and a connection to a demoted node is not reused.
"""

from __future__ import annotations

from typing import cast

import redis.exceptions
from redis._parsers.base import BaseParser

UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoPermissionError,
)


def reply_error(message: str) -> redis.exceptions.RedisError:
    """The exception redis-py raises for the error reply `message` (without the leading '-')."""
    error = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return cast(redis.exceptions.RedisError, error)
