"""Load test: concurrent clients scrape ``/metrics`` of a real ``serve`` while records arrive.

A ``batch-metrics serve`` subprocess loads a generated archive (100k records by default; the
cold index build is part of the start-up, not of the figures: serve answers before its first
build's rows and indexes are written, and the run starts once they are). Then, for ``--seconds`` or
``--max-requests`` (whichever comes first), ``--clients`` threads scrape ``/metrics`` back to back
over loopback while a writer adds one record every ``--write-interval`` seconds. Reported:
sustained requests per second, p50/p99 latency, errors (any non-200 or failed request; must be
0), whether the last scrape counts every record written, and the server's resident memory
(``VmRSS`` from ``/proc/<pid>/status``) after warm-up, at its peak during the run, and at the
end.

    .venv/bin/python -m benchmarks.bench_load --records 100000 --clients 8 --seconds 30

``tests/test_prom_hardening.py`` runs a 2k-record, 3-second version and asserts only that
there are no errors and that memory stays bounded; speed is never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import queue
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import REPO, compile_bytecode
from exporter.archive.files import write_record
from exporter.index.schema import BULK_INDEXES
from tests.support.generated_archive import make_record, write_archive

_SERVING = re.compile(r"serving (\d+) records of .* on http://([\d.]+):(\d+)/metrics")
_RECORDS = re.compile(rb"^batch_metrics_exporter_records (\S+)$", re.MULTILINE)


@dataclass
class LoadResult:
    """What one load run measured."""

    records: int  # in the archive when the run started
    clients: int
    seconds: float
    requests: int
    errors: int
    latencies: list[float] = field(repr=False)
    written: int  # records added during the run
    exposed: int  # batch_metrics_exporter_records in the final scrape
    startup_seconds: float
    rss_start_kib: int
    rss_peak_kib: int
    rss_end_kib: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile_ms(self, q: float) -> float:
        """Latency quantile in ms (``q`` in 0..1), 0 without requests."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_end_kib - self.rss_start_kib

    def summary(self) -> str:
        return (
            f"{self.records} records, {self.clients} clients, {self.seconds:.1f} s: "
            f"{self.requests} requests, {self.rps:.0f}/s, p50 {self.quantile_ms(0.5):.1f} ms, "
            f"p99 {self.quantile_ms(0.99):.1f} ms, errors {self.errors}; {self.written} records "
            f"written, last scrape counts {self.exposed} of {self.records + self.written}; "
            f"RSS {self.rss_start_kib / 1024:.1f} -> {self.rss_end_kib / 1024:.1f} MiB "
            f"(peak {self.rss_peak_kib / 1024:.1f}; start-up {self.startup_seconds:.1f} s)"
        )


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _wait_until_indexed(index: Path, deadline: float) -> None:
    """Wait until serve's index holds its first build: its rows (committed with the indexes
    dropped), then its indexes."""
    uri = index.absolute().as_uri() + "?mode=ro"
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
        ):
            names = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
            rows = db.execute("SELECT 1 FROM files LIMIT 1").fetchone()
            if rows and names >= BULK_INDEXES.keys():
                return
        time.sleep(0.1)
    raise RuntimeError("serve's first build did not finish in time")


