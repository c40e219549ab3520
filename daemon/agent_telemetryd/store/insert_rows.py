"""Putting a group's rows into `events`: many rows a statement, in arrival order.

`executemany` runs the one-row INSERT once per row: per row a reset, a step and the
bookkeeping around them. A multi-row `INSERT ... VALUES (...), (...)` does that once per
statement, and the rows themselves cost the same B-tree work. And sqlite3 binds None
through its adaptation lookup (a failed attribute lookup that raises and is caught, per
None), so a row whose trace columns are all None goes through a statement that leaves
them out (SQLite fills them with their default, NULL). Measured with callgrind (plain
events of ~100 bytes of properties, 50 rows a transaction): 84k instructions a row with
`executemany`, 51k with 32 rows a statement, 38k with the shorter statement too; CPU time
per row fell by 40–45% in the same runs.

Five columns say where and how an event came in — transport, consent, upload state,
anonymous id, daemon version — and are the same for every row of a request, mostly of a
whole group. Each text value bound is copied by SQLite into memory of its own (a malloc,
a copy and a free under a mutex: ~800 instructions a value), so these are bound once a
statement, not once a row: `INSERT ... SELECT column1, ..., ?1, ..., ?5 FROM (VALUES
(...), ...)`, where the VALUES carry only what differs from row to row. That took a plain
row from 26.3k to 22.2k instructions (callgrind, 100 rows a transaction, the buffer's
five indexes).

The result is the same as one row at a time: rows are inserted in order, so ids follow
arrival (SQLite turns a multi-row VALUES, in a plain INSERT or under a SELECT, into the
same compound of rows that it reads in order); `OR IGNORE` skips a uuid already stored
(also one earlier in the same statement), and `total_changes` counts what was inserted.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Sequence

from agent_telemetryd.store.rows import EventRow

# 32 rows of 11 columns are 352 parameters: inside the 999 that SQLite builds before 3.32
# allowed. Longer statements gained nothing measurable (per row: 38k instructions at 32,
# the same at 128, 41k at 8).
ROWS_PER_STATEMENT = 32
_COLUMNS = EventRow._fields
_WIDTH = len(_COLUMNS)
# Bound once a statement: the same for every row of a run.
SHARED_COLUMNS = ("transport", "consent", "upload", "anonymous_id", "daemon_version")
_SHARED_AT = _COLUMNS.index(SHARED_COLUMNS[0])
_SHARED_END = _SHARED_AT + len(SHARED_COLUMNS)
assert _COLUMNS[_SHARED_AT:_SHARED_END] == SHARED_COLUMNS
# The trailing columns with a default (trace context, eligible_ms): all None for a plain event.
_ABSENT = tuple(EventRow._field_defaults.values())
assert _COLUMNS[_SHARED_END:] == tuple(EventRow._field_defaults) and not any(_ABSENT)
_OWN = _COLUMNS[:_SHARED_AT]  # each row's own values: uuid ... pid
_TRACED = _COLUMNS[_SHARED_END:]  # a traced row's own values too

_HEAD = operator.itemgetter(slice(0, _SHARED_AT))
_SHARED = operator.itemgetter(slice(_SHARED_AT, _SHARED_END))
_TAIL = operator.itemgetter(slice(_SHARED_END, None))
_AFTER_HEAD = operator.itemgetter(slice(_SHARED_AT, None))
_PLAIN_WIDTH = len(_OWN)
_TRACED_WIDTH = len(_OWN) + len(_TRACED)


def _statements(own: tuple[str, ...]) -> dict[int, str]:
    """The INSERT of rows carrying `own` columns each (the shared ones bound once as ?1 to
    ?5, numbered first, so each row's values follow in order) for 1, 2, 4 ... rows."""
    one = f"({', '.join('?' * len(own))})"
    head = (
        f"INSERT OR IGNORE INTO events ({', '.join(own + SHARED_COLUMNS)})"
        f" SELECT {', '.join(f'column{i}' for i in range(1, len(own) + 1))},"
        f" {', '.join(f'?{i}' for i in range(1, len(SHARED_COLUMNS) + 1))} FROM (VALUES "
    )
    sizes = (1 << power for power in range(ROWS_PER_STATEMENT.bit_length()))
    return {size: head + ", ".join([one] * size) + ")" for size in sizes}


_STATEMENTS = {_PLAIN_WIDTH: _statements(_OWN), _TRACED_WIDTH: _statements(_OWN + _TRACED)}


def insert_rows(conn: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
    """INSERT OR IGNORE `rows` in order (inside the caller's transaction)."""
    if not rows:
        return
    first = _AFTER_HEAD(rows[0])
    if first[len(SHARED_COLUMNS) :] == _ABSENT and all(map(first.__eq__, map(_AFTER_HEAD, rows))):
        # The usual group: plain events that came in alike, one run, gathered in C.
        values = list(itertools.chain.from_iterable(map(_HEAD, rows)))
        _insert(conn, list(_SHARED(rows[0])), _PLAIN_WIDTH, values, len(rows))
        return
    for shared, alike in itertools.groupby(rows, _SHARED):
        run = list(alike)
        if len(shared) != len(SHARED_COLUMNS):
            raise sqlite3.ProgrammingError(f"an event row does not have {_WIDTH} values")
        for plain, kind in itertools.groupby(run, _is_plain):
            group = list(kind)
            if plain:
                width = _PLAIN_WIDTH
                values = list(itertools.chain.from_iterable(map(_HEAD, group)))
            else:
                width = _TRACED_WIDTH
                own = map(operator.add, map(_HEAD, group), map(_TAIL, group))
                values = list(itertools.chain.from_iterable(own))
            if len(values) != len(group) * width:
                # One row of the wrong length would shift every value after it into the
                # next column: refuse the lot, as executemany does.
                raise sqlite3.ProgrammingError(f"an event row does not have {_WIDTH} values")
            _insert(conn, list(shared), width, values, len(group))


def _is_plain(row: EventRow) -> bool:
    return row[_SHARED_END:] == _ABSENT


def _insert(
    conn: sqlite3.Connection, shared: list[object], width: int, values: list[object], count: int
) -> None:
    # A run of n rows as statements of decreasing powers of two (50 rows: 32 + 16 + 2), so
    # the connection's statement cache holds a handful of statements whatever n is.
    statements = _STATEMENTS[width]
    offset = 0
    while count:
        size = ROWS_PER_STATEMENT
        while size > count:
            size >>= 1
        end = offset + size * width
        conn.execute(statements[size], shared + values[offset:end])
        offset = end
        count -= size
