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

* ``files(id, name, size, mtime_ns, inode, invalid_reason, <the scalar fields of
  RecordSummary>)``
* ``models(file_id, model, input_tokens, output_tokens, cache_read_tokens, cost_usd,
  cost_source)``
* ``stages(file_id, stage, duration_seconds, items)``
* ``errors(file_id, error_type)``

Join a child table with ``JOIN files f ON f.id = m.file_id``. A summary's nested tuples are
its child rows, in the order they were inserted. The tables of
:data:`exporter.index.rollups.ROLLUPS` hold totals over these, kept current by triggers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from exporter.index.connection import (
    checkpoint,
    committed_without_checkpoint,
    in_background,
    open_in_child,
    open_index,
)
from exporter.index.parsing import (
    Fold,
    parse_files,
    parse_rows,
    signed_inode,
    validator_built_meanwhile,
)
from exporter.index.queries import Snapshot, SumOverflowError, query
from exporter.index.readback import ReadBack, added_ends, added_names
from exporter.index.schema import meta, read_summaries, set_meta
from exporter.index.summary import (
    END_SQL,
    ModelTokens,
    RecordFilter,
    RecordSummary,
    RefreshResult,
    StageSummary,
    summarize,
)
from exporter.index.writes import (
    NAMES_PER_QUERY,
    Chunk,
    FileIdentity,
    build_indexes,
    bulk_load,
    count_write,
    drop_rows,
    heal_rollups,
    insert_rows,
    next_id,
    rows_of,
    unpack,
)
from exporter.util.cpu import gc_paused
from exporter.util.forking import start_helper
from exporter.util.paths import is_record_name
from exporter.util.settings import path_setting

__all__ = [
    "ENV_INDEX",
    "ArchiveIndex",
    "Fold",
    "ModelTokens",
    "RecordFilter",
    "RecordSummary",
    "RefreshResult",
    "Snapshot",
    "StageSummary",
    "SumOverflowError",
    "added_ends",
    "added_names",
    "default_index_path",
    "summarize",
]

_log = logging.getLogger(__name__)

ENV_INDEX: Final = "BATCH_METRICS_INDEX"
# A directory mtime younger than this may not show a change made within the same tick.
_MTIME_SETTLE_NS: Final = 2_000_000_000
_INODE_SIGN: Final = 2**63  # inodes from here on are stored as negative numbers (signed_inode)
_UNSETTLED: Final = -2  # stored instead of such an mtime: it never matches a real one
# A refresh changing at least this many records, and an eighth of the index, recomputes the
# rollups in one pass instead of letting their triggers add and subtract row by row.
_BULK_CHANGES: Final = 1000
# A first build of at most this many records may write its rows after refresh returns
# (``write_later``): it holds every chunk's packed rows until then, ~250 bytes a record.
_WRITE_LATER_UP_TO: Final = 500_000
_WRITER_MOMENT: Final = 0.05  # seconds a refresh waits for those rows, before it does without


def _indexed(db: sqlite3.Connection) -> None:
    """Build a bulk load's indexes in a write transaction of their own, committed without
    a checkpoint (the caller's next step copies them, see :func:`checkpoint`)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        build_indexes(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    committed_without_checkpoint(db)


def _indexed_and_copied(db: sqlite3.Connection) -> None:
    _indexed(db)
    checkpoint(db)


def _valid_rows(
    names: Sequence[str], first_id: int, stored: dict[str, FileIdentity], invalid: dict[str, str]
) -> tuple[list[int], list[str]]:
    """The ids and names of the valid rows a bulk load wrote: ``names[i]`` got id
    ``first_id + i`` if its file was read (``stored``) and held a record (not ``invalid``)."""
    ids: list[int] = []
    valid: list[str] = []
    for file_id, name in enumerate(names, first_id):
        if name in stored and name not in invalid:
            ids.append(file_id)
            valid.append(name)
    return ids, valid


def _noting(
    chunks: Iterable[Chunk],
    stored: dict[str, FileIdentity],
    invalid: dict[str, str],
    folded: list[object],
) -> Iterator[Chunk]:
    """``chunks``, each once its files' identities, invalid ones and fold are noted."""
    for chunk in chunks:
        stored.update(chunk.stored)
        invalid.update(chunk.invalid)
        folded.append(chunk.folded)
        yield chunk


