"""What reached Prometheus, and how: the ledger ``serve`` and ``backfill --missing`` share.

Prometheus counters must never go down, and every run must reach Prometheus once: either by
the live scrape of ``serve`` or as backfilled history, never both. The archive cannot say which
happened (records are removed, rewritten, copied), so this small SQLite file, kept beside the
index in the cache directory, does:

* ``cutover``: the first time a live exporter (or the stack's backfill) started for this
  archive. Runs that ended before it are history.
* one row per record name ever decided: counted ``live`` by ``serve`` or ``history`` (with
  the backfill that loaded it, once one did). When a live record's file is removed or
  rewritten, the summary it was counted as is kept here (``serve``'s own index still holds it
  then, also after a restart), so a restart counts exactly what was counted before.
* the exporter's own counters of corrections and late records, so they survive restarts too.

The rule (docs/architecture.md, "Windows: when a record counts"): a record counts at its end
time. The live scrape can only count a record when it sees it, so it counts live only a record
that ended at or after the cut-over and was first seen at most :data:`LATE_AFTER_SECONDS`
after it ended; every other record is history, written by ``backfill`` at its end time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

from exporter.index.schema import from_row, nested_json
from exporter.index.store import ENV_INDEX, default_index_path
from exporter.index.summary import RecordSummary

__all__ = ["LATE_AFTER_SECONDS", "Decision", "Ledger", "counts_live", "ledger_path"]

# A record first seen later than this after its end is late: the live counters would put it
# in the wrong window, so it goes to history. Covers a scrape interval, a slow writer and the
# clock difference between the writer and the exporter.
LATE_AFTER_SECONDS: Final = 600.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decided (
    name TEXT PRIMARY KEY,
    live INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    summary TEXT,
    backfill TEXT
);
"""


def ledger_path(archive: Path) -> Path | None:
    """Where the ledger of ``archive`` lives: beside its index (None: no writable cache)."""
    override = os.environ.get(ENV_INDEX)
    if override:
        return Path(override + ".ledger")
    return default_index_path(archive, purpose="ledger")


def counts_live(end: float, first_seen: float, cutover: float) -> bool:
    """Whether the live scrape counts a record that ended at ``end`` and was first seen then."""
    return end >= cutover and first_seen - end <= LATE_AFTER_SECONDS


def _counted(summary: RecordSummary | None) -> str | None:
    if summary is None:
        return None
    return json.dumps([*summary[:-3], nested_json(summary)], separators=(",", ":"))


class Decision(NamedTuple):
    name: str
    live: bool
    first_seen: float
    summary: RecordSummary | None  # unused: what a live record counted is kept when it goes


class Ledger:
    """The ledger of one archive (see the module docstring); ``None``: in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            timeout=30.0,
            check_same_thread=False,
            isolation_level=None,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def cutover(self, now: float) -> float:
        """The cut-over time, set to ``now`` by the first caller ever."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('cutover', ?)", (repr(now),))
            (value,) = db.execute("SELECT value FROM meta WHERE key='cutover'").fetchone()
        return float(value)

    def decided(self) -> dict[str, bool]:
        """Every name decided so far: True if counted live."""
        with self._lock:
            return {n: bool(live) for n, live in self._db.execute("SELECT name, live FROM decided")}

    def tombstones(self) -> dict[str, RecordSummary]:
        """Live records whose file was removed or rewritten: the summary they were counted as."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, summary FROM decided WHERE live=1 AND summary IS NOT NULL"
            ).fetchall()
        return {name: from_row(json.loads(text)) for name, text in rows}

    def bury(self, summaries: Iterable[RecordSummary]) -> None:
        """Keep what these live records were counted as: their files are gone or rewritten
        (the first counted version stays)."""
        rows = [(_counted(s), s.file) for s in summaries]
        with self._write() as db:
            db.executemany(
                "UPDATE decided SET summary=? WHERE name=? AND live=1 AND summary IS NULL", rows
            )

    def decide(self, decisions: Iterable[Decision]) -> None:
        """Record decisions; a name decided before keeps its first decision."""
        # in name order: the primary key's B-tree grows at its end
        rows = sorted((d.name, int(d.live), d.first_seen) for d in decisions)
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO decided (name, live, first_seen) VALUES (?, ?, ?)",
                rows,
            )

    def counter(self, key: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def add(self, key: str, n: int) -> int:
        """Add ``n`` to the persistent counter ``key``; returns its new value."""
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            value = (0 if row is None else int(row[0])) + n
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))
        return value

    def history_to_load(self) -> dict[str, str | None]:
        """History records and the backfill that loaded each (None: not loaded yet)."""
        with self._lock:
            return dict(self._db.execute("SELECT name, backfill FROM decided WHERE live=0"))

    def mark_loaded(self, names: Iterable[str], backfill: str) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE decided SET backfill=? WHERE name=? AND live=0",
                [(backfill, n) for n in names],
            )
