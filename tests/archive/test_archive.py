"""The archive: atomic files, one per run, idempotent re-writes, refusals with one-line reasons."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.archive.files import (
    MAX_RECORD_BYTES,
    ArchiveError,
    InvalidRecordFile,
    LoadedRecord,
    _read_at_most,
    find_runs,
    iter_archive,
    read_bounded,
    read_record,
    write_record,
)
from exporter.archive.model import BatchRecord, InvalidBatchId, Metrics, dump_record
from tests.support.records import HOSTILE_IDS


def make(run_id: str | None = "r1", batch_id: str = "47", success: int = 3) -> BatchRecord:
    return BatchRecord(
        batch_id=batch_id,
        operation="execute",
        timestamp=datetime(2025, 11, 1, 10, tzinfo=UTC),
        duration_seconds=61.5,
        metrics=Metrics(total_items=3, success_count=success, failure_count=3 - success),
        run_id=run_id,
        status="completed" if success == 3 else "partial",
    )


def test_round_trip(tmp_path: Path) -> None:
    record = make()
    path = write_record(tmp_path / "a" / "b", record)
    assert path == tmp_path / "a" / "b" / "batch-47-execute.json"
    assert path.read_text(encoding="utf-8") == dump_record(record)
    assert read_record(path) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_second_run_gets_its_own_file_and_both_load(tmp_path: Path) -> None:
    first = write_record(tmp_path, make("r1"))
    second = write_record(tmp_path, make("r2", success=1))
    assert (first.name, second.name) == ("batch-47-execute.json", "batch-47-execute.run-r2.json")
    runs = find_runs(tmp_path, "47", "execute")
    assert [(r.path.name, r.record.run_id) for r in runs] == [
        ("batch-47-execute.json", "r1"),
        ("batch-47-execute.run-r2.json", "r2"),
    ]
    assert read_record(first).metrics.success_count == 3  # the first run is untouched


def test_same_run_rewritten_is_idempotent(tmp_path: Path) -> None:
    write_record(tmp_path, make("r1", success=1))
    write_record(tmp_path, make("r2"))
    assert write_record(tmp_path, make("r1", success=2)).name == "batch-47-execute.json"
    assert write_record(tmp_path, make("r2", success=0)).name == "batch-47-execute.run-r2.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batch-47-execute.json",
        "batch-47-execute.run-r2.json",
    ]
    assert read_record(tmp_path / "batch-47-execute.json").metrics.success_count == 2
    assert read_record(tmp_path / "batch-47-execute.run-r2.json").metrics.success_count == 0


def test_second_record_without_run_id_is_refused(tmp_path: Path) -> None:
    write_record(tmp_path, make(None))
    with pytest.raises(ArchiveError, match="already holds another run"):
        write_record(tmp_path, make(None))
    assert read_record(tmp_path / "batch-47-execute.json") == make(None)


def test_concurrent_threads_each_run_lands(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        barrier.wait()
        try:
            for k in range(5):
                write_record(tmp_path, make(f"t{n}-{k}"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    runs = {r.record.run_id for r in find_runs(tmp_path, "47", "execute")}
    assert runs == {f"t{n}-{k}" for n in range(8) for k in range(5)}
    assert len(list(tmp_path.iterdir())) == 40


def _write_runs(archive: str, prefix: str) -> None:
    for k in range(10):
        write_record(Path(archive), make(f"{prefix}-{k}"))


def test_concurrent_processes_each_run_lands(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write_runs, args=(str(tmp_path), f"p{n}")) for n in range(3)
    ]
    for process in processes:
        process.start()
    _write_runs(str(tmp_path), "main")
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    loaded = [r for r in iter_archive(tmp_path) if isinstance(r, LoadedRecord)]
    assert len(loaded) == 40
    assert {r.record.run_id for r in loaded} == {
        f"{p}-{k}" for p in ("p0", "p1", "p2", "main") for k in range(10)
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("batch_id", HOSTILE_IDS)
def test_hostile_batch_id_never_becomes_a_file(tmp_path: Path, batch_id: str) -> None:
    archive = tmp_path / "deep" / "archive"
    hostile = make().model_copy(update={"batch_id": batch_id})  # as if validation were bypassed
    with pytest.raises(InvalidBatchId):
        write_record(archive, hostile)
    with pytest.raises(InvalidBatchId):
        find_runs(archive, batch_id, "execute")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "malformed JSON: Invalid JSON: key must be a string at line 1 column 2"),
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b"[1, 2]", "wrong schema: record: Input should be an object"),
        (
            json.dumps({"batch_id": "47", "operation": "execute", "metrics": {}}).encode(),
            "wrong schema: timestamp: Field required",
        ),
        (
            json.dumps(
                {
                    "batch_id": "47",
                    "operation": "execute",
                    "timestamp": "2025-11-01T10:00:00Z",
                    "duration_seconds": "-3",  # the seed's schema refuses a string
                    "metrics": {},
                }
            ).encode(),
            "wrong schema: duration_seconds: Input should be greater than or equal to 0",
        ),
        (
            b'{"batch_id": "47", "operation": "execute", "timestamp": "2025-11-01T10:00:00Z",'
            b' "duration_seconds": NaN, "metrics": {}}',
            "wrong schema: duration_seconds: Input should be a finite number",
        ),
        (b"\xff\xfe garbage", "malformed JSON: Invalid JSON: expected value at line 1 column 1"),
        (
            b"[" * 100_000,
            "malformed JSON: Invalid JSON: recursion limit exceeded at line 1 column 202",
        ),
    ],
)
def test_invalid_files_have_one_line_reasons(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "batch-47-execute.json"
    path.write_bytes(content)
    with pytest.raises(InvalidRecordFile) as caught:
        read_record(path)
    assert caught.value.reason == reason
    assert str(caught.value) == f"{path}: {reason}"
    assert "\n" not in str(caught.value)


def test_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "batch-47-execute.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)
    with pytest.raises(InvalidRecordFile, match="larger than 10 MiB"):
        read_record(path)


def test_symlink_and_directory_are_refused(tmp_path: Path) -> None:
    target = write_record(tmp_path, make())
    link = tmp_path / "batch-48-execute.json"
    link.symlink_to(target)
    with pytest.raises(InvalidRecordFile, match=r"is a symbolic link \(refused\)$"):
        read_record(link)
    directory = tmp_path / "batch-49-execute.json"
    directory.mkdir()
    with pytest.raises(InvalidRecordFile, match=r"is not a regular file$"):
        read_record(directory)


def test_iter_archive_yields_records_and_errors_without_raising(tmp_path: Path) -> None:
    write_record(tmp_path, make())
    (tmp_path / "batch-50-execute.json").write_text("{", encoding="utf-8")
    (tmp_path / ".tmp-abc.json").write_text("{", encoding="utf-8")  # a writer's temp file
    (tmp_path / "other.json").write_text("{", encoding="utf-8")
    results = list(iter_archive(tmp_path))
    assert [type(r).__name__ for r in results] == ["LoadedRecord", "InvalidRecordFile"]


def test_write_into_unwritable_place_is_an_archive_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ArchiveError, match=r"cannot write record to .*: Not a directory"):
        write_record(blocker / "archive", make())


def test_read_bounded_reads_exactly_up_to_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "batch-1-execute.json"
    path.write_bytes(b"x" * 64)
    data, st = read_bounded(path, limit=64)
    assert data == b"x" * 64 and st.st_size == 64
    with pytest.raises(InvalidRecordFile, match="larger than 63 bytes"):
        read_bounded(path, limit=63)


def test_a_file_longer_than_its_stat_said_is_read_to_the_end_or_the_limit() -> None:
    # A pipe stands in for a file that grew after fstat: reads return what is there.
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"a" * 10)
        os.write(write_end, b"b" * 10)
        os.close(write_end)
        write_end = -1
        assert _read_at_most(read_end, 100, expected=3) == b"a" * 10 + b"b" * 10
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"c" * 30)
        assert _read_at_most(read_end, 12, expected=0) == b"c" * 12  # stops at the limit
    finally:
        os.close(read_end)
        os.close(write_end)
