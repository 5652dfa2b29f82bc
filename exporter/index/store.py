"""A derived, incrementally updated index of the archive (SQLite, standard library).

The JSON files stay the truth; the index is a cache that makes reports and scrapes cheap.
Each valid record is kept as a :class:`RecordSummary`, a flat projection of what the reports
and the Prometheus exporter read. The index notices changes by file name, size and mtime:

* ``refresh()`` compares the directory listing with what it knows (cheap when the directory's
  own mtime is unchanged: then nothing was added, renamed or removed, and only files rewritten in
  place, which our atomic writer never does, can have changed; ``refresh(full=True)`` stats every
  file to catch those too);
* new or changed files are parsed once; removed files are dropped;
* a missing, corrupt or older-format index file is rebuilt from the JSON files.

The index lives in the user's cache directory (see :func:`default_index_path`), or in memory
when that is not writable; the archive itself is only read, so it may be mounted read-only.

Tables, for aggregate queries through :meth:`ArchiveIndex.select` (every child row's ``file_id``
is its record's ``files.id``; invalid files have a ``files`` row with ``invalid_reason`` set):

* ``files(id, name, size, mtime_ns, invalid_reason, <the scalar fields of RecordSummary>,
  nested)``
* ``models(file_id, model, input_tokens, output_tokens, cache_read_tokens, cost_usd,
  cost_source)``
* ``stages(file_id, stage, duration_seconds, items)``
* ``errors(file_id, error_type)``

Join a child table with ``JOIN files f ON f.id = m.file_id``. The tables of
:data:`exporter.index.rollups.ROLLUPS` hold totals over these, kept current by triggers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from exporter.index.rollups import ROLLUPS
from exporter.util.errors import UserError
from exporter.util.paths import is_record_name

if TYPE_CHECKING:
    from exporter.archive.model import BatchRecord

__all__ = [
    "ENV_INDEX",
    "ArchiveIndex",
    "ModelTokens",
    "RecordFilter",
    "RecordSummary",
    "RefreshResult",
    "Snapshot",
    "StageSummary",
    "SumOverflowError",
    "default_index_path",
    "summarize",
]

_log = logging.getLogger(__name__)

ENV_INDEX: Final = "BATCH_METRICS_INDEX"
_FORMAT_VERSION: Final = 6  # bump when RecordSummary or what is stored of a record changes
# (size, mtime_ns, inode) of a record file: what tells the index a file changed.
FileIdentity = tuple[int, int, int]
# A directory mtime younger than this may not show a change made within the same tick.
_MTIME_SETTLE_NS: Final = 2_000_000_000
_UNSETTLED: Final = -2  # stored instead of such an mtime: it never matches a real one


class ModelTokens(NamedTuple):
    """Tokens and cost of one model in one record."""

    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float | None
    cost_source: str


class StageSummary(NamedTuple):
    stage: int | None  # None: the seed's analyze-batch.py writes null for PRPs without a stage
    duration_seconds: float | None
    items: int


class RecordSummary(NamedTuple):
    """What reports and exporters read of one record; ``timestamp`` is epoch seconds (start).

    A named tuple: reports build a hundred thousand of these, and tuples are the cheapest
    immutable records Python has.
    """

    file: str
    batch_id: str
    operation: str
    timestamp: float
    duration_seconds: float | None = None
    run_id: str | None = None
    source: str | None = None
    status: str | None = None
    total_items: int | None = None
    success_count: int | None = None
    failure_count: int | None = None
    partial_count: int | None = None
    stages: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    estimated_cost: float | None = None
    cost_source: str | None = None
    parallel_efficiency: float | None = None
    models: tuple[ModelTokens, ...] = ()
    stage_durations: tuple[StageSummary, ...] = ()
    error_types: tuple[str, ...] = ()

    @property
    def end_timestamp(self) -> float:
        """Completion time in epoch seconds (the start when the duration is unknown)."""
        return self.timestamp + (self.duration_seconds or 0.0)


def summarize(record: BatchRecord, file: str) -> RecordSummary:
    """Project a validated record onto the fields the index keeps."""
    m = record.metrics
    usage = m.token_usage
    opt = record.optimization_metrics
    return RecordSummary(
        file=file,
        batch_id=record.batch_id,
        operation=record.operation,
        timestamp=record.timestamp.timestamp(),
        duration_seconds=record.duration_seconds,
        run_id=record.run_id,
        source=record.source,
        status=record.status,
        total_items=m.total_items,
        success_count=m.success_count,
        failure_count=m.failure_count,
        partial_count=m.partial_count,
        stages=m.stages,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        total_tokens=usage.total_tokens if usage else None,
        estimated_cost=usage.estimated_cost if usage else None,
        cost_source=usage.cost_source if usage else None,
        parallel_efficiency=opt.parallel_efficiency if opt else None,
        models=tuple(
            ModelTokens(
                u.model,
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cost_usd,
                u.cost_source,
            )
            for u in (usage.by_model or ())
        )
        if usage
        else (),
        stage_durations=tuple(
            StageSummary(s.stage, s.duration_seconds, len(s.items))
            for s in (m.stage_durations or ())
        ),
        error_types=tuple(e.error_type or "unknown" for e in (m.errors or ())),
    )


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which valid records a query covers: one operation, a start time, the N most recent."""

    operation: str | None = None
    since: float | None = None  # epoch seconds; records that started at or after it
    recent: int | None = None  # the N most recent by start timestamp (not by file name)

    def sql(self) -> tuple[str, list[object]]:
        """A condition on table ``files`` aliased ``f``, and its parameters."""
        clauses = ["f.invalid_reason IS NULL"]
        params: list[object] = []
        if self.operation is not None:
            clauses.append("f.operation = ?")
            params.append(self.operation)
        if self.since is not None:
            clauses.append("f.timestamp >= ?")
            params.append(self.since)
        if self.recent is not None:
            inner = " AND ".join(c.replace("f.", "g.") for c in clauses)
            clauses.append(
                "f.name IN (SELECT g.name FROM files g WHERE "  # noqa: S608 (constant SQL)
                f"{inner} ORDER BY g.timestamp DESC, g.name DESC LIMIT ?)"
            )
            params = [*params, *params, max(self.recent, 0)]
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one refresh changed; ``removed`` holds the summaries that were dropped or replaced."""

    added: tuple[RecordSummary, ...] = ()
    removed: tuple[RecordSummary, ...] = ()
    invalid: dict[str, str] = field(default_factory=dict)  # file name -> reason, all known now
    newly_invalid: dict[str, str] = field(default_factory=dict)
    # Another process changed rows this instance had reported: consumers that apply the
    # deltas (added/removed) must rebuild from summaries() instead.
    reset: bool = False
    scanned_files: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.newly_invalid or self.reset)


# The scalar fields of RecordSummary, stored as columns, in field order (between ``file`` and
# the three nested tuples, which are stored together as one JSON column).
_SCALARS: Final = RecordSummary._fields[1:-3]

_REAL: Final = frozenset({"timestamp", "duration_seconds", "estimated_cost", "parallel_efficiency"})
_TEXT: Final = frozenset({"batch_id", "operation", "run_id", "source", "status", "cost_source"})


def _column_type(column: str) -> str:
    return "REAL" if column in _REAL else "TEXT" if column in _TEXT else "INTEGER"


_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    invalid_reason TEXT,
    {", ".join(f"{c} {_column_type(c)}" for c in _SCALARS)},
    nested TEXT
);
CREATE TABLE IF NOT EXISTS models (
    file_id INTEGER NOT NULL, model TEXT NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, cost_usd REAL,
    cost_source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS models_by_file ON models (file_id);
CREATE TABLE IF NOT EXISTS stages (
    file_id INTEGER NOT NULL, stage INTEGER, duration_seconds REAL, items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stages_by_file ON stages (file_id);
CREATE TABLE IF NOT EXISTS errors (file_id INTEGER NOT NULL, error_type TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS errors_by_file ON errors (file_id);
"""
# Indexes only queries use (writes find rows by name and file_id): a bulk load drops them and
# builds them again from the loaded rows, which is faster than growing them row by row.
_READ_INDEXES: Final = {
    "files_by_time": "files (timestamp)",
    # ordered per operation, for what the rollups cannot give: extremes, quantiles, batches
    "files_by_operation_duration": "files (operation, duration_seconds) "
    "WHERE invalid_reason IS NULL",
    "files_by_operation_time": "files (operation, timestamp) WHERE invalid_reason IS NULL",
    "files_by_operation_batch": "files (operation, batch_id) WHERE invalid_reason IS NULL",
}
_CREATE_READ_INDEXES: Final = [
    f"CREATE INDEX IF NOT EXISTS {name} ON {what}" for name, what in _READ_INDEXES.items()
]
_ALL_SCHEMA: Final = _SCHEMA + "".join(
    f"{statement};\n"
    for statement in (*_CREATE_READ_INDEXES, *(s for r in ROLLUPS for s in r.schema))
)
# What an index file must have been made with to be reused: the version above, and the exact
# schema (tables, triggers, indexes), so a changed measure or trigger never meets old totals.
_FORMAT: Final = f"{_FORMAT_VERSION}-{hashlib.sha256(_ALL_SCHEMA.encode()).hexdigest()[:16]}"
_CHILD_TABLES: Final = ("models", "stages", "errors")
# A refresh changing at least this many records, and an eighth of the index, recomputes the
# rollups in one pass instead of letting their triggers add and subtract row by row.
_BULK_CHANGES: Final = 1000
_NAMES_PER_QUERY: Final = 500


