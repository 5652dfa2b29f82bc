"""Opening the index's SQLite file (internal to :mod:`exporter.index`).

:func:`open_index` makes the tables, anew for a file of another format, and rebuilds a file
SQLite cannot read. A forked child must not use a connection its parent opened:
:func:`open_in_child` sets that one aside and opens one of the child's own.
:func:`committed_without_checkpoint` and :func:`in_background` (with :func:`checkpoint`) let a
large write return before its pages are copied from the write-ahead log into the file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from exporter.index.rollups import ROLLUPS
from exporter.index.schema import ALL_SCHEMA, CHILD_TABLES, FORMAT, meta, set_meta
from exporter.util.forking import start_helper

__all__ = [
    "checkpoint",
    "committed_without_checkpoint",
    "in_background",
    "open_in_child",
    "open_index",
]

_log = logging.getLogger(__name__)

_BUSY_SECONDS: Final = 30.0  # how long a statement waits for another connection's lock
_PAGE_BYTES: Final = 16384

# The connections forked children inherited: kept referenced, so that a child never closes
# one (SQLite forbids using it there; closing it could checkpoint and delete the parent's WAL).
_INHERITED: Final[list[sqlite3.Connection]] = []


def open_index(path: Path | None) -> sqlite3.Connection:
    """A connection to the index file at ``path`` (None: in memory), ready to use."""
    target = ":memory:" if path is None else str(path)
    try:
        return _connect(target)
    except sqlite3.DatabaseError as exc:
        if path is None:
            raise
        _log.warning("index %s is unusable (%s); rebuilding it", path, exc)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()
        return _connect(target)


def _connect(target: str) -> sqlite3.Connection:
    db = _plain_connection(target)
    # Set before a new file's first write fixes it (an existing file keeps its own): a first
    # build writes ~50 MB at 100k records, and 16 KiB pages make it a quarter as many pages to
    # fill, spill to the log and read back (its writer 20-25% faster; warm reads alike).
    db.execute(f"PRAGMA page_size={_PAGE_BYTES}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    if meta(db, "format") != FORMAT:
        # a new file, or one of an older layout: (re)create the tables
        db.execute("BEGIN IMMEDIATE")
        if meta(db, "format") != FORMAT:  # nobody else did it meanwhile
            for table in ("files", *CHILD_TABLES, *(r.table for r in ROLLUPS)):
                db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute("DELETE FROM meta")  # including what the last refresh saw
            set_meta(db, "format", FORMAT)
        db.execute("COMMIT")
    db.executescript(ALL_SCHEMA)
    db.execute("SELECT count(*) FROM files").fetchone()  # fails early on a corrupt file
    return db


def _plain_connection(target: str) -> sqlite3.Connection:
    db = sqlite3.connect(
        target, timeout=_BUSY_SECONDS, check_same_thread=False, isolation_level=None
    )
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def committed_without_checkpoint(db: sqlite3.Connection) -> None:
    """COMMIT the write transaction of ``db`` without copying the log into the file now.

    A bulk load's commit would otherwise checkpoint in the committing call: the whole new
    file (50 MB at 100,000 records) copied from the log and synced, ~0.2 s on one core before
    the caller gets its answer. :func:`checkpoint`, :func:`in_background`, copies it meanwhile.
    """
    (pages,) = db.execute("PRAGMA wal_autocheckpoint").fetchone()
    db.execute("PRAGMA wal_autocheckpoint=0")
    try:
        db.execute("COMMIT")
    finally:
        db.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


def in_background(
    path: Path, job: Callable[[sqlite3.Connection], object], *, name: str
) -> threading.Thread:
    """Run ``job`` on a connection of its own to the index file at ``path``, in a helper thread
    (a fork waits for it, see :mod:`exporter.util.forking`), and return the thread: join it
    before the process closes its last connection. A job that fails is logged: what it leaves
    undone is done later (a checkpoint by SQLite's next one, an index by the next open)."""
    return start_helper(_run_job, str(path), job, name, name=name)


def _run_job(target: str, job: Callable[[sqlite3.Connection], object], name: str) -> None:
    try:
        db = _plain_connection(target)
        try:
            job(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        _log.warning("index %s: %s failed in the background: %s", target, name, exc)
    except Exception:  # a bug: the same, with its traceback
        _log.warning("index %s: %s failed in the background", target, name, exc_info=True)


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy what the log holds into the file, as far as it can without waiting: a passive
    checkpoint lets readers and writers go on, and copies only committed pages."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def open_in_child(inherited: sqlite3.Connection, path: Path | None) -> sqlite3.Connection:
    """In a forked child, a connection to use instead of the parent's ``inherited`` one.

    The parent's is set aside, never used nor closed (a child leaves with ``os._exit``, which
    closes nothing); the child's is read-only, which is what children need. An in-memory
    index (``path`` None) has nothing on disk: the child's copy of it is its own to use.
    """
    if path is None:
        return inherited
    _INHERITED.append(inherited)
    uri = path.absolute().as_uri() + "?mode=ro"
    return sqlite3.connect(
        uri, uri=True, timeout=_BUSY_SECONDS, check_same_thread=False, isolation_level=None
    )
