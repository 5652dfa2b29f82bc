"""Benchmark: ``serve`` scrape latency at 1k/10k/100k records, and ``backfill`` of 100k.

For each size: a generated archive; *cold* = start with no index (every file parsed) up to the
first answered scrape; *restart* = start again on the up-to-date index; *warm* = the median of
20 scrapes of an unchanged archive; *new record* = the first scrape after one more record is
written (and whether it shows). Scrapes are real HTTP GETs of ``/metrics``. Then ``backfill``
of the largest archive, whose records are spaced so that its history spans ``--days``.

    .venv/bin/python -m benchmarks.bench_serve --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from exporter.archive.files import record_path, write_record
from exporter.archive.model import dump_record
from exporter.index.store import ArchiveIndex
from exporter.prometheus.backfill import write_openmetrics
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.generated_archive import START, make_record


def write_spaced_archive(archive: Path, count: int, span: timedelta) -> None:
    """``count`` generated records whose starts are spread evenly over ``span``."""
    rng = random.Random(47)
    archive.mkdir(parents=True)
    step = span / count
    for n in range(count):
        record = make_record(rng, n).model_copy(update={"timestamp": START + n * step})
        record_path(archive, record).write_text(dump_record(record), encoding="utf-8")


def scrape(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url + "/metrics", timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


def start_and_scrape(archive: Path, db: Path) -> tuple[float, MetricsServer, ArchiveIndex]:
    started = time.perf_counter()
    index = ArchiveIndex(archive, db_path=db)
    registry, collector = build_registry(index)
    server = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
    scrape(server.url)
    return time.perf_counter() - started, server, index


def bench_size(size: int, work: Path, days: float) -> Path:
    archive = work / f"a{size}"
    write_spaced_archive(archive, size, timedelta(days=days))
    db = work / f"ix{size}.sqlite"
    cold, server, index = start_and_scrape(archive, db)
    server.stop()
    index.close()
    restart, server, index = start_and_scrape(archive, db)
    try:
        warm = statistics.median(scrape(server.url)[0] for _ in range(20))
        extra = make_record(random.Random(1), size).model_copy(
            update={
                "batch_id": "new",
                "run_id": "bench-new",
                "timestamp": START + timedelta(days=days),
            }
        )
        write_record(archive, extra)
        after, body = scrape(server.url)
        shown = f"batch_metrics_exporter_records {float(size + 1)}".encode() in body
        full_rescan = time.perf_counter()
        index.refresh(full=True)  # what the background thread does every --rescan-interval
        rescan = time.perf_counter() - full_rescan
    finally:
        server.stop()
        index.close()
    print(
        f"{size:>7} records | cold start + first scrape {cold * 1000:8.0f} ms | restart "
        f"{restart * 1000:6.0f} ms | warm scrape {warm * 1000:5.1f} ms | after new record "
        f"{after * 1000:5.1f} ms (visible: {shown}) | full rescan {rescan * 1000:6.0f} ms"
    )
    return archive


def bench_backfill(archive: Path, work: Path) -> None:
    with ArchiveIndex(archive, db_path=work / "backfill.sqlite") as index:
        index.refresh()
        started = time.perf_counter()
        summaries = index.summaries()
        loaded = time.perf_counter() - started
        out = work / "history.om"
        started = time.perf_counter()
        with out.open("w", encoding="utf-8") as handle:
            stats = write_openmetrics(summaries, handle)
        elapsed = time.perf_counter() - started
    days = (stats.end or 0) - (stats.start or 0)
    print(
        f"backfill {stats.records} records over {days / 86400:.1f} days: "
        f"{elapsed:.1f} s (+{loaded:.1f} s reading the index) | {stats.series} series, "
        f"{stats.samples:,} samples, {out.stat().st_size / 2**20:,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--days", type=float, default=14.0, help="history span of each archive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        largest = None
        for size in args.sizes:
            largest = bench_size(size, work, args.days)
        if largest is not None:
            bench_backfill(largest, work)


if __name__ == "__main__":
    main()
