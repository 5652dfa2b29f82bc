"""Kill archive writers with SIGKILL at random moments and check that nothing is torn or lost.

Each round starts ``writers`` processes that write records with
:func:`exporter.archive.files.write_record` as fast as they can (new runs of a few batch ids, which
exercises the first-run link, the run-suffixed name and the same-run replace), and report each
record through a pipe once ``write_record`` has returned. After a random delay every writer is
SIGKILLed. Afterwards:

* every ``batch-*.json`` in the archive is a complete, valid record;
* every record a writer reported is there, at the version it reported or a later one;
* no file holds a run nobody wrote, and at most one unreported record per killed writer exists;
* leftover temporary files are not records, and ``recover`` removes them.

The suite runs a few hundred kills (``tests/test_crash_safety.py``); run this module for more::

    python -m benchmarks.bench_crash --kills 3000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from exporter.archive.files import list_record_files, read_record, write_record
from exporter.archive.model import BatchRecord
from exporter.archive.recovery import recover
from instrumentation.semconv import OPERATIONS

BATCH_IDS = ("47", "48", "49.1")
MAX_KILL_DELAY = 0.02  # seconds after a writer's first record; a write takes ~1 ms
_RUN_RE = re.compile(r"w(\d+)-(\d+)")


def _record(batch_id: str, operation: str, run_id: str, version: int, padding: int) -> BatchRecord:
    # The version rides in duration_seconds: a rewrite of the same run has a higher one.
    return BatchRecord.model_validate(
        {
            "batch_id": batch_id,
            "operation": operation,
            "timestamp": "2025-11-01T10:00:00+00:00",
            "duration_seconds": float(version),
            "metrics": {"total_items": 3, "success_count": 2, "failure_count": 1},
            "run_id": run_id,
            "status": "partial",
            "source": "instrumentation",
            "notes": ["x" * padding],  # varied sizes, so that a torn write would show
        }
    )


def writer(archive: str, number: int, seed: int, conn: Connection) -> None:
    """Write records forever, sending ``(run_id, file name, version)`` after each one."""
    rng = random.Random(seed)
    runs: list[tuple[str, str, str, int]] = []
    n = 0
    while True:
        if runs and rng.random() < 0.25:  # rewrite an earlier run of this writer (idempotent)
            index = rng.randrange(len(runs))
            batch_id, operation, run_id, version = runs[index]
            version += 1
        else:
            batch_id, operation = rng.choice(BATCH_IDS), rng.choice(OPERATIONS)
            run_id, version, index = f"w{number}-{n}", 0, len(runs)
            runs.append((batch_id, operation, run_id, version))
            n += 1
        record = _record(batch_id, operation, run_id, version, rng.randrange(8000))
        path = write_record(Path(archive), record)
        runs[index] = (batch_id, operation, run_id, version)
        conn.send((run_id, path.name, version))


@dataclass
class CampaignResult:
    kills: int = 0
    reported: dict[str, tuple[str, int]] = field(default_factory=dict)  # run -> (name, version)
    torn_messages: int = 0
    seconds: float = 0.0


def _context() -> multiprocessing.context.ForkServerContext:
    # Forkserver: each writer forks from a clean server that has imported the archive code
    # once, so a writer starts in milliseconds, and no test-runner thread is forked.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["exporter.archive.files", "benchmarks.bench_crash"])
    return ctx


def _drain(conn: Connection, result: CampaignResult) -> None:
    while True:
        try:
            if not conn.poll():
                return
            run_id, name, version = conn.recv()
        except (EOFError, OSError):
            return
        except Exception:  # a message torn by the kill: not reported
            result.torn_messages += 1
            return
        result.reported[run_id] = (name, version)


def kill_campaign(archive: Path, kills: int, writers: int = 2, seed: int = 0) -> CampaignResult:
    """SIGKILL ``kills`` writer processes, ``writers`` at a time, at random moments."""
    archive.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    result = CampaignResult()
    started = time.perf_counter()
    number = 0
    ctx = _context()
    while result.kills < kills:
        procs: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for _ in range(min(writers, kills - result.kills)):
            receiver, sender = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=writer, args=(str(archive), number, rng.randrange(2**32), sender)
            )
            process.start()
            sender.close()
            procs.append((process, receiver))
            number += 1
        for _, receiver in procs:
            receiver.poll(30)  # until its first record (or its death)
        time.sleep(rng.uniform(0, MAX_KILL_DELAY))  # the random moment, not a sync
        for running, _ in procs:
            if running.pid is not None:
                os.kill(running.pid, signal.SIGKILL)
        for killed, receiver in procs:
            killed.join()
            _drain(receiver, result)
            receiver.close()
            result.kills += 1
    result.seconds = time.perf_counter() - started
    return result


def check_archive(archive: Path, result: CampaignResult, writers_started: int) -> list[str]:
    """What is wrong with the archive after a campaign (empty: nothing)."""
    problems: list[str] = []
    found: dict[str, tuple[str, int]] = {}
    for path in list_record_files(archive):
        try:
            record = read_record(path)
        except Exception as exc:  # any failure here is the finding
            problems.append(f"{path.name}: {exc}")
            continue
        match = _RUN_RE.fullmatch(record.run_id or "")
        if match is None or int(match.group(1)) >= writers_started:
            problems.append(f"{path.name}: run {record.run_id!r} was never written")
            continue
        found[record.run_id or ""] = (path.name, int(record.duration_seconds or 0))
    for run_id, (name, version) in result.reported.items():
        if run_id not in found:
            problems.append(f"reported run {run_id} ({name}) is missing")
        elif found[run_id][0] != name or found[run_id][1] < version:
            problems.append(f"reported run {run_id} is {found[run_id]}, not {(name, version)}")
    unreported = len(found.keys() - result.reported.keys())
    if unreported > result.kills:
        problems.append(f"{unreported} unreported records from {result.kills} killed writers")
    return problems


def temp_files(archive: Path) -> list[Path]:
    return sorted(archive.glob(".tmp-*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        result = kill_campaign(archive, args.kills, args.writers, args.seed)
        problems = check_archive(archive, result, result.kills)
        leftovers = len(temp_files(archive))
        recover(archive, temp_max_age=timedelta(0))
        files = len(list_record_files(archive))
        print(f"{'kills':<28}{result.kills:>10}")
        print(f"{'seconds':<28}{result.seconds:>10.1f}")
        print(f"{'kills per second':<28}{result.kills / result.seconds:>10.1f}")
        print(f"{'records reported':<28}{len(result.reported):>10}")
        print(f"{'record files':<28}{files:>10}")
        print(f"{'temp files left by kills':<28}{leftovers:>10}")
        print(f"{'temp files after recover':<28}{len(temp_files(archive)):>10}")
        print(f"{'messages torn by kills':<28}{result.torn_messages:>10}")
        print(f"{'problems':<28}{len(problems):>10}")
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    # Run as ``-m``, multiprocessing would re-import this module by name in every writer and
    # runpy would warn that it is already imported; by path it is imported quietly.
    sys.modules["__main__"].__spec__ = None
    sys.exit(main())
