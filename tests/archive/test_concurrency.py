"""Concurrency: many processes and threads writing runs of the same batch and operation all land,
and readers running meanwhile never see a partial file."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from exporter.archive.files import (
    InvalidRecordFile,
    find_runs,
    list_record_files,
    read_record,
    write_record,
)
from exporter.archive.model import BatchRecord
from exporter.index.store import ArchiveIndex
from exporter.sdk.configure import configure
from instrumentation import batch, item, stage

PROCESSES = 4
THREADS = 4
RUNS_PER_THREAD = 20


def _record(run_id: str, duration: float) -> BatchRecord:
    return BatchRecord.model_validate(
        {
            "batch_id": "47",
            "operation": "execute",
            "timestamp": "2025-11-01T10:00:00+00:00",
            "duration_seconds": duration,
            "metrics": {"total_items": 2, "success_count": 2},
            "run_id": run_id,
            "notes": ["padding " * 200],
        }
    )


def _thread_writes(archive: str, prefix: str) -> list[str]:
    names = []
    for n in range(RUNS_PER_THREAD):
        run_id = f"{prefix}-{n}"
        names.append(write_record(Path(archive), _record(run_id, 1.0)).name)
        if n % 5 == 0:  # rewrite the same run: replaces its own file, adds none
            assert write_record(Path(archive), _record(run_id, 2.0)).name == names[-1]
    return names


def process_writes(archive: str, number: int) -> list[str]:
    """One process: THREADS threads writing RUNS_PER_THREAD runs each of batch 47 execute."""
    with ThreadPoolExecutor(THREADS) as pool:
        parts = pool.map(
            _thread_writes, [archive] * THREADS, [f"p{number}t{t}" for t in range(THREADS)]
        )
        return [name for part in parts for name in part]


def _read_until(archive: Path, done: threading.Event, seen: Counter[str]) -> list[str]:
    """Read every listed record again and again until ``done``; return what was wrong."""
    problems: list[str] = []
    while not done.is_set():
        for path in list_record_files(archive):
            try:
                read_record(path)
                seen["reads"] += 1
            except InvalidRecordFile as exc:
                problems.append(str(exc))
    return problems


def _refresh_until(archive: Path, db: Path, done: threading.Event, seen: Counter[str]) -> list[str]:
    problems: list[str] = []
    with ArchiveIndex(archive, db) as index:
        while not done.is_set():
            result = index.refresh()
            seen["refreshes"] += 1
            problems.extend(f"{name}: {reason}" for name, reason in result.invalid.items())
    return problems


def test_processes_and_threads_writing_one_batch_all_land(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    done = threading.Event()
    seen: Counter[str] = Counter()
    with ThreadPoolExecutor(2) as readers:
        reading = readers.submit(_read_until, archive, done, seen)
        indexing = readers.submit(_refresh_until, archive, tmp_path / "index.db", done, seen)
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
            written = [
                n
                for part in pool.map(process_writes, [str(archive)] * PROCESSES, range(PROCESSES))
                for n in part
            ]
        done.set()
        assert reading.result() == []
        assert indexing.result() == []
    total = PROCESSES * THREADS * RUNS_PER_THREAD
    assert len(written) == len(set(written)) == total
    files = list_record_files(archive)
    assert sorted(p.name for p in files) == sorted(written)
    assert sum(1 for p in files if p.name == "batch-47-execute.json") == 1
    runs = [r.record for r in find_runs(archive, "47", "execute")]
    assert len(runs) == total
    expected = {
        f"p{p}t{t}-{n}"
        for p in range(PROCESSES)
        for t in range(THREADS)
        for n in range(RUNS_PER_THREAD)
    }
    assert {r.run_id for r in runs} == expected
    rewritten = {r.run_id for r in runs if r.duration_seconds == 2.0}
    assert rewritten == {run for run in expected if int(run.rsplit("-", 1)[1]) % 5 == 0}
    assert sorted(archive.iterdir()) == files  # no temp file left behind
    assert seen["reads"] > 0 and seen["refreshes"] > 0


def test_threads_racing_on_the_same_run_leave_one_file(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)

    def write(n: int) -> str:
        barrier.wait()
        return write_record(tmp_path, _record("same-run", float(n))).name

    with ThreadPoolExecutor(8) as pool:
        names = set(pool.map(write, range(8)))
    assert names == {"batch-47-execute.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["batch-47-execute.json"]
    assert read_record(tmp_path / "batch-47-execute.json").run_id == "same-run"


def test_concurrent_instrumented_batches_of_one_id_all_land(tmp_path: Path) -> None:
    """The real instrumentation: 12 runs of batch 47 execute at once in one process."""
    handle = configure(tmp_path, set_global=False, otlp=False, checkpoint_interval=0)
    barrier = threading.Barrier(12)

    def run(n: int) -> str:
        with batch(
            "47",
            "execute",
            run_id=f"run-{n}",
            tracer_provider=handle.tracer_provider,
            meter_provider=handle.meter_provider,
        ):
            barrier.wait()
            with stage(1):
                for i in range(n % 3 + 1):
                    with item(f"PRP-{n}-{i}"):
                        pass
        return f"run-{n}"

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(run, range(12))) == [f"run-{n}" for n in range(12)]
    handle.shutdown()
    runs = {r.record.run_id: r.record for r in find_runs(tmp_path, "47", "execute")}
    assert set(runs) == {f"run-{n}" for n in range(12)}
    assert all(runs[f"run-{n}"].metrics.success_count == n % 3 + 1 for n in range(12))
    assert all(r.status == "completed" for r in runs.values())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
