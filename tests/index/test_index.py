"""The archive index: incremental refresh, persistence, filters, aggregates, self-repair."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.archive import files as archive_module
from exporter.archive.files import read_bounded, read_record_stat, write_record
from exporter.archive.model import BatchRecord
from exporter.index import store
from exporter.index.store import ArchiveIndex, RecordFilter, summarize

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_record(
    batch_id: str,
    operation: str = "execute",
    *,
    minutes: int = 0,
    duration: float = 100.0,
    success: int = 3,
    failure: int = 1,
    run_id: str | None = None,
) -> BatchRecord:
    return BatchRecord.model_validate(
        {
            "batch_id": batch_id,
            "operation": operation,
            "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
            "duration_seconds": duration,
            "run_id": run_id or f"run-{batch_id}",
            "metrics": {
                "total_items": success + failure,
                "success_count": success,
                "failure_count": failure,
                "partial_count": 0,
                "stages": 1,
                "token_usage": {
                    "input_tokens": 1000,
                    "output_tokens": 200,
                    "total_tokens": 1200,
                    "by_model": [
                        {
                            "model": "claude-sonnet-4-5",
                            "input_tokens": 1000,
                            "output_tokens": 200,
                            "cost_usd": 0.006,
                            "cost_source": "estimate",
                        }
                    ],
                },
                "stage_durations": [{"stage": 1, "duration_seconds": duration, "items": ["a"]}],
                "errors": [{"item_id": "a", "error_type": "TimeoutError"}] * failure,
            },
        }
    )


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "completed-batches"
    path.mkdir()
    return path


def test_first_refresh_indexes_valid_records_and_names_invalid_ones(archive: Path) -> None:
    write_record(archive, make_record("1", minutes=5))
    write_record(archive, make_record("2", "review", minutes=1))
    (archive / "batch-3-execute.json").write_text("{not json")
    (archive / "notes.txt").write_text("ignored: not a batch-*.json file")

    with ArchiveIndex(archive) as idx:
        result = idx.refresh()
        assert sorted(s.file for s in result.added) == [
            "batch-1-execute.json",
            "batch-2-review.json",
        ]
        assert list(result.invalid) == ["batch-3-execute.json"]
        assert result.invalid["batch-3-execute.json"].startswith("malformed JSON")
        summaries = idx.summaries()
    # oldest first, by start timestamp
    assert [(s.batch_id, s.operation) for s in summaries] == [("2", "review"), ("1", "execute")]
    first = summaries[1]
    assert first.timestamp == (T0 + timedelta(minutes=5)).timestamp()
    assert (first.duration_seconds, first.total_items, first.success_count) == (100.0, 4, 3)
    assert first.models[0].model == "claude-sonnet-4-5"
    assert first.models[0].cost_usd == pytest.approx(0.006)
    assert first.stage_durations[0].items == 1
    assert first.error_types == ("TimeoutError",)
    assert first.end_timestamp == first.timestamp + 100.0


def test_a_summary_reads_back_as_its_record_was_written(archive: Path) -> None:
    """Models, stages and errors come back in the record's own order (not sorted, not mixed
    with another record's rows written after them)."""
    record = make_record("1", failure=3).model_copy(deep=True)
    usage = record.metrics.token_usage
    assert usage is not None and usage.by_model is not None
    first = usage.by_model[0]
    usage.by_model = [
        first.model_copy(update={"model": name, "input_tokens": n})
        for name, n in (("zeta", 3), ("alpha", 1), ("mid", 2))
    ]
    stage = record.metrics.stage_durations
    assert stage is not None
    record.metrics.stage_durations = [
        stage[0].model_copy(update={"stage": number, "items": ["x"] * number})
        for number in (3, 1, 2)
    ] + [stage[0].model_copy(update={"stage": None})]
    errors = record.metrics.errors
    assert errors is not None
    record.metrics.errors = [
        errors[0].model_copy(update={"error_type": kind}) for kind in ("b", "a", "b")
    ]
    write_record(archive, make_record("2"))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        path = write_record(archive, record)
        write_record(archive, make_record("2", duration=5.0))  # the same run: replaced
        idx.refresh()
        read = {s.file: s for s in idx.summaries()}
    assert read[path.name] == summarize(read_record_stat(path)[0], path.name)
    assert [m.model for m in read[path.name].models] == ["zeta", "alpha", "mid"]
    assert [s.stage for s in read[path.name].stage_durations] == [3, 1, 2, None]
    assert read[path.name].error_types == ("b", "a", "b")