# Statements are built once from the constant column list above; values always go through "?".
_COLUMNS: Final = ", ".join(_SCALARS)
_SELECT_ONE: Final = (
    f"SELECT name, {_COLUMNS}, nested FROM files "  # noqa: S608
    "WHERE name=? AND invalid_reason IS NULL"
)
_SELECT_MANY: Final = f"SELECT name, {_COLUMNS}, nested FROM files f WHERE "  # noqa: S608
_PLACEHOLDERS: Final = ", ".join("?" * (len(_SCALARS) + 7))
_INSERT: Final = (
    "INSERT INTO files (id, name, size, mtime_ns, inode, invalid_reason, "  # noqa: S608
    f"{_COLUMNS}, nested) VALUES ({_PLACEHOLDERS})"
)


def _nested_json(s: RecordSummary) -> str | None:
    if not (s.models or s.stage_durations or s.error_types):
        return None
    return json.dumps([s.models, s.stage_durations, s.error_types], separators=(",", ":"))


def _from_row(row: Sequence[Any]) -> RecordSummary:
    """``row`` is (name, *scalars, nested) as the SELECT statements above return it."""
    nested = row[-1]
    if nested is None:
        return RecordSummary._make((*row[:-1], (), (), ()))
    models, stages, errors = json.loads(nested)
    return RecordSummary._make(
        (
            *row[:-1],
            tuple(ModelTokens._make(m) for m in models),
            tuple(StageSummary._make(st) for st in stages),
            tuple(errors),
        )
    )


