"""The index's tables, its format tag, and how a summary is stored in a row and read back.

Internal to :mod:`exporter.index`; the tables are described in :mod:`exporter.index.store`.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

from exporter.index.rollups import ROLLUPS
from exporter.index.summary import ModelTokens, RecordSummary, StageSummary, summary_of

FORMAT_VERSION: Final = 8  # bump when RecordSummary or what is stored of a record changes

# The scalar fields of RecordSummary, stored as columns, in field order (between ``file`` and
# the three nested tuples, which are the rows of the child tables).
SCALARS: Final = RecordSummary._fields[1:-3]

_REAL: Final = frozenset({"timestamp", "duration_seconds", "estimated_cost", "parallel_efficiency"})
_TEXT: Final = frozenset(
    {"batch_id", "operation", "run_id", "source", "status", "cost_source", "read_elsewhere"}
)


def _column_type(column: str) -> str:
    return "REAL" if column in _REAL else "TEXT" if column in _TEXT else "INTEGER"


SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    invalid_reason TEXT,
    {", ".join(f"{c} {_column_type(c)}" for c in SCALARS)}
);
CREATE TABLE IF NOT EXISTS models (
    file_id INTEGER NOT NULL, model TEXT NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, cost_usd REAL,
    cost_source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    file_id INTEGER NOT NULL, stage INTEGER, duration_seconds REAL, items INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (file_id INTEGER NOT NULL, error_type TEXT NOT NULL);
"""
CHILD_TABLES: Final = ("models", "stages", "errors")
# Indexes only queries use (writes find rows by name and file_id): a bulk load drops them and
# builds them again from the loaded rows, which is faster than growing them row by row.
READ_INDEXES: Final = {
    "files_by_time": "files (timestamp)",
    # time windows select by end time (summary.END_SQL, with "f." dropped)
    "files_by_end": "files ((timestamp + COALESCE(duration_seconds, 0.0))) "
    "WHERE invalid_reason IS NULL",
    # ordered per operation, for what the rollups cannot give: extremes, quantiles, batches
    "files_by_operation_duration": "files (operation, duration_seconds) "
    "WHERE invalid_reason IS NULL",
    "files_by_operation_time": "files (operation, timestamp) WHERE invalid_reason IS NULL",
    "files_by_operation_batch": "files (operation, batch_id) WHERE invalid_reason IS NULL",
}
# How writes find a record's child rows (to delete them). A bulk load drops these too: its
# rows arrive in file_id order, and one pass over them builds each index faster than inserting
# into it row by row (0.3-0.6 s less at 100k records, for 0.15 s more at the end).
CHILD_INDEXES: Final = {f"{table}_by_file": f"{table} (file_id)" for table in CHILD_TABLES}
# What a bulk load drops while it writes and creates again afterwards.
BULK_INDEXES: Final = {**READ_INDEXES, **CHILD_INDEXES}
CREATE_BULK_INDEXES: Final = [
    f"CREATE INDEX IF NOT EXISTS {name} ON {what}" for name, what in BULK_INDEXES.items()
]
ALL_SCHEMA: Final = SCHEMA + "".join(
    f"{statement};\n"
    for statement in (*CREATE_BULK_INDEXES, *(s for r in ROLLUPS for s in r.schema))
)
# What an index file must have been made with to be reused: the version above, and the exact
# schema (tables, triggers, indexes), so a changed measure or trigger never meets old totals.
FORMAT: Final = f"{FORMAT_VERSION}-{hashlib.sha256(ALL_SCHEMA.encode()).hexdigest()[:16]}"


# Statements are built once from the constant column lists here; values always go through "?".
COLUMNS: Final = ", ".join(SCALARS)
_PLACEHOLDERS: Final = ", ".join("?" * (len(SCALARS) + 6))
INSERT: Final = (
    "INSERT INTO files (id, name, size, mtime_ns, inode, invalid_reason, "  # noqa: S608
    f"{COLUMNS}) VALUES ({_PLACEHOLDERS})"
)
# A summary is read back from its record's row and its child rows, in the order they were
# written (a child table's rowid grows with every insert): the fields of its ModelTokens, of
# its StageSummaries, and its error types.
_SELECT_FILES: Final = (
    f"SELECT f.id, f.name, {', '.join(f'f.{c}' for c in SCALARS)} "  # noqa: S608
    "FROM files f WHERE {where} ORDER BY {order}"
)
_SELECT_CHILDREN: Final = tuple(
    f"SELECT c.file_id, {', '.join(f'c.{c}' for c in columns)} FROM {table} c "  # noqa: S608
    "JOIN files f ON f.id = c.file_id WHERE {where} ORDER BY c.file_id, c.rowid"
    for table, columns in (
        ("models", ModelTokens._fields),
        ("stages", StageSummary._fields),
        ("errors", ("error_type",)),
    )
)


def read_summaries(
    db: sqlite3.Connection, where: str, params: Sequence[object], order: str = "f.id"
) -> list[RecordSummary]:
    """The summaries of the rows of ``files f`` that the condition ``where`` selects (with
    ``params``), in ``order``: four queries, in one read transaction (the caller's, if it
    holds one), so a record and its child rows are always read as one state of the index."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        rows = db.execute(
            _SELECT_FILES.replace("{where}", where).replace("{order}", order), params
        ).fetchall()
        models, stages, errors = (
            _by_file(db.execute(sql.replace("{where}", where), params)) for sql in _SELECT_CHILDREN
        )
    finally:
        if own and db.in_transaction:
            db.execute("COMMIT")
    none: tuple[Any, ...] = ()
    return [
        summary_of(
            row[1],
            row[2:],
            models.get(row[0], none),
            stages.get(row[0], none),
            (e for (e,) in errors.get(row[0], none)),
        )
        for row in rows
    ]


def _by_file(rows: Iterable[Sequence[Any]]) -> dict[int, list[Sequence[Any]]]:
    """Child rows (file_id first, in file_id order) grouped by record, without the file_id."""
    found: dict[int, list[Sequence[Any]]] = {}
    for file_id, group in itertools.groupby(rows, operator.itemgetter(0)):
        found[file_id] = [row[1:] for row in group]
    return found


def meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
