"""A bulk load (a first build: rows made by worker processes) stores what refreshing one
file at a time stores: the same rows, invalid files, rollups, and summaries it reports."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from exporter.archive import model
from exporter.index import connection, parsing, store
from exporter.index.rollups import ROLLUPS
from exporter.index.schema import BULK_INDEXES, READ_INDEXES
from exporter.index.store import ArchiveIndex, added_names
from exporter.index.writes import Chunk, Rows, bulk_load
from exporter.util.forking import start_helper
from tests.support.generated_archive import write_archive

RECORDS = 300
INVALID = {
    "batch-bad-1-execute.json": b"{not json",
    "batch-bad-2-review.json": b'{"batch_id": "2", "operation": "review"}',
    "batch-bad-3-generate.json": b"",
}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "completed-batches"
    write_archive(path, RECORDS, every_nth_without=7)
    for name, content in INVALID.items():
        (path / name).write_bytes(content)
    return path


def _parallel(monkeypatch: pytest.MonkeyPatch) -> list[Chunk]:
    """Make a few hundred changes a bulk load, parsed by two workers; returns the chunks."""
    monkeypatch.setattr(store, "_BULK_CHANGES", 50)
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 50)
    monkeypatch.setattr(parsing, "usable_cores", lambda: 2)
    chunks: list[Chunk] = []
    real = parsing.parse_rows

    def spy(
        archive: Path, names: Sequence[str], first_id: int, fold: parsing.Fold | None = None
    ) -> Iterator[Chunk]:
        for chunk in real(archive, names, first_id, fold):
            chunks.append(chunk)
            yield chunk

    monkeypatch.setattr(store, "parse_rows", spy)
    return chunks


def _contents(db_path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, without ids (which differ by how the rows were written); the
    rollups' totals (sum and compensation added) with floats to 12 significant digits: a bulk
    load sums each chunk in Python, exactly rounded, the triggers row by row."""
    db = sqlite3.connect(db_path)
    try:
        tables = {
            "files": "SELECT * FROM files ORDER BY name",
            "models": "SELECT f.name, m.* FROM models m JOIN files f ON f.id = m.file_id",
            "stages": "SELECT f.name, s.* FROM stages s JOIN files f ON f.id = s.file_id",
            "errors": "SELECT f.name, e.* FROM errors e JOIN files f ON f.id = e.file_id",
            **{r.table: r.read_sql() for r in ROLLUPS},
        }
        found = {}
        for table, sql in tables.items():
            rows = db.execute(sql).fetchall()
            # drop id columns: files.id (first) and the children's file_id (second)
            if table == "files":
                rows = [r[1:] for r in rows]
            elif table in ("models", "stages", "errors"):
                rows = [(r[0], *r[2:]) for r in rows]
            else:
                rows = [tuple(_significant(v) for v in r) for r in rows]
            found[table] = sorted(rows, key=repr)
        return found
    finally:
        db.close()


def _significant(value: object) -> object:
    return float(f"{value:.12g}") if isinstance(value, float) else value