class ServeProcess:
    """``batch-metrics serve`` on a free loopback port, as a subprocess."""

    def __init__(self, archive: Path, index_dir: Path, startup_timeout: float = 300.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_METRICS_")}
        env.update({"PYTHONPATH": str(REPO), "BATCH_METRICS_INDEX": str(index_dir)})
        argv = [sys.executable, "-m", "exporter.cli", "serve", "--archive", str(archive)]
        argv += ["--port", "0", "--orchestration-dir", str(archive.parent / "no-orchestrator")]
        compile_bytecode()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + startup_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"serve did not start within {startup_timeout:.0f} s") from None
            match = _SERVING.search(line)
            if match:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {line.strip()}")
        self.records = int(match.group(1))
        self.host, self.port = match.group(2), int(match.group(3))
        _wait_until_indexed(index_dir, deadline)
        self.startup_seconds = time.perf_counter() - started

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            lines.put(line)
        lines.put("")  # end of output

    @property
    def pid(self) -> int:
        return self.process.pid

    def scrape(self, timeout: float = 30.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class _Run:
    """The shared state of one load run: client, writer and memory-sampler loops."""

    def __init__(self, server: ServeProcess, archive: Path, seconds: float, max_requests: int):
        self.server = server
        self.archive = archive
        self.deadline = time.perf_counter() + seconds
        self.max_requests = max_requests
        self.latencies: list[float] = []
        self.errors = 0
        self.issued = 0
        self.written = 0
        self.peak = rss_kib(server.pid)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def client(self) -> None:
        while not self.stop.is_set() and time.perf_counter() < self.deadline:
            with self.lock:
                if self.issued >= self.max_requests:
                    return
                self.issued += 1
            began = time.perf_counter()
            try:
                ok = self.server.scrape()[0] == 200
            except (OSError, http.client.HTTPException):
                ok = False
            elapsed = time.perf_counter() - began
            with self.lock:
                self.latencies.append(elapsed)
                self.errors += not ok

    def writer(self, interval: float) -> None:
        rng = random.Random(4711)
        n = self.server.records
        while not self.stop.wait(interval):
            record = make_record(rng, n).model_copy(
                update={"batch_id": f"load-{n}", "run_id": f"load-{n}"}
            )
            write_record(self.archive, record)
            n += 1
            self.written += 1

    def sampler(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, rss_kib(self.server.pid))


def run_load(
    archive: Path,
    index_dir: Path,
    *,
    clients: int = 8,
    seconds: float = 30.0,
    max_requests: int = 1_000_000,
    write_interval: float = 0.1,
    warmup: int = 20,
) -> LoadResult:
    """Start ``serve`` on ``archive`` and load it; see the module docstring."""
    server = ServeProcess(archive, index_dir)
    try:
        for _ in range(warmup):  # first scrapes build the families; memory settles
            server.scrape()
        rss_start = rss_kib(server.pid)
        run = _Run(server, archive, seconds, max_requests)
        loaders = [threading.Thread(target=run.client) for _ in range(clients)]
        side = [
            threading.Thread(target=run.writer, args=(write_interval,)),
            threading.Thread(target=run.sampler),
        ]
        began = time.perf_counter()
        for thread in (*side, *loaders):
            thread.start()
        for thread in loaders:
            thread.join()
        elapsed = time.perf_counter() - began
        run.stop.set()
        for thread in side:
            thread.join()
        status, body = server.scrape()
        found = _RECORDS.search(body) if status == 200 else None
        rss_end = rss_kib(server.pid)
        return LoadResult(
            records=server.records,
            clients=clients,
            seconds=elapsed,
            requests=len(run.latencies),
            errors=run.errors,
            latencies=run.latencies,
            written=run.written,
            exposed=int(float(found.group(1))) if found else -1,
            startup_seconds=server.startup_seconds,
            rss_start_kib=rss_start,
            rss_peak_kib=max(run.peak, rss_end),
            rss_end_kib=rss_end,
        )
    finally:
        server.stop()


def load_generated(
    work: Path, records: int, *, clients: int, seconds: float, max_requests: int
) -> LoadResult:
    """Generate a ``records``-record archive under ``work`` and run the load test on it."""
    archive = work / f"load-{records}" / "completed-batches"
    write_archive(archive, records)
    return run_load(
        archive, work / f"load-ix-{records}", clients=clients, seconds=seconds,
        max_requests=max_requests,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        result = load_generated(
            Path(tmp), args.records, clients=args.clients, seconds=args.seconds,
            max_requests=args.max_requests,
        )  # fmt: skip
    print(result.summary())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
