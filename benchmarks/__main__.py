"""Run every benchmark and print one table: ``python -m benchmarks [--full]``.

Default sizes finish in a few minutes on 2 cores; ``--full`` adds the 100k-record archives
(trends, serve, load) that the targets are stated for. Every ratio is measured in the same
run, on the same machine. What each benchmark measures is in benchmarks/README.md; the crash
campaign (``python -m benchmarks.bench_crash``) is a correctness run and is not included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from benchmarks.bench_history import measure_backfill, measure_serve_cold
from benchmarks.bench_instrumentation import measure
from benchmarks.bench_load import load_generated
from benchmarks.bench_serve import WARM_SCRAPES as _WARM
from benchmarks.bench_serve import measure_serve, write_spaced_archive
from benchmarks.bench_trends import measure_trends

# The seed script's wall time per archive size, measured by trends_rows in this run: the
# bound for serve's first scrape too.
SEED_SECONDS: dict[int, float] = {}


@dataclass(frozen=True)
class Row:
    """One line of the table; ``met`` is None where no target applies."""

    benchmark: str
    measure: str
    value: str
    target: str = ""
    met: bool | None = None


def instrumentation_rows(calls: int, rounds: int) -> list[Row]:
    r = measure(calls, rounds)
    name = "instrumentation"
    return [
        Row(name, "ours, per decorated call (SDK)", f"{r.ours_us:.1f} us"),
        Row(name, "hand-written OTel SDK, same telemetry", f"{r.hand_us:.1f} us"),
        Row(name, "ours / hand-written", f"{r.ratio:.2f}x", "<= 1.2x", r.ratio <= 1.2),
        Row(
            name,
            "no SDK: stage + item + tokens",
            f"{r.noop_us:.1f} us",
            "<= 10 us",
            r.noop_us <= 10,
        ),
        Row(
            name,
            "no SDK: decorator alone",
            f"{r.noop_stage_only_us:.1f} us",
            "<= 10 us",
            r.noop_stage_only_us <= 10,
        ),
    ]


def _judged(targeted: bool, target: str, met: bool) -> tuple[str, bool | None]:
    """A row's target and verdict, where the size is one the targets are stated for."""
    return (target, met) if targeted else ("", None)


def trends_rows(size: int, work: Path, target_size: int) -> list[Row]:
    timing = measure_trends(size, work)
    (seed_s, seed_mib), (cold_s, cold_mib), (warm_s, warm_mib) = (
        timing.seed,
        timing.cold,
        timing.warm,
    )
    name = f"trends --all, {size:,}"
    targeted = size == target_size
    speedup, memory = seed_s / warm_s, warm_mib / seed_mib
    floor_ratio = timing.floor / seed_s
    SEED_SECONDS[size] = seed_s
    return [
        Row(name, "seed trend-analysis.py", f"{seed_s:.2f} s, {seed_mib:.0f} MiB"),
        Row(name, "ours, cold (index built)", f"{cold_s:.2f} s, {cold_mib:.0f} MiB"),
        Row(
            name,
            "cold / seed",
            f"{cold_s / seed_s:.2f}",
            *_judged(targeted, "<= 0.5", cold_s / seed_s <= 0.5),
        ),
        Row(name, "floor: read + validate beside the index's writes", f"{timing.floor:.2f} s"),
        Row(name, "floor / seed (no build of this index can do better)", f"{floor_ratio:.2f}"),
        Row(name, "ours, warm (index current)", f"{warm_s:.2f} s, {warm_mib:.0f} MiB"),
        Row(
            name,
            "speed-up, warm",
            f"{speedup:.1f}x",
            *_judged(targeted, ">= 10x", speedup >= 10),
        ),
        Row(
            name,
            "peak memory, warm / seed",
            f"{memory:.2f}",
            *_judged(targeted, "<= 0.25", memory <= 0.25),
        ),
    ]