def test_refresh_reports_only_what_changed(archive: Path) -> None:
    write_record(archive, make_record("1"))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        generation = idx.generation
        assert not idx.refresh().changed
        assert idx.generation == generation

        write_record(archive, make_record("2", minutes=1))
        result = idx.refresh()
        assert [s.batch_id for s in result.added] == ["2"]
        assert result.removed == ()
        assert idx.generation == generation + 1

        (archive / "batch-1-execute.json").unlink()
        result = idx.refresh()
        assert [s.batch_id for s in result.removed] == ["1"]
        assert [s.batch_id for s in idx.summaries()] == ["2"]


def test_a_record_rewritten_in_place_is_caught_by_a_full_refresh(archive: Path) -> None:
    path = write_record(archive, make_record("1", duration=100.0))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        data = json.loads(path.read_text())
        data["duration_seconds"] = 250.0
        mtime = archive.stat().st_mtime_ns
        with path.open("w") as handle:  # in place, as the seed's scripts write
            json.dump(data, handle)
        os.utime(archive, ns=(mtime, mtime))  # the directory is untouched by such a write

        assert not idx.refresh().changed  # the cheap refresh only looks at the directory
        result = idx.refresh(full=True)
        assert [s.duration_seconds for s in result.removed] == [100.0]
        assert [s.duration_seconds for s in result.added] == [250.0]


