"""Archives with known bottlenecks, backfilled into a real Prometheus; reusable across tests.

* :func:`write_designed_archive` writes a small archive in which some operations breach the
  thresholds and some do not (see :data:`PLAN`), completing at known times.
* :func:`backfill_blocks` turns an archive into TSDB blocks with ``batch-metrics backfill`` and
  the real ``promtool tsdb create-blocks-from openmetrics``.
* :func:`start_prom_stack` starts ``batch-metrics serve`` on a free port and a real Prometheus
  that scrapes it every second, evaluates the committed rule file every second, and holds the
  backfilled history. ``tests/test_prom_integration.py`` shares one per session; the Grafana
  tests may build on it the same way (``with start_prom_stack(tmp) as stack: ...``).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import yaml

from exporter.archive.files import write_record
from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    ModelUsage,
    OptimizationMetrics,
    StageDuration,
    TokenUsage,
)
from exporter.cli.main import main as cli_main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.servers import Server, require_binary, running, start_prometheus

__all__ = [
    "PLAN",
    "RULES_FILE",
    "PromStack",
    "RunPlan",
    "backfill_blocks",
    "start_prom_stack",
    "write_designed_archive",
]

REPO: Final = Path(__file__).resolve().parents[2]
RULES_FILE: Final = REPO / "prometheus" / "rules" / "batch-metrics.rules.yml"


@dataclass(frozen=True)
class RunPlan:
    """One operation's runs: durations (None: not recorded), per-run item counts and parallel
    efficiencies (per run, None or missing: not recorded)."""

    durations: tuple[float | None, ...]
    total: int
    success: int
    failure: int
    partial: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    efficiencies: tuple[float | None, ...] = ()


# Per operation; the comments say which thresholds (exporter/data/thresholds.yaml) it breaches.
PLAN: Final[dict[str, RunPlan]] = {
    # nothing: mean 300 s, all items succeed, 24k tokens and $0.25 per run
    "generate": RunPlan(
        (250.5, 300.25, 349.25, 280.0, 320.0, 300.0),
        10,
        10,
        0,
        0,
        20_000,
        4_000,
        0.25,
        (2.5, 1.75, 3.0, 2.25, 2.0, 2.5),
    ),
    # long_duration (mean 1800 s), high_failure_rate (80 %), tokens (160k) and cost ($1.50);
    # one run without item time (its wall time counts, its work does not)
    "execute": RunPlan(
        (1500.125, 2100.875, 1800.0, 1750.5, 1849.5, 1799.0),
        10,
        8,
        1,
        1,
        130_000,
        30_000,
        1.5,
        (1.25, 1.5, None, 1.0, 1.125, 1.375),
    ),
    # high_failure_rate only (70 %); one run without a duration (so its efficiency is in the
    # per-run mean but not in the time-weighted figure); a model without a price
    "review": RunPlan(
        (120.0, 250.0, None, 180.5, 220.25, 199.75),
        10,
        7,
        3,
        0,
        5_000,
        1_000,
        None,
        (1.5, 2.0, 2.5, 1.0, 1.25, 0.75),
    ),
    # long_duration only (mean 900 s); 19 of 20 items counted as successes, one not counted
    # at all (outcome="unknown" in Prometheus): 95 %; no item time recorded
    "update-context": RunPlan(
        (700.0, 1100.0, 900.0, 850.0, 950.0, 900.0), 20, 19, 0, 0, 8_000, 2_000, 0.05
    ),
}
RUN_SPACING: Final = 1800.0  # seconds between the completions of consecutive runs


def _record(op: str, plan: RunPlan, n: int, end: float) -> BatchRecord:
    duration = plan.durations[n]
    efficiency = plan.efficiencies[n] if n < len(plan.efficiencies) else None
    start = end - (duration or 0.0)
    errors = [
        ErrorEntry(item_id=f"PRP-{n}.{i}", error_type="TimeoutError") for i in range(plan.failure)
    ]
    status = "completed" if plan.success == plan.total else "partial"
    return BatchRecord(
        batch_id=f"{100 + n}",
        operation=op,
        timestamp=datetime.fromtimestamp(start, tz=UTC),
        duration_seconds=duration,
        metrics=Metrics(
            total_items=plan.total,
            success_count=plan.success,
            failure_count=plan.failure,
            partial_count=plan.partial,
            stages=2,
            token_usage=TokenUsage(
                input_tokens=plan.input_tokens,
                output_tokens=plan.output_tokens,
                total_tokens=plan.input_tokens + plan.output_tokens,
                estimated_cost=plan.cost_usd,
                by_model=[
                    ModelUsage(
                        model="claude-sonnet-4-5" if plan.cost_usd is not None else "mystery-model",
                        input_tokens=plan.input_tokens,
                        output_tokens=plan.output_tokens,
                        # a fifth of the input read from the prompt cache (input includes it)
                        cache_read_tokens=plan.input_tokens // 5,
                        cost_usd=plan.cost_usd,
                        cost_source="estimate" if plan.cost_usd is not None else "unpriced",
                    )
                ],
            ),
            stage_durations=[
                StageDuration(stage=1, duration_seconds=(duration or 100.0) * 0.25, items=["a"]),
                StageDuration(stage=2, duration_seconds=(duration or 100.0) * 0.75, items=["b"]),
            ],
            errors=errors or None,
        ),
        optimization_metrics=None
        if efficiency is None
        else OptimizationMetrics(parallel_efficiency=efficiency),
        run_id=f"designed-{op}-{n}",
        status=status if op != "update-context" else None,  # derived from counts there
        source="instrumentation",
    )


def write_designed_archive(archive: Path, last_end: float) -> list[BatchRecord]:
    """Write :data:`PLAN` into ``archive``; the last run of every operation ends at ``last_end``.

    Run ``n`` of each operation completes at ``last_end - (runs - 1 - n) * RUN_SPACING`` (plus
    a few seconds per operation, so completions do not coincide).
    """
    records: list[BatchRecord] = []
    for offset, (op, plan) in enumerate(PLAN.items()):
        runs = len(plan.durations)
        for n in range(runs):
            end = last_end - (runs - 1 - n) * RUN_SPACING - 7 * (len(PLAN) - 1 - offset)
            record = _record(op, plan, n, end)
            write_record(archive, record)
            records.append(record)
    return records


def backfill_blocks(archive: Path, workdir: Path, data_dir: Path) -> Path:
    """``batch-metrics backfill`` the archive, then promtool it into TSDB blocks in ``data_dir``."""
    promtool = require_binary("promtool")
    workdir.mkdir(parents=True, exist_ok=True)
    om_file = workdir / "history.om"
    code = cli_main(["backfill", "--archive", str(archive), "--output", str(om_file)])
    assert code == 0, f"backfill exited {code}"
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=100000h",
            str(om_file),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"promtool failed: {result.stdout}\n{result.stderr}"
    return om_file


@dataclass
class PromStack:
    """A real Prometheus scraping ``serve`` over ``archive``, with its backfilled history."""

    prometheus: Server
    exporter: MetricsServer
    archive: Path
    orchestration: Path
    records: list[BatchRecord]
    history_end: float  # the last backfilled sample's time: every record counted by then
    om_file: Path


def _config(path: Path, target: str) -> None:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {"job_name": "batch-metrics", "static_configs": [{"targets": [target]}]}
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@contextlib.contextmanager
def start_prom_stack(workdir: Path) -> Iterator[PromStack]:
    """Designed archive + backfill + ``serve`` + Prometheus; everything stopped on exit.

    The history ends four hours ago (on a whole second), clear of Prometheus' head block.
    """
    require_binary("prometheus")
    last_end = int(time.time()) - 4 * 3600 - 30
    archive = workdir / "archive"
    orchestration = workdir / "orchestration"
    (orchestration / "tasks").mkdir(parents=True)
    records = write_designed_archive(archive, last_end)
    data_dir = workdir / "prom-data"
    om_file = backfill_blocks(archive, workdir / "backfill", data_dir)
    history_end = float(last_end)
    index = ArchiveIndex(archive, db_path=workdir / "index.sqlite")
    registry, collector = build_registry(index, orchestration)
    exporter = MetricsServer.start(
        registry, collector, host="127.0.0.1", port=0, rescan_interval=3600
    )
    try:
        config = workdir / "prometheus.yml"
        _config(config, f"127.0.0.1:{exporter.port}")
        server = start_prometheus(
            config,
            workdir / "prometheus",
            storage=data_dir,
            extra=["--storage.tsdb.retention.time=10y"],
        )
        with running(server):
            yield PromStack(server, exporter, archive, orchestration, records, history_end, om_file)
    finally:
        exporter.stop()
        index.close()