def _ids_of(db: sqlite3.Connection, names: Sequence[str]) -> list[int]:
    """The ids of the rows of ``names`` (in chunks, under SQLite's limit on parameters).

    Usually few or none exist (new records): looking them up once is cheaper than deleting
    by name from four tables.
    """
    ids: list[int] = []
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT id FROM files WHERE name IN ({marks})"  # noqa: S608 (placeholders)
        ids.extend(file_id for (file_id,) in db.execute(query, chunk))
    return ids


def _write_rows(
    db: sqlite3.Connection,
    changed: Sequence[str],
    stored: dict[str, FileIdentity],
    newly_invalid: dict[str, str],
    added: Sequence[RecordSummary],
) -> None:
    """Drop every row of the ``changed`` names, then insert what was ``stored`` for them."""
    dropped = [(file_id,) for file_id in _ids_of(db, changed)]
    for table in _CHILD_TABLES:  # children first: their triggers look up the record's row
        db.executemany(
            f"DELETE FROM {table} WHERE file_id = ?",  # noqa: S608 (constant table names)
            dropped,
        )
    db.executemany("DELETE FROM files WHERE id = ?", dropped)
    # Ids are assigned here, under the write lock, so child rows can refer to them.
    (next_id,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM files").fetchone()
    ids = {name: next_id + i for i, name in enumerate(stored)}
    db.executemany(
        _INSERT,
        [
            (ids[n], n, *stored[n], reason, *[None] * len(_SCALARS), None)
            for n, reason in newly_invalid.items()
        ],
    )
    db.executemany(
        _INSERT,
        [(ids[a.file], a.file, *stored[a.file], None, *a[1:-3], _nested_json(a)) for a in added],
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
def _bulk_load(db: sqlite3.Connection) -> Iterator[None]:
    """Inside a write transaction: stop the row-by-row upkeep of rollups and read indexes
    while the body writes, then rebuild both from the rows in one pass each."""
    for statement in (
        *(f"DROP INDEX IF EXISTS {name}" for name in _READ_INDEXES),
        *(s for rollup in ROLLUPS for s in rollup.drop_triggers),
    ):
        db.execute(statement)
    yield
    _rebuild_rollups(db)
    for statement in _CREATE_READ_INDEXES:
        db.execute(statement)


def _signed(inode: int) -> int:
    """An inode number as SQLite can store it: unsigned 64-bit numbers past 2**63 wrap."""
    return inode - 2**64 if inode >= 2**63 else inode


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _count_write(db: sqlite3.Connection) -> None:
    """Note that the indexed rows changed (what a heal is judged against)."""
    _set_meta(db, "writes", str(int(_meta(db, "writes") or 0) + 1))


def _heal_rollups(db: sqlite3.Connection) -> None:
    """Recount the rollups if some group overflowed, once per state of the rows: while the
    absurd records are still there, recounting again would only flag the same groups."""
    writes = _meta(db, "writes") or "0"
    if _meta(db, "healed_at") == writes:
        return
    flagged = any(
        db.execute(f"SELECT 1 FROM {r.table} WHERE overflowed LIMIT 1").fetchone()  # noqa: S608
        for r in ROLLUPS
    )
    if flagged:
        _rebuild_rollups(db)
        _set_meta(db, "healed_at", writes)


def _rebuild_rollups(db: sqlite3.Connection) -> None:
    """Recompute every rollup from the rows and restore its triggers (inside a transaction)."""
    for rollup in ROLLUPS:
        for statement in (*rollup.rebuild, *rollup.schema):
            db.execute(statement)


class Snapshot:
    """Queries inside one read transaction of the index (see :meth:`ArchiveIndex.snapshot`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def select(
        self, sql: str, params: Sequence[object] = (), where: RecordFilter | None = None
    ) -> list[tuple[Any, ...]]:
        """As :meth:`ArchiveIndex.select`."""
        return _query(self._db, sql, params, where)


def _query(
    db: sqlite3.Connection, sql: str, params: Sequence[object], where: RecordFilter | None
) -> list[tuple[Any, ...]]:
    """``sql`` with ``{where}`` replaced by the filter's condition, its parameters last."""
    condition, extra = (where or RecordFilter()).sql()
    try:
        return db.execute(sql.replace("{where}", condition), (*params, *extra)).fetchall()
    except sqlite3.OperationalError as exc:
        if str(exc) == "integer overflow":
            raise SumOverflowError from exc
        raise


class SumOverflowError(UserError):
    """A sum over the archive left SQLite's 64-bit integers: absurd counts in some records."""

    def __init__(self, operations: Iterable[str] = ()) -> None:
        names = sorted(set(operations))
        runs = f"the {', '.join(names)} runs" if names else "the selected runs"
        super().__init__(
            f"the item or token counts of {runs} added up to more than 2**63, so their totals "
            "are not exact: some records hold absurd counts (each near 2**53, about 9.0e15); "
            "once they are gone, `batch-metrics trends --rescan` recounts"
        )


def default_index_path(archive: Path, *, purpose: str = "") -> Path | None:
    """Where the index of ``archive`` lives unless told otherwise.

    ``$BATCH_METRICS_INDEX`` if set, else the user's cache directory, keyed by the archive's
    absolute path and ``purpose`` (a consumer that follows the index's deltas, like ``serve``,
    keeps a file of its own); ``None`` (an in-memory index) when no cache directory is
    writable. Not inside
    the archive: SQLite's journal files would change the directory's mtime, which is how the
    index notices new records, and the archive may be mounted read-only.
    """
    if os.environ.get(ENV_INDEX):
        return Path(os.environ[ENV_INDEX])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batch-metrics"
    digest = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:16]
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    name = f"index-{digest}{'-' + purpose if purpose else ''}.sqlite"
    return cache / name if os.access(cache, os.W_OK) else None


class ArchiveIndex:
    """Incremental index of one archive directory. Thread-safe; one instance per process."""

    def __init__(self, archive: Path, db_path: Path | None = None) -> None:
        self.archive = Path(archive)
        self._lock = threading.Lock()
        self._dir_mtime_ns: int | None = None
        self._known: dict[str, FileIdentity] | None = None  # name -> (size, mtime_ns, inode)
        self._invalid: dict[str, str] | None = None  # name -> reason
        self.generation = 0  # increases whenever the indexed content changes
        path = db_path if db_path is not None else default_index_path(self.archive)
        self.db_path = path
        self._db = self._open(path)

    # -- lifecycle -----------------------------------------------------------------------

    def _open(self, path: Path | None) -> sqlite3.Connection:
        target = ":memory:" if path is None else str(path)
        try:
            db = self._connect(target)
        except sqlite3.DatabaseError as exc:
            if path is None:
                raise
            _log.warning("index %s is unusable (%s); rebuilding it", path, exc)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
            db = self._connect(target)
        return db

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        if _meta(db, "format") != _FORMAT:
            # a new file, or one of an older layout: (re)create the tables
            db.execute("BEGIN IMMEDIATE")
            if _meta(db, "format") != _FORMAT:  # nobody else did it meanwhile
                for table in ("files", *_CHILD_TABLES, *(r.table for r in ROLLUPS)):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute("DELETE FROM meta")  # including what the last refresh saw
                _set_meta(db, "format", _FORMAT)
            db.execute("COMMIT")
        db.executescript(_ALL_SCHEMA)
        db.execute("SELECT count(*) FROM files").fetchone()  # fails early on a corrupt file
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ArchiveIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- refresh -------------------------------------------------------------------------

    def refresh(self, *, full: bool = False) -> RefreshResult:
        """Bring the index up to date with the archive directory and report what changed.

        Without ``full``, an unchanged directory mtime (as last seen by any process using this
        index file) means nothing to do, and a changed one means only names that appeared or
        vanished are read. ``full`` also stats every file, to catch records rewritten in place
        (as the seed's scripts do), which leave the directory's mtime alone.
        """
        started = time.perf_counter()
        with self._lock:
            try:
                dir_mtime = self.archive.stat().st_mtime_ns
            except FileNotFoundError:
                dir_mtime = -1
            if self._dir_mtime_ns is None:  # what the index last saw, maybe in another process
                seen = _meta(self._db, "dir_mtime_ns")
                self._dir_mtime_ns = int(seen) if seen is not None else None
            if not full and dir_mtime == self._dir_mtime_ns:
                return RefreshResult(invalid=dict(self._invalid_cache()))
            if self._known is None:
                self._known = {
                    name: (size, mtime, inode)
                    for name, size, mtime, inode in self._db.execute(
                        "SELECT name, size, mtime_ns, inode FROM files"
                    )
                }
            known = self._known
            if full or self._dir_mtime_ns is None:  # a new index, or asked to: verify every file
                stats = self._list_with_stats() if dir_mtime != -1 else {}
                names: AbstractSet[str] = stats.keys()
                to_read = [n for n, st in stats.items() if known.get(n) != st]
            else:
                # New names, and names that now belong to another file: an atomic writer
                # replaces a record by renaming a new file (a new inode) over it. readdir gives
                # the inode without a stat; only a rewrite in place needs the full refresh.
                inodes = self._list_inodes() if dir_mtime != -1 else {}
                names = inodes.keys()
                to_read = [n for n, ino in inodes.items() if n not in known or known[n][2] != ino]
            gone = list(known.keys() - names)
            # A directory modified within the last moments may change again within the same
            # mtime tick (coarse on some filesystems): do not trust that mtime next time.
            if time.time_ns() - dir_mtime < _MTIME_SETTLE_NS:
                dir_mtime = _UNSETTLED
            result = self._apply(to_read, gone, len(names), started, dir_mtime, heal=full)
            self._dir_mtime_ns = dir_mtime
            if result.changed:
                self.generation += 1
            return result

    def _list_with_stats(self) -> dict[str, FileIdentity]:
        found: dict[str, FileIdentity] = {}
        with os.scandir(self.archive) as entries:
            for e in entries:
                if is_record_name(e.name):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    found[e.name] = (st.st_size, st.st_mtime_ns, _signed(st.st_ino))
        return found

    def _list_inodes(self) -> dict[str, int]:
        with os.scandir(self.archive) as entries:
            return {e.name: _signed(e.inode()) for e in entries if is_record_name(e.name)}

    def _stat(self, name: str) -> FileIdentity | None:
        try:
            st = (self.archive / name).lstat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, _signed(st.st_ino))

    def _apply(
        self,
        to_read: Iterable[str],
        gone: Iterable[str],
        scanned: int,
        started: float,
        dir_mtime: int,
        *,
        heal: bool = False,
    ) -> RefreshResult:
        """Parse ``to_read``, drop ``gone``, and store the result in one transaction.

        With ``heal`` (a full refresh), totals an overflow made inexact are recomputed.
        """
        from exporter.archive import files as archive  # noqa: PLC0415 (parsing records needs pydantic: load it late)

        known = self._known if self._known is not None else {}
        invalid = self._invalid_cache()
        added: list[RecordSummary] = []
        newly_invalid: dict[str, str] = {}
        stored: dict[str, FileIdentity] = {}
        vanished: list[str] = []
        for name in sorted(to_read):  # parse outside the write transaction
            path = self.archive / name
            try:
                record, st = archive.read_record_stat(path)
            except archive.InvalidRecordFile as exc:
                status = self._stat(name)
                if status is None:  # vanished between listing and reading
                    vanished.append(name)
                    continue
                newly_invalid[name] = exc.reason
                stored[name] = status
                continue
            added.append(summarize(record, name))
            stored[name] = (st.st_size, st.st_mtime_ns, _signed(st.st_ino))
        replaced = [n for n in (*gone, *vanished, *stored) if n in known]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed, reset = self._replaced_rows(replaced, known)
            # Everything about these names goes, also rows another process indexed meanwhile.
            changed = [*gone, *vanished, *stored]
            bulk = len(changed) >= _BULK_CHANGES and len(changed) * 8 >= len(known) + len(stored)
            with _bulk_load(db) if bulk else contextlib.nullcontext():
                _write_rows(db, changed, stored, newly_invalid, added)
            if changed:
                _count_write(db)
            if heal and not bulk:
                _heal_rollups(db)
            _set_meta(db, "dir_mtime_ns", str(dir_mtime))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._known = self._invalid = None  # re-read from the database next time
            raise
        for name in replaced:
            known.pop(name, None)
            invalid.pop(name, None)
        known.update(stored)
        invalid.update(newly_invalid)
        for name, reason in newly_invalid.items():
            _log.warning("skipping invalid record %s: %s", self.archive / name, reason)
        return RefreshResult(
            added=tuple(added),
            removed=tuple(removed),
            invalid=dict(invalid),
            newly_invalid=newly_invalid,
            reset=reset,
            scanned_files=scanned,
            seconds=time.perf_counter() - started,
        )

    def _replaced_rows(
        self, names: Sequence[str], known: dict[str, FileIdentity]
    ) -> tuple[list[RecordSummary], bool]:
        """The summaries being replaced, and whether they are not what this instance reported.

        Another process sharing the index file may have re-indexed or dropped a name since;
        then the rows no longer say what this instance's consumers counted, and the deltas of
        this refresh cannot correct them: the result says ``reset``.
        """
        found: list[RecordSummary] = []
        reset = False
        for name in names:
            identity = self._db.execute(
                "SELECT size, mtime_ns, inode FROM files WHERE name=?", (name,)
            ).fetchone()
            if identity is None or tuple(identity) != known.get(name):
                reset = True
            row = self._db.execute(_SELECT_ONE, (name,)).fetchone()
            if row is not None:
                found.append(_from_row(row))
        return found, reset

    def _invalid_cache(self) -> dict[str, str]:
        if self._invalid is None:
            self._invalid = dict(
                self._db.execute(
                    "SELECT name, invalid_reason FROM files WHERE invalid_reason IS NOT NULL"
                ).fetchall()
            )
        return self._invalid

    # -- queries -------------------------------------------------------------------------

    def select(
        self, sql: str, params: Sequence[object] = (), where: RecordFilter | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a read-only aggregate query over the index tables (see the module docstring).

        ``sql`` may contain ``{where}``, replaced by the filter's condition on ``files`` (alias
        ``f``) ; the filter's parameters come after ``params``. Use for sums and group-bys
        that would be slow over a hundred thousand summaries in Python.
        """
        with self._lock:
            return _query(self._db, sql, params, where)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A read transaction: every query made through it sees the same state of the index."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield Snapshot(self._db)
            finally:
                if self._db.in_transaction:  # SQLite may have rolled it back after an error
                    self._db.execute("COMMIT")

    def invalid_files(self) -> dict[str, str]:
        """Files of the archive that are not valid records, with the reason for each."""
        with self._lock:
            return dict(self._invalid_cache())

    def summaries(
        self,
        *,
        operation: str | None = None,
        since: datetime | float | None = None,
        recent: int | None = None,
    ) -> list[RecordSummary]:
        """Valid records, oldest first (by start timestamp, then file name).

        ``since`` keeps records that started at or after it; ``recent`` keeps the N most
        recent by timestamp (not by file name, unlike the seed's script).
        """
        where = RecordFilter(
            operation=operation,
            since=since.timestamp() if isinstance(since, datetime) else since,
            recent=recent,
        )
        rows = self.select(
            _SELECT_MANY + "{where} ORDER BY f.timestamp, f.name",
            where=where,
        )
        return [_from_row(r) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM files WHERE invalid_reason IS NULL"
            ).fetchone()
        return int(row[0])
