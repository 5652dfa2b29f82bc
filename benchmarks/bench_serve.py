"""Benchmark: ``serve`` at 1k/10k/100k records, and ``backfill`` of the largest archive.

For each size, a generated archive, served in this process with an index and a ledger of its
own (as ``batch-metrics serve`` keeps them in the cache directory):

* *cold*: start with no index and no ledger up to the first answered scrape, and of that the
  index's build (its first refresh, in which the workers also count the records they parse)
  and serve's own part (the ledger's decisions, the totals added up, the first scrape);
* *restart*: start again on the current index and ledger up to the first answered scrape;
* *warm*: real HTTP GETs of ``/metrics`` of an unchanged archive, p50 and p99 (text format),
  and p50 with gzip and in OpenMetrics (what Prometheus asks for);
* *new record*: the first scrape after one more record is written (and whether it shows), and
  of that the index's refresh (listing the archive directory to find the new file);
* *full rescan*: what the background thread does every ``--rescan-interval``.

Then ``backfill`` of the largest archive, whose records are spaced so that its history spans
``--days``.

    .venv/bin/python -m benchmarks.bench_serve --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from exporter.archive.files import record_path, write_record
from exporter.archive.model import dump_record
from exporter.index.ledger import Ledger
from exporter.index.store import ArchiveIndex, Fold, RefreshResult
from exporter.prometheus.backfill import write_openmetrics
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.generated_archive import START, make_record

_OPENMETRICS = "application/openmetrics-text; version=1.0.0"
WARM_SCRAPES = 200


def write_spaced_archive(archive: Path, count: int, span: timedelta) -> None:
    """``count`` generated records whose starts are spread evenly over ``span``."""
    rng = random.Random(47)
    archive.mkdir(parents=True)
    step = span / count
    for n in range(count):
        record = make_record(rng, n).model_copy(update={"timestamp": START + n * step})
        record_path(archive, record).write_text(dump_record(record), encoding="utf-8")


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[float, bytes]:
    """Seconds for one GET of ``/metrics``, and the body as sent."""
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


class _Served:
    """serve's parts over one archive, with the seconds of each refresh of its index."""

    def __init__(self, archive: Path, work: Path) -> None:
        self.index = ArchiveIndex(archive, db_path=work / "serve-index.sqlite")
        self.ledger = Ledger(work / "serve-ledger.sqlite")
        self.refreshes: list[float] = []
        real: Callable[..., RefreshResult] = self.index.refresh

        def timed(
            *, full: bool = False, fold: Fold | None = None, write_later: bool = False
        ) -> RefreshResult:
            started = time.perf_counter()
            try:
                return real(full=full, fold=fold, write_later=write_later)
            finally:
                self.refreshes.append(time.perf_counter() - started)

        self.index.refresh = timed  # type: ignore[method-assign]
        registry, collector = build_registry(self.index, ledger=self.ledger)
        self.server = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
        self.url = self.server.url

    def close(self) -> None:
        self.server.stop()
        self.index.close()
        self.ledger.close()


def start_and_scrape(archive: Path, work: Path) -> tuple[float, _Served]:
    """Seconds from creating serve's parts to the first answered scrape, and those parts."""
    started = time.perf_counter()
    served = _Served(archive, work)
    scrape(served.url)
    return time.perf_counter() - started, served


@dataclass(frozen=True)
class ServeTiming:
    """One archive's figures, in seconds (see the module docstring)."""

    size: int
    cold_s: float
    cold_build_s: float
    restart_s: float
    warm_p50_s: float
    warm_p99_s: float
    warm_gzip_s: float
    warm_openmetrics_s: float
    new_record_s: float
    new_record_refresh_s: float
    new_record_visible: bool
    rescan_s: float

    @property
    def cold_count_s(self) -> float:
        """The cold start without the index's build: serve's count, render and first scrape."""
        return self.cold_s - self.cold_build_s


def _median_of(url: str, headers: dict[str, str], n: int) -> float:
    return statistics.median(scrape(url, headers)[0] for _ in range(n))


def measure_serve(archive: Path, work: Path, size: int) -> ServeTiming:
    """Time ``serve`` over ``archive`` (of ``size`` records), from no index and no ledger."""
    cold, served = start_and_scrape(archive, work)
    build = served.refreshes[0]  # the first: the index's build
    served.close()
    restart, served = start_and_scrape(archive, work)
    try:
        url = served.url
        warm = sorted(scrape(url)[0] for _ in range(WARM_SCRAPES))
        gzipped = _median_of(url, {"Accept-Encoding": "gzip"}, WARM_SCRAPES // 4)
        openmetrics = _median_of(url, {"Accept": _OPENMETRICS}, WARM_SCRAPES // 4)
        extra = make_record(random.Random(1), size).model_copy(
            update={"batch_id": "new", "run_id": "bench-new", "timestamp": START}
        )
        write_record(archive, extra)
        after, body = scrape(url)
        shown = f"batch_metrics_exporter_records {float(size + 1)}".encode() in body
        refresh = served.refreshes[-1]
        started = time.perf_counter()
        served.index.refresh(full=True)  # what the background thread does every interval
        rescan = time.perf_counter() - started
    finally:
        served.close()
    return ServeTiming(
        size=size,
        cold_s=cold,
        cold_build_s=build,
        restart_s=restart,
        warm_p50_s=statistics.median(warm),
        warm_p99_s=warm[int(len(warm) * 0.99) - 1],
        warm_gzip_s=gzipped,
        warm_openmetrics_s=openmetrics,
        new_record_s=after,
        new_record_refresh_s=refresh,
        new_record_visible=shown,
        rescan_s=rescan,
    )


def bench_size(size: int, work: Path, days: float) -> Path:
    archive = work / f"a{size}"
    write_spaced_archive(archive, size, timedelta(days=days))
    served = work / f"serve-{size}"
    served.mkdir()
    t = measure_serve(archive, served, size)
    ms = 1000.0
    print(
        f"{size:>7} records | cold start + first scrape {t.cold_s * ms:6.0f} ms (index build "
        f"{t.cold_build_s * ms:.0f}, serve {t.cold_count_s * ms:.0f}) | restart "
        f"{t.restart_s * ms:5.0f} ms | warm scrape p50 {t.warm_p50_s * ms:.2f} ms, p99 "
        f"{t.warm_p99_s * ms:.2f} ms, gzip {t.warm_gzip_s * ms:.2f} ms, OpenMetrics "
        f"{t.warm_openmetrics_s * ms:.2f} ms | after new record {t.new_record_s * ms:.1f} ms "
        f"(index refresh {t.new_record_refresh_s * ms:.1f}; visible: {t.new_record_visible}) "
        f"| full rescan {t.rescan_s * ms:.0f} ms"
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
    parser.add_argument("--no-backfill", action="store_true", help="serve only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        largest = None
        for size in args.sizes:
            largest = bench_size(size, work, args.days)
        if largest is not None and not args.no_backfill:
            bench_backfill(largest, work)


if __name__ == "__main__":
    main()
