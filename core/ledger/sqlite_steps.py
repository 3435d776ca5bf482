"""Few statement steps per call for the SQLite store, whatever the number of rows.

sqlite3 releases the GIL around every step of a statement and must take it back after; while
the event loop keeps the GIL busy (a loaded core), each take-back waits up to the switch
interval (5 ms). A statement per record held the ledger's writer to a few hundred records a
second under load (its queue, and the core's memory, grew for as long as the load lasted),
and fetching a dashboard read's 20,000 rows one step each took seconds. So:

- rows go in as multi-row INSERTs of power-of-two sizes up to 64 rows (each size one cached
  statement): n rows take at most n/64 + 6 steps. Larger statements cost memory (a cached
  512-row INSERT of 31 columns holds a VDBE program of its own) for little: 2,000 rows are 32
  steps at 64, at most ~0.2 s of GIL waits on a saturated core (10 s one per row);
- a set of ids is bound as one JSON array, and a read's rows come back as one JSON array.

Rows are bound values rather than one JSON array: json_extract per column cost 17 us per
ledger row (31 columns) against 6.5 us bound.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

LARGEST = 64  # rows per statement at most (SQLite's own limit on bound values may be lower)


class MultiRowInsert:
    """`INSERT INTO <table> (<columns>) VALUES (...), (...) <tail>` for any number of rows."""

    def __init__(self, table: str, columns: Sequence[str], tail: str = "") -> None:
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._row = "(" + ", ".join("?" * len(columns)) + ")"
        self._tail = tail
        self._width = len(columns)
        self._sql: dict[int, str] = {}

    def run(self, db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        largest = _largest(db, self._width)
        at = 0
        for size in chunk_sizes(len(rows), largest):
            values = list(itertools.chain.from_iterable(rows[at : at + size]))
            db.execute(self._statement(size), values)
            at += size

    def _statement(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql[rows] = f"{self._head}{', '.join([self._row] * rows)} {self._tail}"
        return sql


def chunk_sizes(count: int, largest: int) -> Iterator[int]:
    """`count` as chunks of `largest`, then the powers of two of what is left (its bits)."""
    yield from itertools.repeat(largest, count // largest)
    left = count % largest
    size = largest
    while left:
        size //= 2
        if left >= size:
            yield size
            left -= size


def _largest(db: sqlite3.Connection, width: int) -> int:
    """The largest power of two of rows whose values SQLite takes in one statement."""
    fits = min(LARGEST, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    return 1 << (max(1, fits).bit_length() - 1)


def ids_present(db: sqlite3.Connection, sql: str, ids: Sequence[str]) -> list[str]:
    """`sql` takes the ids as one JSON array (json_each) and answers them as one
    (json_group_array): one step for any number."""
    (found,) = db.execute(sql, (orjson.dumps(list(ids)),)).fetchone()
    present: list[str] = orjson.loads(found)
    return present


def all_rows(db: sqlite3.Connection, text: str, args: list[Any]) -> list[tuple[Any, ...]]:
    """The query's rows, in its order, from one step. JSON renders a real with 15 digits, so
    reals travel as their 17-digit text, wrapped in an array so they read back as floats."""
    width = len(db.execute(f"SELECT * FROM ({text}) LIMIT 0", args).description)
    names = [f"c{i}" for i in range(width)]
    values = ", ".join(
        f"CASE typeof({n}) WHEN 'real' THEN json_array(printf('%!.17g', {n})) ELSE {n} END"
        for n in names
    )
    one = (
        f"WITH q ({', '.join(names)}) AS MATERIALIZED ({text}) "
        f"SELECT json_group_array(json_array({values})) FROM q"
    )
    (found,) = db.execute(one, args).fetchone()
    return [tuple(float(v[0]) if type(v) is list else v for v in r) for r in orjson.loads(found)]
