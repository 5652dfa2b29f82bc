"""Benchmark: history to queryable, and ``serve``'s first scrape, as a user meets them.

*Backfill*: a generated archive whose runs are spread over a span (1,000 over 19 days, 10,000
over six months, 100,000 over five years); ``batch-metrics backfill --tsdb DIR`` in a fresh
process with no index yet (so the index is built too), then a real Prometheus started on DIR
until it answers the mean duration over the whole span: the time to queryable history, and
the size of what was generated.

*Serve*: ``batch-metrics serve`` in a fresh process with no index and no ledger, until its
first ``/metrics`` answers (the index is built, every record counted).

    .venv/bin/python -m benchmarks.bench_history --backfill 1000:19 10000:182
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from benchmarks import REPO, compile_bytecode
from benchmarks.bench_serve import write_spaced_archive
from exporter.prometheus import promql
from tests.support.generated_archive import START
from tests.support.servers import free_port, prom_query, running, start_prometheus


@dataclass(frozen=True)
class BackfillTiming:
    records: int
    days: float
    backfill_s: float  # the command: index build, OpenMetrics, promtool
    queryable_s: float  # plus Prometheus start and the first answer
    samples_mib: float  # size of the blocks written


def _env(work: Path) -> dict[str, str]:
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)}
    env.pop("BATCH_METRICS_INDEX", None)
    return env


def measure_backfill(count: int, days: float, work: Path) -> BackfillTiming:
    root = work / f"history-{count}"
    archive = root / "archive"
    write_spaced_archive(archive, count, timedelta(days=days))
    data = root / "tsdb"
    started = time.perf_counter()
    command = ["backfill", f"--archive={archive}", f"--tsdb={data}"]
    subprocess.run(
        [sys.executable, "-m", "exporter.cli", *command],
        check=True,
        env=_env(root),
        stderr=subprocess.DEVNULL,
    )
    backfilled = time.perf_counter() - started
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}), encoding="utf-8")
    server = start_prometheus(
        config, root / "prom", storage=data, extra=["--storage.tsdb.retention.time=100y"]
    )
    with running(server):
        at = (START + timedelta(days=days, hours=1)).timestamp()  # after the last run's end
        answer = prom_query(server, promql.mean_duration(f"{int(days) + 2}d"), at=at)
    queryable = time.perf_counter() - started
    if len(answer) != 4:
        raise SystemExit(f"Prometheus answered {len(answer)} operations, not 4")
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    return BackfillTiming(count, days, backfilled, queryable, size / 2**20)


def measure_serve_cold(archive: Path, work: Path) -> float:
    """Seconds from starting ``batch-metrics serve`` (no index, no ledger) to its first scrape."""
    compile_bytecode()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = [sys.executable, "-m", "exporter.cli", "serve", f"--archive={archive}"]
    started = time.perf_counter()
    with subprocess.Popen(
        [*argv, f"--port={port}", "--orchestration-dir=/nonexistent"],
        env=_env(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"serve exited with {process.returncode}")
                try:
                    with urllib.request.urlopen(url, timeout=120) as response:
                        response.read()
                        break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.02)
            return time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backfill", nargs="+", default=["1000:19", "10000:182"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        for spec in args.backfill:
            count, days = spec.split(":")
            t = measure_backfill(int(count), float(days), Path(tmp))
            print(
                f"{t.records:>7} records over {t.days:g} days: backfill {t.backfill_s:.1f} s, "
                f"queryable {t.queryable_s:.1f} s, blocks {t.samples_mib:.1f} MiB"
            )


if __name__ == "__main__":
    main()