def default_index_path(archive: Path, *, purpose: str = "") -> Path | None:
    """Where the index of ``archive`` lives unless told otherwise.

    ``$BATCH_METRICS_INDEX`` if set, else the user's cache directory, keyed by the archive's
    absolute path and ``purpose`` (a consumer that follows the index's deltas, like ``serve``,
    keeps a file of its own); ``None`` (an in-memory index) when no cache directory is
    writable. Not inside
    the archive: SQLite's journal files would change the directory's mtime, which is how the
    index notices new records, and the archive may be mounted read-only.
    """
    configured = path_setting("INDEX")
    if configured is not None:
        return configured
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batch-metrics"
    digest = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:16]
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    name = f"index-{digest}{'-' + purpose if purpose else ''}.sqlite"
    return cache / name if os.access(cache, os.W_OK) else None


class ArchiveIndex:
    """Incremental index of one archive directory. Thread-safe; one instance per process.

    Fork-aware: a forked child that uses an instance its parent made reads through a read-only
    connection of its own (see :meth:`_adopt`), for instance to read its share of a count.
    """

    def __init__(self, archive: Path, db_path: Path | None = None) -> None:
        self.archive = Path(archive)
        self._lock = threading.RLock()  # a snapshot may call len() or select()
        self._pid = os.getpid()  # the process that opened the connection
        self._dir_mtime_ns: int | None = None
        self._known: dict[str, FileIdentity] | None = None  # name -> (size, mtime_ns, inode)
        self._invalid: dict[str, str] | None = None  # name -> reason
        self.generation = 0  # increases whenever the indexed content changes
        path = db_path if db_path is not None else default_index_path(self.archive)
        self.db_path = path
        self._db = open_index(path)
        self._helpers: list[threading.Thread] = []  # a bulk load's, see _finish_bulk
        # writing a first build's rows after its refresh returned (refresh's write_later)
        self._writer: threading.Thread | None = None
        self._write_lost = False  # that writing failed: the next refresh says reset

    # -- lifecycle -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The lock held, and this process's connection: every use of the index goes here.

        Rows that a refresh left to write later (``write_later``) are written first: a
        query never sees the index without them.
        """
        if self._pid != os.getpid():
            self._adopt()
        while True:
            self._written()
            self._lock.acquire()
            if not self._writing():
                break
            self._lock.release()  # a refresh handed its rows to a writer meanwhile
        try:
            yield self._db
        finally:
            self._lock.release()

    def _writing(self) -> bool:
        """Whether another thread is writing the rows of a refresh that returned."""
        writer = self._writer
        return writer is not None and writer is not threading.current_thread() and writer.is_alive()

    def _written(self) -> None:
        """Wait until the rows a refresh left to write are written (or their writing failed)."""
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join()

    def _adopt(self) -> None:
        """In a forked child: a connection of the child's own (see :func:`open_in_child`), and a
        lock of its own (the one fork copied may be held by a thread the child does not have).
        """
        self._lock = threading.RLock()
        self._db = open_in_child(self._db, self.db_path)
        self._pid = os.getpid()
        self._writer = None  # a fork waits for it (start_helper): the rows are written

    def close(self) -> None:
        with self._locked() as db:
            self._helpers_done()
            db.close()

    def _helpers_done(self) -> None:
        """Wait for what a bulk load left running (copying its log, building its indexes)."""
        for helper in self._helpers:
            helper.join()
        self._helpers.clear()

    def __enter__(self) -> ArchiveIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- refresh -------------------------------------------------------------------------

    def refresh(
        self, *, full: bool = False, fold: Fold | None = None, write_later: bool = False
    ) -> RefreshResult:
        """Bring the index up to date with the archive directory and report what changed.

        Without ``full``, an unchanged directory mtime (as last seen by any process using this
        index file) means nothing to do, and a changed one means only names that appeared or
        vanished are read. ``full`` also stats every file, to catch records rewritten in place
        (as the seed's scripts do), which leave the directory's mtime alone. ``fold`` is made
        of the records a bulk load adds, where they are parsed (:attr:`RefreshResult.folded`).

        ``write_later``, for a caller that answers first from what it folded: a first build
        returns once every record is parsed, and a thread writes the rows, then builds the
        read indexes. Every other use of the index waits for the rows; a refresh meanwhile
        waits a moment for them, then finds nothing new (the build listed the archive moments
        ago; the first refresh after the rows are written sees what changed since). Should
        their writing fail, nothing of them is kept, and the next refresh reads every record
        again and says ``reset``.
        """
        if self._writing():
            # Give it a moment: scrapes that come back at once would otherwise keep the
            # interpreter lock from it (eight such clients made it ten times slower).
            writer = self._writer
            if writer is not None:
                writer.join(timeout=_WRITER_MOMENT)
            if self._writing():
                return RefreshResult(invalid=dict(self._invalid or {}))
        started = time.perf_counter()
        with self._locked():
            lost, self._write_lost = self._write_lost, False
            result = self._refresh(full, fold, write_later, started)
            return replace(result, reset=True) if lost else result

    def _refresh(
        self, full: bool, fold: Fold | None, write_later: bool, started: float
    ) -> RefreshResult:
        try:
            dir_mtime = self.archive.stat().st_mtime_ns
        except FileNotFoundError:
            dir_mtime = -1
        if self._dir_mtime_ns is None:  # what the index last saw, maybe in another process
            seen = meta(self._db, "dir_mtime_ns")
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
        if known and (full or self._dir_mtime_ns is None):  # asked to, or a new instance
            # verify every file it knows (an empty index reads every file anyway: the
            # read's own fstat gives its identity, no need to stat it first)
            stats = self._list_with_stats() if dir_mtime != -1 else {}
            names: AbstractSet[str] = stats.keys()
            to_read = [n for n, st in stats.items() if known.get(n) != st]
        elif not known:
            # A first build reads every record, and each read's own fstat gives its
            # identity: the names are enough. Meanwhile, ready the parser.
            with validator_built_meanwhile():
                # plain names: iterdir's Path objects cost 0.1 s at 100,000 files
                listed = os.listdir(self.archive) if dir_mtime != -1 else []  # noqa: PTH208
            names = frozenset(listed)
            to_read = [n for n in listed if is_record_name(n)]
        else:
            # New names, and names that now belong to another file: an atomic writer
            # replaces a record by renaming a new file (a new inode) over it. readdir gives
            # the inode without a stat; only a rewrite in place needs the full refresh.
            listing = self._list_inodes() if dir_mtime != -1 else {}
            names = listing.keys()
            to_read = [
                n
                for n, ino in listing.items()
                if ((k := known.get(n)) is None or k[2] != ino) and is_record_name(n)
            ]
        gone = list(known.keys() - names)
        # A directory modified within the last moments may change again within the same
        # mtime tick (coarse on some filesystems): do not trust that mtime next time.
        if time.time_ns() - dir_mtime < _MTIME_SETTLE_NS:
            dir_mtime = _UNSETTLED
        result = self._apply(
            to_read,
            gone,
            len(names),
            started,
            dir_mtime,
            heal=full,
            fold=fold,
            write_later=write_later,
        )
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
                    found[e.name] = (st.st_size, st.st_mtime_ns, signed_inode(st.st_ino))
        return found

    def _list_inodes(self) -> dict[str, int]:
        """Every name in the archive directory (records or not: telling them apart costs more
        than keeping them), with its inode as stored (:func:`signed_inode`, inlined)."""
        with os.scandir(self.archive) as entries:
            return {e.name: i if (i := e.inode()) < _INODE_SIGN else i - 2**64 for e in entries}

    def _apply(
        self,
        to_read: Iterable[str],
        gone: Iterable[str],
        scanned: int,
        started: float,
        dir_mtime: int,
        *,
        heal: bool = False,
        fold: Fold | None = None,
        write_later: bool = False,
    ) -> RefreshResult:
        """Parse ``to_read``, drop ``gone``, and store the result in one transaction (a bulk
        load's indexes follow in another, see :meth:`_finish_bulk`).

        With ``heal`` (a full refresh), totals an overflow made inexact are recomputed. A bulk
        change (a first build) is parsed into rows by worker processes and written as they
        come, under the write lock, or with ``write_later`` (a first build only) by a thread
        once all are parsed (:meth:`_write_later`); its summaries are read back from the index
        only if asked for. Otherwise files are parsed first and the transaction is short.
        """
        known = self._known if self._known is not None else {}
        invalid = self._invalid_cache()
        names, gone = sorted(to_read), list(gone)
        changed = [*gone, *names]  # every row of these names goes, also another process's
        replaced = [n for n in changed if n in known]
        bulk = len(changed) >= _BULK_CHANGES and len(changed) * 8 >= len(known) + len(names)
        first_build = not known
        later = bulk and write_later and first_build and len(names) <= _WRITE_LATER_UP_TO
        if bulk:
            self._helpers_done()  # the last bulk load's, which holds the write lock a while
        outcomes = [] if bulk else parse_files(self.archive, names)  # outside the transaction
        stored: dict[str, FileIdentity] = {}
        newly_invalid: dict[str, str] = {}
        added: Sequence[RecordSummary] = []
        folded: list[object] = []
        held: deque[Chunk] = deque()  # with ``later``: every chunk, for the writer
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed, reset = self._replaced_rows(replaced, known)
            drop_rows(db, changed)
            first_id = next_id(db)
            if bulk:
                stored, newly_invalid, folded, held = self._bulk(names, first_id, fold, later)
                added = ReadBack(
                    self,
                    range(first_id, first_id + len(names)),
                    _valid_rows(names, first_id, stored, newly_invalid),
                )
            else:
                rows = rows_of(outcomes, first_id, keep=True)
                insert_rows(db, rows)
                stored, newly_invalid, added = rows.stored, rows.invalid, rows.added
            if not later:
                self._conclude(db, bool(changed), dir_mtime, heal=heal and not bulk, bulk=bulk)
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
        if later:  # the transaction goes on in the writer, which takes the lock when this ends
            self._writer = start_helper(self._write_later, held, dir_mtime, name="writing rows")
        elif bulk:
            self._finish_bulk(later=False)
        return RefreshResult(
            added=added,
            removed=tuple(removed),
            invalid=dict(invalid),
            newly_invalid=newly_invalid,
            reset=reset,
            scanned_files=scanned,
            seconds=time.perf_counter() - started,
            folded=tuple(folded) if fold is not None and None not in folded else (),
            complete=first_build,
        )

    def _bulk(
        self, names: Sequence[str], first_id: int, fold: Fold | None, later: bool
    ) -> tuple[dict[str, FileIdentity], dict[str, str], list[object], deque[Chunk]]:
        """A bulk load's chunks, parsed by worker processes and written as they come (or, with
        ``later``, all held for the writer); what its files were, the invalid ones, the folds."""
        stored: dict[str, FileIdentity] = {}
        invalid: dict[str, str] = {}
        folded: list[object] = []
        held: deque[Chunk] = deque()
        chunks = _noting(parse_rows(self.archive, names, first_id, fold), stored, invalid, folded)
        with gc_paused():
            if later:
                held.extend(chunks)
            else:
                with bulk_load(self._db) as write:
                    for chunk in chunks:
                        write(unpack(chunk))
        return stored, invalid, folded, held

    def _conclude(
        self, db: sqlite3.Connection, changed: bool, dir_mtime: int, *, heal: bool, bulk: bool
    ) -> None:
        """The end of a refresh's transaction: note the change and what the archive's
        directory looked like, and commit."""
        if changed:
            count_write(db)
        if heal:
            heal_rollups(db)
        set_meta(db, "dir_mtime_ns", str(dir_mtime))
        self._commit(db, bulk=bulk)

    def _write_later(self, held: deque[Chunk], dir_mtime: int) -> None:
        """The writer of a first build that refresh left to write later (``write_later``):
        its rows, into the transaction the refresh began, then its indexes. Should anything
        fail, nothing of the build is kept, and the next refresh starts over and says so."""
        db = self._db
        with self._lock, gc_paused():
            try:
                with bulk_load(db) as write:
                    while held:  # each chunk's memory goes as it is written
                        write(unpack(held.popleft()))
                self._conclude(db, True, dir_mtime, heal=False, bulk=True)
            except Exception as exc:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself
                    db.execute("ROLLBACK")
                held.clear()
                self._known = self._invalid = None
                self._dir_mtime_ns = None
                self._write_lost = True
                _log.warning(
                    "index %s: writing a first build failed (%s); the next refresh reads the "
                    "archive again",
                    self.db_path or "in memory",
                    exc,
                )
                return
            self._finish_bulk(later=True)

    def _commit(self, db: sqlite3.Connection, *, bulk: bool) -> None:
        """COMMIT; a bulk load's pages are copied from the log into the file by a thread, while
        the indexes are built and the caller reads (~0.2 s less at 100,000 records)."""
        if not bulk or self.db_path is None:
            db.execute("COMMIT")
            return
        committed_without_checkpoint(db)
        self._helpers.append(in_background(self.db_path, checkpoint, name="checkpoint"))

    def _finish_bulk(self, *, later: bool) -> None:
        """Build the indexes a bulk load dropped (:func:`~exporter.index.writes.bulk_load`):
        here, or with ``later`` in a thread of its own. One that fails leaves the rows as they
        are, and queries slower, until the next open of the index makes it."""
        if later and self.db_path is not None:
            self._helpers.append(
                in_background(self.db_path, _indexed_and_copied, name="building indexes")
            )
            return
        try:
            _indexed(self._db)
        except sqlite3.Error as exc:
            _log.warning("index %s: building indexes failed: %s", self.db_path, exc)
            return
        if self.db_path is not None:
            self._helpers.append(in_background(self.db_path, checkpoint, name="checkpoint"))

    def _replaced_rows(
        self, names: Sequence[str], known: dict[str, FileIdentity]
    ) -> tuple[list[RecordSummary], bool]:
        """The summaries being replaced, and whether they are not what this instance reported.

        Another process sharing the index file may have re-indexed or dropped a name since;
        then the rows no longer say what this instance's consumers counted, and the deltas of
        this refresh cannot correct them: the result says ``reset``.
        """
        reset = False
        for name in names:
            identity = self._db.execute(
                "SELECT size, mtime_ns, inode FROM files WHERE name=?", (name,)
            ).fetchone()
            if identity is None or tuple(identity) != known.get(name):
                reset = True
        found: dict[str, RecordSummary] = {}
        for start in range(0, len(names), NAMES_PER_QUERY):
            chunk = names[start : start + NAMES_PER_QUERY]
            where = f"f.invalid_reason IS NULL AND f.name IN ({', '.join('?' * len(chunk))})"
            found.update((s.file, s) for s in read_summaries(self._db, where, chunk))
        return [found[name] for name in names if name in found], reset

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
        with self._locked() as db:
            return query(db, sql, params, where)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A read transaction: every query made through it sees the same state of the index."""
        with self._locked() as db:
            db.execute("BEGIN")
            try:
                yield Snapshot(db)
            finally:
                if db.in_transaction:  # SQLite may have rolled it back after an error
                    db.execute("COMMIT")

    def invalid_files(self) -> dict[str, str]:
        """Files of the archive that are not valid records, with the reason for each (known
        from the parse: a first build's rows being written are not waited for)."""
        known = self._invalid
        if known is not None and self._writing():
            return dict(known)
        with self._locked():
            return dict(self._invalid_cache())

    def summaries(
        self,
        *,
        operation: str | None = None,
        since: datetime | float | None = None,
        recent: int | None = None,
    ) -> list[RecordSummary]:
        """Valid records, oldest first (by start timestamp, then file name).

        ``since`` keeps records that ended at or after it; ``recent`` keeps the N most
        recent by timestamp (not by file name, unlike the seed's script).
        """
        where = RecordFilter(
            operation=operation,
            since=since.timestamp() if isinstance(since, datetime) else since,
            recent=recent,
        )
        return self.read(where=where, order="f.timestamp, f.name")

    def read(
        self,
        condition: str = "TRUE",
        params: Sequence[object] = (),
        *,
        where: RecordFilter | None = None,
        order: str = "f.id",
    ) -> list[RecordSummary]:
        """The summaries of the valid records that ``condition`` on ``files f`` (with
        ``params``) and ``where`` select, in ``order``, as one state of the index."""
        wanted, extra = (where or RecordFilter()).sql()
        with self._locked() as db:
            return read_summaries(db, f"{wanted} AND ({condition})", [*extra, *params], order)

    def end_times(self) -> dict[str, float]:
        """Every valid record's file name and end time (the window rule's time)."""
        rows = self.select(f"SELECT f.name, {END_SQL} FROM files f WHERE {{where}}")  # noqa: S608
        return dict(rows)

    def __len__(self) -> int:
        with self._locked() as db:
            row = db.execute("SELECT count(*) FROM files WHERE invalid_reason IS NULL").fetchone()
        return int(row[0])
