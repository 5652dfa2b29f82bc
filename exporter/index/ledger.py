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
* the exporter's own counters of corrections and late records, so they survive restarts too;
* ``serve``'s running totals (opaque here), saved in the same transaction as the decisions
  that changed them, with each live record marked ``counted`` once they include it. A restart
  loads them instead of counting every record again, and counts only live records they lack
  (decided by another process meanwhile); without them (an older ledger, another layout) it
  counts every live record again.

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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from exporter.index.store import ENV_INDEX, default_index_path
from exporter.index.summary import RecordSummary, summary_of

__all__ = [
    "LATE_AFTER_SECONDS",
    "Decided",
    "Ledger",
    "LedgerWrite",
    "counts_live",
    "ledger_path",
]

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
    backfill TEXT,
    counted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
# Added to ``decided`` after the first release: 1 when the saved totals include the record.
_COUNTED_COLUMN: Final = "ALTER TABLE decided ADD COLUMN counted INTEGER NOT NULL DEFAULT 0"
_TOTALS: Final = "totals"  # meta key of the saved totals
_PER_QUERY: Final = 500  # names per IN (...) query, under SQLite's limit on parameters


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
    """What a live record was counted as, as the ledger keeps it: a JSON array of the
    summary's scalar fields (``file`` first), then its nested tuples as one JSON text (null
    when all are empty)."""
    if summary is None:
        return None
    nested = summary[-3:]
    text = json.dumps(nested, separators=(",", ":")) if any(nested) else None
    return json.dumps([*summary[:-3], text], separators=(",", ":"))


def _counted_as(text: str) -> RecordSummary:
    """The summary :func:`_counted` kept."""
    *fields, nested = json.loads(text)
    return summary_of(fields[0], fields[1:], *(json.loads(nested) if nested else ()))


class Decided(NamedTuple):
    """How a record was decided, and whether the saved totals include it."""

    live: bool
    counted: bool


class LedgerWrite:
    """The ledger inside one write transaction (:meth:`Ledger.write`): reads see, and writes
    make, one consistent state; nothing is kept unless the whole block succeeds."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def cutover(self, now: float) -> float:
        """The cut-over time, set to ``now`` by the first caller ever."""
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('cutover', ?)", (repr(now),))
        (value,) = self._db.execute("SELECT value FROM meta WHERE key='cutover'").fetchone()
        return float(value)

    def names(self) -> set[str]:
        """Every name decided so far."""
        return {name for (name,) in self._db.execute("SELECT name FROM decided")}

    def decided(self) -> dict[str, bool]:
        """Every name decided so far: True if counted live."""
        return {n: bool(live) for n, live in self._db.execute("SELECT name, live FROM decided")}

    def decisions(self, names: Sequence[str]) -> dict[str, Decided]:
        """The decisions of those of ``names`` decided so far."""
        found: dict[str, Decided] = {}
        for start in range(0, len(names), _PER_QUERY):
            chunk = names[start : start + _PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT name, live, counted FROM decided WHERE name IN ({marks})"  # noqa: S608
            for name, live, counted in self._db.execute(query, chunk):
                found[name] = Decided(bool(live), bool(counted))
        return found

    def live_names(self, *, uncounted: bool = False) -> list[str]:
        """Names decided live (only those the saved totals lack, with ``uncounted``)."""
        where = "live=1 AND counted=0" if uncounted else "live=1"
        return [name for (name,) in self._db.execute(f"SELECT name FROM decided WHERE {where}")]  # noqa: S608

    def tombstones(self) -> dict[str, RecordSummary]:
        """Live records whose file was removed or rewritten: the summary they were counted as."""
        rows = self._db.execute(
            "SELECT name, summary FROM decided WHERE live=1 AND summary IS NOT NULL"
        ).fetchall()
        return {name: _counted_as(text) for name, text in rows}

    def bury(self, summaries: Iterable[RecordSummary]) -> None:
        """Keep what these live records were counted as: their files are gone or rewritten
        (the first counted version stays)."""
        rows = [(_counted(s), s.file) for s in summaries]
        self._db.executemany(
            "UPDATE decided SET summary=? WHERE name=? AND live=1 AND summary IS NULL", rows
        )

    def decide(
        self,
        live: Iterable[str],
        history: Iterable[str] = (),
        *,
        first_seen: float,
        counted: bool = False,
    ) -> None:
        """Record that ``live`` records count live and ``history`` ones are history, first
        seen at ``first_seen`` (``counted``: the totals saved with them include the live
        ones); a name decided before keeps its first decision."""
        for names, is_live in ((live, True), (history, False)):
            # One statement over a JSON array, sorted by SQLite so the primary key's B-tree
            # grows at its end: a first start decides 100k names, 3x faster than executemany.
            self._db.execute(
                "INSERT OR IGNORE INTO decided (name, live, first_seen, counted) "
                "SELECT value, ?, ?, ? FROM json_each(?) ORDER BY value",
                (is_live, first_seen, counted and is_live, json.dumps(list(names))),
            )

    def mark_counted(self, names: Iterable[str] | None = None) -> None:
        """Note that the saved totals include these live records (None: every live record)."""
        if names is None:
            self._db.execute("UPDATE decided SET counted=1 WHERE live=1 AND counted=0")
        else:
            self._db.executemany(
                "UPDATE decided SET counted=1 WHERE name=? AND live=1", [(n,) for n in names]
            )

    def counter(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def add(self, key: str, n: int) -> int:
        """Add ``n`` to the persistent counter ``key``; returns its new value."""
        value = self.counter(key) + n
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))
        return value

    def totals(self) -> str | None:
        """The totals last saved (opaque to the ledger: ``serve``'s running counters)."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (_TOTALS,)).fetchone()
        return None if row is None else str(row[0])

    def save_totals(self, text: str) -> None:
        """Save the totals that the live records marked counted add up to."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_TOTALS, text))

    def history_to_load(self) -> dict[str, str | None]:
        """History records and the backfill that loaded each (None: not loaded yet)."""
        return dict(self._db.execute("SELECT name, backfill FROM decided WHERE live=0"))

    def mark_loaded(self, names: Iterable[str], backfill: str) -> None:
        self._db.executemany(
            "UPDATE decided SET backfill=? WHERE name=? AND live=0",
            [(backfill, n) for n in names],
        )


class Ledger:
    """The ledger of one archive (see the module docstring); ``None``: in memory only.

    :meth:`write` groups reads and changes into one transaction; the other methods are each
    one.
    """

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
        if not self._has_counted_column():
            with self.write():  # another process may be upgrading the same file
                if not self._has_counted_column():
                    self._db.execute(_COUNTED_COLUMN)

    def _has_counted_column(self) -> bool:
        columns = self._db.execute("PRAGMA table_info(decided)").fetchall()
        return any(column[1] == "counted" for column in columns)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[LedgerWrite]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield LedgerWrite(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[LedgerWrite]:
        """Its reads, each on its own (no write lock taken)."""
        with self._lock:
            yield LedgerWrite(self._db)

    def decided(self) -> dict[str, bool]:
        """Every name decided so far: True if counted live."""
        with self._read() as ledger:
            return ledger.decided()

    def counter(self, key: str) -> int:
        with self._read() as ledger:
            return ledger.counter(key)

    def mark_loaded(self, names: Iterable[str], backfill: str) -> None:
        with self.write() as tx:
            tx.mark_loaded(names, backfill)