def serve_rows(size: int, work: Path) -> list[Row]:
    archive = work / f"serve-{size}"
    write_spaced_archive(archive, size, timedelta(days=14))
    served = work / f"served-{size}"
    served.mkdir()
    t = measure_serve(archive, served, size)
    name = f"serve, {size:,}"
    # the fastest of two, as the seed's time it is held against (bench_trends)
    process_cold_s = min(
        measure_serve_cold(archive, work / f"serve-cold-{size}-{i}") for i in range(2)
    )
    seed_s = SEED_SECONDS.get(size)
    bound = f"<= {seed_s / 2:.1f} s (seed / 2)" if seed_s else ""
    targeted = size >= 100_000
    serve_new_ms = (t.new_record_s - t.new_record_refresh_s) * 1000

    return [
        Row(name, "cold start + first scrape, in process", f"{t.cold_s:.2f} s"),
        Row(name, "  of which the build (parse, write, count)", f"{t.cold_build_s:.2f} s"),
        Row(
            name,
            "  of which serve (ledger, totals, first scrape)",
            f"{t.cold_count_s:.2f} s",
            *_judged(targeted, "<= 1.5 s", t.cold_count_s <= 1.5),
        ),
        Row(
            name,
            "`serve` process start to first scrape",
            f"{process_cold_s:.2f} s",
            bound,
            process_cold_s <= seed_s / 2 if seed_s else None,
        ),
        Row(
            name,
            "restart (current index and ledger) to first scrape",
            f"{t.restart_s:.2f} s",
            *_judged(targeted, "<= 1 s", t.restart_s <= 1.0),
        ),
        Row(
            name,
            f"warm scrape p50 / p99 ({_WARM} GETs)",
            f"{t.warm_p50_s * 1000:.2f} / {t.warm_p99_s * 1000:.2f} ms",
            *_judged(targeted, "p50 <= 2 ms", t.warm_p50_s <= 0.002),
        ),
        Row(
            name,
            "warm scrape p50, gzip / OpenMetrics",
            f"{t.warm_gzip_s * 1000:.2f} / {t.warm_openmetrics_s * 1000:.2f} ms",
        ),
        Row(
            name,
            "first scrape after a new record",
            f"{t.new_record_s * 1000:.0f} ms (index refresh {t.new_record_refresh_s * 1000:.0f})",
        ),
        Row(
            name,
            "  of which serve (not the index's refresh)",
            f"{serve_new_ms:.1f} ms",
            *_judged(targeted, "<= 50 ms", serve_new_ms <= 50),
        ),
        Row(
            name,
            "new record visible at once",
            "yes" if t.new_record_visible else "no",
            "yes",
            t.new_record_visible,
        ),
    ]


def backfill_rows(count: int, days: float, limit_s: float, work: Path) -> list[Row]:
    t = measure_backfill(count, days, work)
    name = f"backfill, {count:,} over {days:g} d"
    return [
        Row(name, "backfill --tsdb (index, OpenMetrics, promtool)", f"{t.backfill_s:.1f} s"),
        Row(name, "blocks written", f"{t.samples_mib:.1f} MiB"),
        Row(
            name,
            "to queryable (+ Prometheus start, 1st query)",
            f"{t.queryable_s:.1f} s",
            f"<= {limit_s:.0f} s",
            t.queryable_s <= limit_s,
        ),
    ]


def load_rows(size: int, work: Path, clients: int, seconds: float) -> list[Row]:
    r = load_generated(work, size, clients=clients, seconds=seconds, max_requests=1_000_000)
    name = f"load, {size:,}, {clients} clients"
    growth = r.rss_growth_kib / 1024
    return [
        Row(name, f"requests in {r.seconds:.0f} s (1 record / 100 ms)", f"{r.requests}"),
        Row(name, "sustained requests/s", f"{r.rps:.0f}"),
        Row(name, "latency p50 / p99", f"{r.quantile_ms(0.5):.1f} / {r.quantile_ms(0.99):.1f} ms"),
        Row(name, "errors", str(r.errors), "0", r.errors == 0),
        Row(
            name,
            "records visible at the end",
            f"{r.exposed:,} of {r.records + r.written:,}",
            "all",
            r.exposed == r.records + r.written,
        ),
        Row(
            name,
            "server RSS start -> end (peak)",
            f"{r.rss_start_kib / 1024:.0f} -> {r.rss_end_kib / 1024:.0f} MiB "
            f"({r.rss_peak_kib / 1024:.0f})",
            "growth < 16 MiB",
            growth < 16,
        ),
    ]


def render(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    header = Row("benchmark", "measure", "value", "target")
    cells = [(r.benchmark, r.measure, r.value, r.target, _verdict(r)) for r in [header, *rows]]
    cells[0] = (*cells[0][:4], "met")
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(row: Row) -> str:
    return "" if row.met is None else ("yes" if row.met else "NO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--full", action="store_true", help="include the 100k-record sizes")
    args = parser.parse_args(argv)
    full = args.full
    trend_sizes = [1_000, 10_000, 100_000] if full else [1_000, 10_000]
    serve_size = 100_000 if full else 10_000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        work = Path(tmp)
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("instrumentation", partial(instrumentation_rows, 2000, 9)),
            *[(f"trends {n:,}", partial(trends_rows, n, work, 100_000)) for n in trend_sizes],
            (f"serve {serve_size:,}", partial(serve_rows, serve_size, work)),
            ("backfill 1,000 / 19 d", partial(backfill_rows, 1_000, 19, 60, work)),
            ("backfill 10,000 / 6 months", partial(backfill_rows, 10_000, 182, 60, work)),
            *(
                [("backfill 100,000 / 5 years", partial(backfill_rows, 100_000, 1826, 300, work))]
                if full
                else []
            ),
            (
                f"load {serve_size:,}",
                partial(load_rows, serve_size, work, 8, 30.0 if full else 5.0),
            ),
        ]
        for label, step in steps:
            print(f"running {label} ...", file=sys.stderr, flush=True)
            done = step()
            print(render(done), file=sys.stderr, flush=True)  # kept if a later step fails
            rows.extend(done)
    print(render(rows))
    return 1 if any(r.met is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
