"""Opening the index's SQLite file (internal to :mod:`exporter.index`).

:func:`open_index` makes the tables, anew for a file of another format, and rebuilds a file
SQLite cannot read.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

from exporter.index.rollups import ROLLUPS
from exporter.index.schema import ALL_SCHEMA, CHILD_TABLES, FORMAT, meta, set_meta

__all__ = ["open_index"]

_log = logging.getLogger(__name__)


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
    db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
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
