"""Writing rows into the index: inserts and deletes, bulk loads, the rollups' recomputation.

Internal to :mod:`exporter.index`; every function runs inside the caller's write transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from exporter.index.rollups import ROLLUPS
from exporter.index.schema import (
    CHILD_TABLES,
    CREATE_READ_INDEXES,
    INSERT,
    READ_INDEXES,
    SCALARS,
    meta,
    nested_json,
    set_meta,
)
from exporter.index.summary import RecordSummary

# (size, mtime_ns, inode) of a record file: what tells the index a file changed.
FileIdentity = tuple[int, int, int]
NAMES_PER_QUERY: Final = 500


def ids_of(db: sqlite3.Connection, names: Sequence[str]) -> list[int]:
    """The ids of the rows of ``names`` (in chunks, under SQLite's limit on parameters).

    Usually few or none exist (new records): looking them up once is cheaper than deleting
    by name from four tables.
    """
    ids: list[int] = []
    for start in range(0, len(names), NAMES_PER_QUERY):
        chunk = names[start : start + NAMES_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT id FROM files WHERE name IN ({marks})"  # noqa: S608 (placeholders)
        ids.extend(file_id for (file_id,) in db.execute(query, chunk))
    return ids


def write_rows(
    db: sqlite3.Connection,
    changed: Sequence[str],
    stored: dict[str, FileIdentity],
    newly_invalid: dict[str, str],
    added: Sequence[RecordSummary],
) -> None:
    """Drop every row of the ``changed`` names, then insert what was ``stored`` for them."""
    drop_rows(db, changed)
    insert_rows(db, stored, newly_invalid, added)


def drop_rows(db: sqlite3.Connection, names: Sequence[str]) -> None:
    """Delete the rows of ``names`` from every table (children first: their triggers look up
    the record's row)."""
    dropped = [(file_id,) for file_id in ids_of(db, names)]
    for table in CHILD_TABLES:
        db.executemany(
            f"DELETE FROM {table} WHERE file_id = ?",  # noqa: S608 (constant table names)
            dropped,
        )
    db.executemany("DELETE FROM files WHERE id = ?", dropped)


def insert_rows(
    db: sqlite3.Connection,
    stored: dict[str, FileIdentity],
    newly_invalid: dict[str, str],
    added: Sequence[RecordSummary],
) -> None:
    """Insert the rows of ``stored`` names: invalid ones with their reason, valid ones with
    their summary in ``added`` (no row of these names may exist)."""
    # Ids are assigned here, under the write lock, so child rows can refer to them.
    (next_id,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM files").fetchone()
    ids = {name: next_id + i for i, name in enumerate(stored)}
    db.executemany(
        INSERT,
        [
            (ids[n], n, *stored[n], reason, *[None] * len(SCALARS), None)
            for n, reason in newly_invalid.items()
        ],
    )
    db.executemany(
        INSERT,
        [(ids[a.file], a.file, *stored[a.file], None, *a[1:-3], nested_json(a)) for a in added],
    )
    db.executemany(
        "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(ids[a.file], *m) for a in added for m in a.models],
    )
    db.executemany(
        "INSERT INTO stages VALUES (?, ?, ?, ?)",
        [(ids[a.file], *x) for a in added for x in a.stage_durations],
    )
    db.executemany(
        "INSERT INTO errors VALUES (?, ?)",
        [(ids[a.file], e) for a in added for e in a.error_types],
    )


@contextlib.contextmanager
def bulk_load(db: sqlite3.Connection) -> Iterator[None]:
    """Inside a write transaction: stop the row-by-row upkeep of rollups and read indexes
    while the body writes, then rebuild both from the rows in one pass each."""
    for statement in (
        *(f"DROP INDEX IF EXISTS {name}" for name in READ_INDEXES),
        *(s for rollup in ROLLUPS for s in rollup.drop_triggers),
    ):
        db.execute(statement)
    yield
    rebuild_rollups(db)
    for statement in CREATE_READ_INDEXES:
        db.execute(statement)


def count_write(db: sqlite3.Connection) -> None:
    """Note that the indexed rows changed (what a heal is judged against)."""
    set_meta(db, "writes", str(int(meta(db, "writes") or 0) + 1))


def heal_rollups(db: sqlite3.Connection) -> None:
    """Recount the rollups if some group overflowed, once per state of the rows: while the
    absurd records are still there, recounting again would only flag the same groups."""
    writes = meta(db, "writes") or "0"
    if meta(db, "healed_at") == writes:
        return
    flagged = any(
        db.execute(f"SELECT 1 FROM {r.table} WHERE overflowed LIMIT 1").fetchone()  # noqa: S608
        for r in ROLLUPS
    )
    if flagged:
        rebuild_rollups(db)
        set_meta(db, "healed_at", writes)


def rebuild_rollups(db: sqlite3.Connection) -> None:
    """Recompute every rollup from the rows and restore its triggers (inside a transaction)."""
    for rollup in ROLLUPS:
        for statement in (*rollup.rebuild, *rollup.schema):
            db.execute(statement)