def test_a_second_process_reuses_the_index_without_reparsing(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        write_record(archive, make_record(str(i), minutes=i))
    with ArchiveIndex(archive) as idx:
        idx.refresh()

    parsed: list[Path] = []

    def counting(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
        parsed.append(Path(path))
        return read_bounded(path)

    monkeypatch.setattr(archive_module, "read_bounded", counting)
    with ArchiveIndex(archive) as idx:
        assert not idx.refresh().changed
        assert len(idx) == 5
        write_record(archive, make_record("new", minutes=9))
        assert [s.batch_id for s in idx.refresh().added] == ["new"]
    assert [p.name for p in parsed] == ["batch-new-execute.json"]


def test_recent_is_by_timestamp_not_file_name(archive: Path) -> None:
    # file names sort 1 < 2 < 3, but batch 1 ran last
    write_record(archive, make_record("1", minutes=30))
    write_record(archive, make_record("2", minutes=10))
    write_record(archive, make_record("3", minutes=20))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        assert [s.batch_id for s in idx.summaries(recent=2)] == ["3", "1"]
        assert [s.batch_id for s in idx.summaries(since=T0 + timedelta(minutes=15))] == ["3", "1"]
        assert idx.summaries(operation="review") == []


def test_select_aggregates_with_filters(archive: Path) -> None:
    write_record(archive, make_record("1", minutes=1, failure=1))
    write_record(archive, make_record("2", minutes=2, failure=0))
    write_record(archive, make_record("3", "review", minutes=3, failure=2))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        rows = idx.select(
            "SELECT f.operation, sum(f.success_count), sum(f.total_items) FROM files f "
            "WHERE {where} GROUP BY f.operation ORDER BY f.operation"
        )
        assert rows == [("execute", 6, 7), ("review", 3, 5)]
        errors = idx.select(
            "SELECT e.error_type, count(*) FROM files f JOIN errors e ON e.file_id = f.id "
            "WHERE {where} GROUP BY e.error_type",
            where=RecordFilter(operation="review"),
        )
        assert errors == [("TimeoutError", 2)]
        tokens = idx.select(
            "SELECT m.model, sum(m.input_tokens) FROM files f JOIN models m ON m.file_id = f.id "
            "WHERE {where} GROUP BY m.model",
            where=RecordFilter(recent=2),
        )
        assert tokens == [("claude-sonnet-4-5", 2000)]
        # a window holds the runs that ended in it: run 1 started 1 min in and took 100 s
        ended = (T0 + timedelta(minutes=1, seconds=100)).timestamp()
        since = RecordFilter(since=ended, operation="execute")
        query = "SELECT f.batch_id FROM files f WHERE {where} ORDER BY f.batch_id"
        assert idx.select(query, where=since) == [("1",), ("2",)]
        later = RecordFilter(since=ended + 0.001, operation="execute")
        assert idx.select(query, where=later) == [("2",)]


def test_a_corrupt_index_file_is_rebuilt(archive: Path, tmp_path: Path) -> None:
    write_record(archive, make_record("1"))
    db = tmp_path / "index.sqlite"
    db.write_bytes(b"this is not an SQLite database" * 100)
    with ArchiveIndex(archive, db_path=db) as idx:
        assert [s.batch_id for s in idx.refresh().added] == ["1"]


def test_an_index_of_another_format_version_is_rebuilt(archive: Path, tmp_path: Path) -> None:
    write_record(archive, make_record("1"))
    db = tmp_path / "index.sqlite"
    with ArchiveIndex(archive, db_path=db) as idx:
        idx.refresh()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='0' WHERE key='format'")
    with ArchiveIndex(archive, db_path=db) as idx:
        assert [s.batch_id for s in idx.refresh().added] == ["1"]


def test_a_read_only_archive_is_indexed_outside_it(archive: Path, _isolated_cache: Path) -> None:
    write_record(archive, make_record("1"))
    archive.chmod(0o555)
    try:
        with ArchiveIndex(archive) as idx:
            assert idx.db_path is not None
            assert idx.db_path.is_relative_to(_isolated_cache)
            assert [s.batch_id for s in idx.refresh().added] == ["1"]
        assert sorted(p.name for p in archive.iterdir()) == ["batch-1-execute.json"]
    finally:
        archive.chmod(0o755)


def test_a_missing_archive_is_empty_not_an_error(tmp_path: Path) -> None:
    with ArchiveIndex(tmp_path / "absent") as idx:
        assert not idx.refresh().changed
        assert idx.summaries() == []


def test_concurrent_refreshes_of_one_index_file_agree(archive: Path, tmp_path: Path) -> None:
    for i in range(40):
        write_record(archive, make_record(str(i), minutes=i))
    db = tmp_path / "shared.sqlite"
    indexes = [ArchiveIndex(archive, db_path=db) for _ in range(4)]
    errors: list[BaseException] = []

    def work(idx: ArchiveIndex) -> None:
        try:
            idx.refresh()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(idx,)) for idx in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for idx in indexes:
        assert len(idx) == 40
        # however the refreshes interleaved, each record has exactly its own child rows
        assert idx.select("SELECT count(*) FROM models") == [(40,)]
        assert idx.select("SELECT count(*) FROM errors") == [(40,)]
        idx.close()


def test_a_record_replaced_under_its_name_is_seen_without_a_full_refresh(archive: Path) -> None:
    """The atomic writer renames a new file over the old one: same name, new inode."""
    write_record(archive, make_record("1", success=3, failure=1))
    with ArchiveIndex(archive) as idx:
        idx.refresh()
        write_record(archive, make_record("1", success=4, failure=0))  # same run: replaced
        result = idx.refresh()
        assert [s.success_count for s in result.removed] == [3]
        assert [s.success_count for s in result.added] == [4]
        assert [s.success_count for s in idx.summaries()] == [4]


def test_a_directory_changed_within_its_mtime_tick_is_listed_again(archive: Path) -> None:
    write_record(archive, make_record("1"))
    with ArchiveIndex(archive) as idx:
        idx.refresh()  # the directory was modified just now: its mtime is not trusted yet
        mtime = archive.stat().st_mtime_ns
        write_record(archive, make_record("2", minutes=1))
        os.utime(archive, ns=(mtime, mtime))  # as if both changes fell in one coarse tick
        assert [s.batch_id for s in idx.refresh().added] == ["2"]


def test_deltas_are_flagged_when_another_process_changed_the_index(
    archive: Path, tmp_path: Path
) -> None:
    write_record(archive, make_record("1"))
    write_record(archive, make_record("2", minutes=1))
    db = tmp_path / "shared.sqlite"
    with ArchiveIndex(archive, db_path=db) as mine, ArchiveIndex(archive, db_path=db) as theirs:
        mine.refresh()
        (archive / "batch-2-execute.json").unlink()
        theirs.refresh()  # drops batch 2 first: my next refresh finds no row to report removed
        result = mine.refresh()
        assert result.reset
        assert [s.batch_id for s in mine.summaries()] == ["1"]


def _in_child(task: Callable[[], bytes]) -> bytes:
    """What ``task`` returns when run in a forked child (which leaves with ``os._exit``)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read)
            os.write(write, task())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    return answer


@pytest.mark.parametrize("on_disk", [True, False], ids=["file", "in-memory"])
def test_a_forked_child_reads_through_a_connection_of_its_own(
    archive: Path, tmp_path: Path, on_disk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite forbids using a connection across fork(): a child opens its own, and leaves the
    parent's alone (not even closing it), so the parent goes on as if nothing happened."""
    for n in range(3):
        write_record(archive, make_record(str(n), minutes=n))
    db_path = tmp_path / "index.sqlite" if on_disk else None
    monkeypatch.setattr(store, "default_index_path", lambda *_, **__: None)  # no cache dir
    with ArchiveIndex(archive, db_path=db_path) as index:
        index.refresh()
        parents = index._db

        def read_and_close() -> bytes:
            found = (len(index), [s.batch_id for s in index.summaries()])
            own = index._db is not parents
            index.close()  # the child's own connection
            return json.dumps([found, own]).encode()

        found, own = json.loads(_in_child(read_and_close))
        assert found == [3, ["0", "1", "2"]]
        assert own == on_disk  # an in-memory index is the child's own copy
        write_record(archive, make_record("3", minutes=3))
        assert [s.batch_id for s in index.refresh().added] == ["3"]
        assert len(index) == 4
    if db_path is not None:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM files").fetchone() == (4,)