def test_a_parallel_bulk_load_equals_refreshing_file_by_file(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = sorted(p.name for p in archive.iterdir())
    one_by_one = tmp_path / "incremental.sqlite"
    with ArchiveIndex(archive, db_path=one_by_one) as index:
        index.refresh()  # under the bulk threshold: parsed here, summaries kept
    chunks = _parallel(monkeypatch)
    bulk = tmp_path / "bulk.sqlite"
    with ArchiveIndex(archive, db_path=bulk) as index:
        result = index.refresh()
        assert len(chunks) > 1  # made by worker processes, chunk by chunk
        assert len(result.added) == RECORDS  # known before the summaries are read back
        assert [s.file for s in result.added] == sorted(n for n in names if n not in INVALID)
        assert sorted(result.added) == sorted(index.summaries())
        assert set(result.newly_invalid) == set(INVALID)
        assert len(index) == RECORDS
    assert _contents(bulk) == _contents(one_by_one)


def test_a_bulk_load_after_a_small_one_keeps_ids_apart(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows already there keep their ids; the bulk's ids start after them."""
    db_path = tmp_path / "index.sqlite"
    names = sorted(n for n in (p.name for p in archive.iterdir()) if n not in INVALID)
    moved = archive.parent / "later"
    moved.mkdir()
    for name in names[100:]:
        (archive / name).rename(moved / name)
    with ArchiveIndex(archive, db_path=db_path) as index:
        assert len(index.refresh().added) == 100
    for name in names[100:]:
        (moved / name).rename(archive / name)
    chunks = _parallel(monkeypatch)
    with ArchiveIndex(archive, db_path=db_path) as index:
        result = index.refresh()
        assert len(chunks) > 1
        assert [s.file for s in result.added] == names[100:]
        assert len(index) == RECORDS
    reference = tmp_path / "reference.sqlite"
    with ArchiveIndex(archive, db_path=reference) as index:
        index.refresh()
    assert _contents(db_path) == _contents(reference)


@pytest.mark.parametrize("count", [1, 303, 4000, 100_003])
@pytest.mark.parametrize("workers", [2, 4])
def test_chunks_cover_every_name_once_and_shrink_once_little_is_left(
    count: int, workers: int
) -> None:
    starts = parsing._chunk_starts(count, workers)
    sizes = [end - start for start, end in zip(starts, [*starts[1:], count], strict=True)]
    assert starts[0] == 0
    assert sum(sizes) == count
    assert all(size > 0 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)  # even first, then smaller and smaller
    even = sizes[0]
    tail = [size for size in sizes if size < even]
    # the last round of the workers is cut in pieces, none smaller than the floor but the last
    assert all(size >= parsing._LAST_CHUNK for size in tail[:-1])
    if count >= 100_000:
        assert len(tail) > workers
        assert sizes[-1] <= parsing._LAST_CHUNK


def test_a_first_build_readies_the_validator_while_listing_and_forks_with_one_thread(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built in the parent, the workers inherit it; the thread that built it is gone before
    the fork (forking a process with threads is unsafe, and parse_rows would not)."""
    model._record_adapter.cache_clear()
    seen: list[tuple[int, int]] = []
    real = parsing.parse_rows

    def spy(
        archive: Path, names: Sequence[str], first_id: int, fold: parsing.Fold | None = None
    ) -> Iterator[Chunk]:
        seen.append((threading.active_count(), model._record_adapter.cache_info().currsize))
        yield from real(archive, names, first_id, fold)

    _parallel(monkeypatch)
    monkeypatch.setattr(store, "parse_rows", spy)
    with ArchiveIndex(archive, db_path=tmp_path / "index.sqlite") as index:
        assert len(index.refresh().added) == RECORDS
    assert seen == [(threading.active_count(), 1)]


def _helper_jobs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, threading.Thread]]:
    """Record the helper threads the index starts (their names, and the threads)."""
    started: list[tuple[str, threading.Thread]] = []
    real = connection.in_background

    def spy(
        path: Path, job: Callable[[sqlite3.Connection], object], *, name: str
    ) -> threading.Thread:
        started.append((name, real(path, job, name=name)))
        return started[-1][1]

    monkeypatch.setattr(store, "in_background", spy)
    return started


def _indexes(db_path: Path) -> set[str]:
    """The names of the indexes in the file, as another connection sees them."""
    db = sqlite3.connect(db_path)
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        db.close()


def test_a_bulk_load_is_indexed_before_refresh_returns_and_its_log_copied_in_threads(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _parallel(monkeypatch)
    started = _helper_jobs(monkeypatch)
    db_path = tmp_path / "index.sqlite"
    with ArchiveIndex(archive, db_path=db_path) as index:
        index.refresh()
        assert set(BULK_INDEXES) <= _indexes(db_path)
        # the rows' log, copied while the indexes were built; then the indexes' own
        assert [name for name, _ in started] == ["checkpoint", "checkpoint"]
        index.refresh(full=True)  # a few changes at most: committed as usual
        assert len(started) == 2
    assert not any(thread.is_alive() for _, thread in started)


def _held_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Hold a bulk load's writing until the first event is set; the second is set when a
    thread called ``writing rows`` is held there."""
    release, entered = threading.Event(), threading.Event()

    @contextlib.contextmanager
    def held(db: sqlite3.Connection) -> Iterator[Callable[[Rows], None]]:
        if threading.current_thread().name == "writing rows":
            entered.set()
        assert release.wait(timeout=30)
        with bulk_load(db) as write:
            yield write

    monkeypatch.setattr(store, "bulk_load", held)
    return release, entered


def test_a_first_build_written_later_answers_from_its_parse_and_every_query_waits_for_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve's first start: refresh returns once every record is parsed and folded, a thread
    writes the rows and then the indexes; a query meanwhile waits for the rows (it never sees
    the index without them), a refresh meanwhile finds nothing new without waiting."""
    _parallel(monkeypatch)
    started = _helper_jobs(monkeypatch)
    reference = tmp_path / "reference.sqlite"
    with ArchiveIndex(archive, db_path=reference) as index:
        expected = list(index.refresh().added)
        expected_runs = index.select("SELECT operation, count(*) FROM files GROUP BY 1")
    started.clear()
    release, entered = _held_writes(monkeypatch)
    db_path = tmp_path / "index.sqlite"
    with ArchiveIndex(archive, db_path=db_path) as index:
        result = index.refresh(fold=len, write_later=True)
        assert result.complete
        assert sum(cast(int, n) for n in result.folded) == RECORDS
        assert added_names(result.added) == [s.file for s in expected]  # read nothing back
        assert set(result.newly_invalid) == set(INVALID)
        assert entered.wait(timeout=30)  # its thread, waiting to write
        meanwhile = index.refresh(full=True)
        assert not meanwhile.changed
        assert set(meanwhile.invalid) == set(INVALID)
        assert set(index.invalid_files()) == set(INVALID)  # known from the parse: no wait
        counted: list[int] = []
        query = threading.Thread(target=lambda: counted.append(len(index)))
        query.start()
        query.join(timeout=0.3)
        assert query.is_alive()  # waiting for the rows
        release.set()
        query.join(timeout=30)
        assert counted == [RECORDS]
        assert list(result.added) == expected
        assert index.select("SELECT operation, count(*) FROM files GROUP BY 1") == expected_runs
        assert sorted(name for name, _ in started) == ["building indexes", "checkpoint"]
        assert not index.refresh().changed  # the archive did not change since the build
    assert set(BULK_INDEXES) <= _indexes(db_path)  # close waited for them
    assert _contents(db_path) == _contents(reference)


def test_a_first_build_whose_later_writing_fails_keeps_nothing_and_is_read_again(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk while the rows are written: the index holds none of them, and the next
    refresh reads every record again and says ``reset`` (what its caller counted from the
    first one is not in the index)."""
    _parallel(monkeypatch)

    @contextlib.contextmanager
    def full_disk(db: sqlite3.Connection) -> Iterator[Callable[[Rows], None]]:
        with bulk_load(db) as write:
            write(Rows([], [], [], [], {}, {}, []))
            raise sqlite3.OperationalError("database or disk is full")
        yield write  # never reached

    db_path = tmp_path / "index.sqlite"
    with ArchiveIndex(archive, db_path=db_path) as index:
        with monkeypatch.context() as failing:
            failing.setattr(store, "bulk_load", full_disk)
            first = index.refresh(write_later=True)
            assert len(first.added) == RECORDS
            assert len(index) == 0  # waited for the writer, which kept nothing
        assert "writing a first build failed (database or disk is full)" in caplog.text
        again = index.refresh()
        assert again.reset
        assert len(again.added) == RECORDS
        assert len(index) == RECORDS
        assert not index.refresh().changed


def _helpers_started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the helper threads the index starts itself (not through in_background)."""
    helpers: list[str] = []

    def spy(target: Callable[..., object], *args: object, name: str) -> threading.Thread:
        helpers.append(name)
        return start_helper(target, *args, name=name)

    monkeypatch.setattr(store, "start_helper", spy)
    return helpers


def test_only_a_first_build_is_written_later(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk change to an index that has rows writes them before refresh returns: its
    removed and replaced rows must be read and dropped in the same transaction."""
    _parallel(monkeypatch)
    db_path = tmp_path / "index.sqlite"
    with ArchiveIndex(archive, db_path=db_path) as index:
        index.refresh()
    for path in sorted(archive.iterdir())[: RECORDS // 2]:
        path.write_bytes(path.read_bytes())  # rewritten in place: seen by a full refresh
    helpers = _helpers_started(monkeypatch)
    monkeypatch.setattr(store, "_BULK_CHANGES", 10)
    with ArchiveIndex(archive, db_path=db_path) as index:
        result = index.refresh(full=True, write_later=True)
        assert not result.complete
        assert len(result.added) > 10  # a bulk change
        assert helpers == []  # written here, before refresh returned


def test_a_first_build_too_large_to_hold_is_written_as_it_is_parsed(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held rows take memory (~250 bytes a record): past the limit, none are held."""
    _parallel(monkeypatch)
    helpers = _helpers_started(monkeypatch)
    monkeypatch.setattr(store, "_WRITE_LATER_UP_TO", RECORDS - 1)
    with ArchiveIndex(archive, db_path=tmp_path / "index.sqlite") as index:
        result = index.refresh(write_later=True)
        assert result.complete
        assert helpers == []
        assert len(index) == RECORDS


def test_indexes_a_bulk_load_failed_to_build_are_made_by_the_next_open(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows stay (committed before): only the indexes are missing, until the next open."""
    _parallel(monkeypatch)

    def full_disk(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    db_path = tmp_path / "index.sqlite"
    with monkeypatch.context() as failing:
        failing.setattr(store, "build_indexes", full_disk)
        with ArchiveIndex(archive, db_path=db_path) as index:
            assert len(index.refresh().added) == RECORDS
            assert len(index) == RECORDS
    assert "building indexes failed: database or disk is full" in caplog.text
    assert not set(READ_INDEXES) & _indexes(db_path)
    with ArchiveIndex(archive, db_path=db_path) as index:
        assert len(index) == RECORDS
    assert set(BULK_INDEXES) <= _indexes(db_path)
