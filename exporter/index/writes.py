"""Writing rows into the index: inserts and deletes, bulk loads, the rollups' recomputation.

Internal to :mod:`exporter.index`; every function runs inside the caller's write transaction.
"""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, NamedTuple

from exporter.index.rollups import ROLLUPS
from exporter.index.schema import (
    BULK_INDEXES,
    CHILD_TABLES,
    CREATE_BULK_INDEXES,
    INSERT,
    SCALARS,
    meta,
    set_meta,
)
from exporter.index.summary import Projection, RecordSummary, summary_of

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


class Rows(NamedTuple):
    """What a batch of parsed files writes, ready for ``executemany``: the rows of each table
    (ids assigned), and what the files were."""

    files: list[tuple[object, ...]]
    models: list[tuple[object, ...]]
    stages: list[tuple[object, ...]]
    errors: list[tuple[object, ...]]
    stored: dict[str, FileIdentity]  # every file read (not vanished), valid or not
    invalid: dict[str, str]  # name -> why it is not a valid record
    added: list[RecordSummary]  # the valid ones' summaries (empty from a worker process)
    # the valid ones' sums for each rollup (rollups.partials); None: to be summed by SQL
    totals: tuple[list[tuple[object, ...]], ...] | None = None


class Chunk(NamedTuple):
    """A bulk load's chunk as a worker process parsed it: its rows packed (:func:`pack`),
    what its files were, and what the load's fold made of its valid records
    (:data:`exporter.index.parsing.Fold`).

    Packed rows are one ``bytes`` object until the writer opens them (:func:`unpack`): about
    250 bytes a record instead of the ~1.5 KB of their tuples, and nothing for the cyclic
    garbage collector to walk, while a load that writes later holds every chunk.
    """

    packed: bytes
    stored: dict[str, FileIdentity]  # every file read (not vanished), valid or not
    invalid: dict[str, str]  # name -> why it is not a valid record
    folded: object = None


def pack(rows: Rows, folded: object = None) -> Chunk:
    """``rows`` (without summaries) as a :class:`Chunk`, with ``folded``."""
    table_rows = (rows.files, rows.models, rows.stages, rows.errors, rows.totals)
    packed = pickle.dumps(table_rows, protocol=pickle.HIGHEST_PROTOCOL)
    return Chunk(packed, rows.stored, rows.invalid, folded)


def unpack(chunk: Chunk) -> Rows:
    """The rows :func:`pack` packed (made in this program's own worker processes)."""
    files, models, stages, errors, totals = pickle.loads(chunk.packed)  # noqa: S301
    return Rows(files, models, stages, errors, chunk.stored, chunk.invalid, [], totals)


# One file's parse outcome: name, identity (None: it vanished), what the index stores of the
# record (:func:`~exporter.index.summary.project`), or why it is not a valid record.
Outcome = tuple[str, FileIdentity | None, Projection | None, str | None]


def rows_of(outcomes: Iterable[Outcome], first_id: int, *, keep: bool = False) -> Rows:
    """The rows of parsed files: the i-th outcome gets id ``first_id + i``; one whose file
    vanished gets no row. With ``keep``, :attr:`Rows.added` holds the summaries."""
    rows = Rows([], [], [], [], {}, {}, [])
    files, models, stages, errors = rows.files, rows.models, rows.stages, rows.errors
    no_scalars = (None,) * len(SCALARS)
    for file_id, (name, identity, projected, reason) in enumerate(outcomes, first_id):
        if identity is None:
            continue
        rows.stored[name] = identity
        if projected is None:
            rows.invalid[name] = reason or "invalid"
            files.append((file_id, name, *identity, rows.invalid[name], *no_scalars))
            continue
        scalars, record_models, record_stages, record_errors = projected
        files.append((file_id, name, *identity, None, *scalars))
        models.extend([(file_id, *m) for m in record_models])
        stages.extend([(file_id, *x) for x in record_stages])
        errors.extend([(file_id, e) for e in record_errors])
        if keep:
            rows.added.append(summary_of(name, *projected))
    return rows


def insert_rows(db: sqlite3.Connection, rows: Rows) -> None:
    """Insert ``rows`` (no row of their names or ids may exist)."""
    db.executemany(INSERT, rows.files)
    db.executemany("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)", rows.models)
    db.executemany("INSERT INTO stages VALUES (?, ?, ?, ?)", rows.stages)
    db.executemany("INSERT INTO errors VALUES (?, ?)", rows.errors)


def drop_rows(db: sqlite3.Connection, names: Sequence[str]) -> None:
    """Delete the rows of ``names`` from every table (children first: their triggers look up
    the record's row)."""
    if db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None:
        return  # a first build: nothing to look up, however many names
    dropped = [(file_id,) for file_id in ids_of(db, names)]
    for table in CHILD_TABLES:
        db.executemany(
            f"DELETE FROM {table} WHERE file_id = ?",  # noqa: S608 (constant table names)
            dropped,
        )
    db.executemany("DELETE FROM files WHERE id = ?", dropped)


def next_id(db: sqlite3.Connection) -> int:
    """The first id no row has (call under the write lock, then assign ids from it)."""
    (first,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM files").fetchone()
    return int(first)


def _last_rowid(db: sqlite3.Connection, table: str) -> int:
    (last,) = db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()  # noqa: S608
    return int(last)


@contextlib.contextmanager
def bulk_load(db: sqlite3.Connection) -> Iterator[Callable[[Rows], None]]:
    """Inside a write transaction: stop the row-by-row upkeep of rollups and indexes while
    the body writes, and give it the function that writes a batch of rows.

    Each batch is added to the rollups by its :attr:`Rows.totals`, a few group sums; a batch
    without them by one statement per rollup (the triggers' upsert over the rows just
    appended). The indexes stay dropped: :func:`build_indexes` makes each in one pass, once
    the rows are in (after the commit, so that a reader can use them meanwhile).
    """
    for statement in (
        *(f"DROP INDEX IF EXISTS {name}" for name in BULK_INDEXES),
        *(s for rollup in ROLLUPS for s in rollup.drop_triggers),
    ):
        db.execute(statement)
    sources = sorted({rollup.source for rollup in ROLLUPS})

    def write(rows: Rows) -> None:
        if rows.totals is not None:
            insert_rows(db, rows)
            for rollup, partial in zip(ROLLUPS, rows.totals, strict=True):
                db.executemany(rollup.merge, partial)
            return
        last = {source: _last_rowid(db, source) for source in sources}
        insert_rows(db, rows)
        for rollup in ROLLUPS:
            db.execute(rollup.add_appended, (last[rollup.source],))

    yield write
    for statement in (s for rollup in ROLLUPS for s in rollup.schema):
        db.execute(statement)


def build_indexes(db: sqlite3.Connection) -> None:
    """Make the indexes a bulk load dropped (those already there are left alone: another
    process that opened the index meanwhile may have made them)."""
    for statement in CREATE_BULK_INDEXES:
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
