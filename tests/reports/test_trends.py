"""``trends``: shared definitions, edge cases and the CLI contract."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    OptimizationMetrics,
    StageDuration,
)
from exporter.cli.main import main
from exporter.index.stats import duration_stats, parallel_efficiency, percentile, success_rate
from exporter.index.store import ArchiveIndex, RecordFilter
from exporter.reports.since import parse_since
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from tests.support.generated_archive import make_record, write_archive

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def run(batch: str, op: str, hours: int, duration: float | None, items: tuple[int, int, int]):
    total, success, failure = items
    return BatchRecord(
        batch_id=batch,
        operation=op,
        timestamp=T0 + timedelta(hours=hours),
        duration_seconds=duration,
        run_id=f"r{batch}{op[:3]}{hours}",
        metrics=Metrics(
            total_items=total,
            success_count=success,
            failure_count=failure,
            stage_durations=[
                StageDuration(stage=1, duration_seconds=10.0),
                StageDuration(stage=2, duration_seconds=30.0),
            ],
            errors=[ErrorEntry(error_type="TimeoutError")] * failure,
        ),
    )


def report_of(archive: Path, tmp_path: Path, where: RecordFilter | None = None):
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        return compute_trends(index, load_thresholds(), where)


def test_stats_definitions():
    assert success_rate(9, 10) == 0.9
    assert success_rate(0, 0) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 100.0], 0.95) == 95.0
    stats = duration_stats([None, 30.0, 10.0, 20.0])
    assert stats is not None
    assert (stats.count, stats.mean, stats.median, stats.min, stats.max) == (
        3,
        20.0,
        20.0,
        10.0,
        30.0,
    )
    assert stats.p95 == pytest.approx(29.0)
    assert duration_stats([None]) is None


def test_sql_figures_equal_the_python_definitions(tmp_path: Path):
    archive = tmp_path / "a"
    write_archive(archive, 120, seed=3, every_nth_without=5)
    report = report_of(archive, tmp_path)

    rng = random.Random(3)
    recs = [make_record(rng, n, with_duration=n % 5 != 4) for n in range(120)]
    for op, trend in report.operations.items():
        mine = [r for r in recs if r.operation == op]
        expected = duration_stats(r.duration_seconds for r in mine)
        assert expected is not None and trend.durations is not None
        assert trend.durations.count == expected.count
        assert trend.durations.mean == pytest.approx(expected.mean, rel=1e-12)
        assert (trend.durations.median, trend.durations.p95) == (expected.median, expected.p95)
        assert trend.runs_without_duration == sum(r.duration_seconds is None for r in mine)
        total = sum(r.metrics.total_items or 0 for r in mine)
        success = sum(r.metrics.success_count or 0 for r in mine)
        assert trend.success_rate == success_rate(success, total)


def test_parallel_efficiency_mean_per_run_and_overall_time_weighted(tmp_path: Path):
    def efficient(record: BatchRecord, efficiency: float) -> BatchRecord:
        metrics = OptimizationMetrics(parallel_efficiency=efficiency)
        return record.model_copy(update={"optimization_metrics": metrics})

    archive = tmp_path / "a"
    write_record(archive, efficient(run("1", "execute", 0, 100.0, (1, 1, 0)), 3.0))
    write_record(archive, efficient(run("2", "execute", 1, 300.0, (1, 1, 0)), 1.0))
    write_record(archive, run("3", "execute", 2, 200.0, (1, 1, 0)))  # wall time, no item time
    write_record(archive, efficient(run("4", "execute", 3, None, (1, 1, 0)), 2.0))  # no wall
    write_record(archive, run("5", "generate", 4, 60.0, (1, 1, 0)))
    report = report_of(archive, tmp_path)
    parallel = report.operations["execute"].parallel
    assert parallel is not None
    assert (parallel.runs, parallel.mean_efficiency, parallel.seconds_saved) == (3, 2.0, 200.0)
    assert parallel.overall_efficiency == (100.0 * 3.0 + 300.0 * 1.0) / (100.0 + 300.0 + 200.0)
    assert report.operations["generate"].parallel is None
    assert parallel_efficiency(None, 10.0) is None
    assert parallel_efficiency(5.0, 0.0) is None


def test_bottlenecks_recent_by_timestamp_hot_spots_and_errors(tmp_path: Path):
    archive = tmp_path / "a"
    write_record(archive, run("1", "execute", 0, 700.0, (10, 8, 2)))
    write_record(archive, run("2", "execute", 1, 900.0, (10, 10, 0)))
    write_record(archive, run("3", "execute", 2, None, (10, 10, 0)))
    write_record(archive, run("9", "generate", 3, 60.0, (4, 4, 0)))
    report = report_of(archive, tmp_path)
    execute = report.operations["execute"]
    assert execute.durations is not None
    assert (execute.durations.count, execute.durations.mean) == (2, 800.0)
    assert execute.success_rate == 28 / 30
    assert [(b.name, b.operation, b.value) for b in report.bottlenecks] == [
        ("long_duration", "execute", 800.0)
    ]
    hot = execute.hot_spot
    assert hot is not None and (hot.stage, hot.share) == (2, 0.75)
    assert [(e.error_type, e.count) for e in report.errors] == [("TimeoutError", 2)]
    # --recent 2 is the two latest starts (batch 3 execute, batch 9 generate), not file names.
    recent = report_of(archive, tmp_path, RecordFilter(recent=2))
    assert recent.records == 2
    assert set(recent.operations) == {"execute", "generate"}
    assert recent.operations["execute"].durations is None


def test_parse_since():
    now = datetime(2025, 6, 9, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2025, 6, 2, tzinfo=UTC)
    assert parse_since("2025-06-01T00:00:00+00:00", now) == datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected a duration like 7d"):
        parse_since("last week", now)


def test_cli_no_archive(tmp_path: Path, capsys):
    assert main(["trends", "--archive", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no archive at" in err


def test_cli_empty_archive_single_batch_and_invalid_files(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / ".ce/completed-batches"
    archive.mkdir(parents=True)
    assert main(["trends", "--all"]) == 0
    out, err = capsys.readouterr()
    assert "Analyzed 0 batch operations" in out and "no archived runs match" in err
    write_record(archive, run("47", "execute", 0, 1200.0, (10, 5, 5)))
    (archive / "batch-48-execute.json").write_text("{not json")
    assert (
        main(
            ["trends", "--all", "--format", "json", "--fail-on-bottleneck", "--history-dir", "hist"]
        )
        == 1
    )
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["records"] == 1
    assert data["operations"]["execute"]["durations"]["mean"] == 1200.0
    assert data["operations"]["execute"]["success_rate"] == 0.5
    assert [(b["name"], b["value"]) for b in data["bottlenecks"]] == [
        ("long_duration", 1200.0),
        ("high_failure_rate", 0.5),
    ]
    assert "skipped 1 invalid record file(s): batch-48-execute.json" in err
    saved = (tmp_path / ".ce/trend-analysis-report.md").read_text()
    assert "- Mean: 1200s (20.0 min)" in saved
    (dated,) = (tmp_path / "hist").iterdir()
    assert dated.name.startswith("trend-analysis-") and dated.read_text() == saved


def test_rescan_catches_a_file_rewritten_in_place(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / ".ce/completed-batches"
    path = write_record(archive, run("47", "execute", 0, 100.0, (1, 1, 0)))
    assert main(["trends", "--format", "json", "--no-save"]) == 0
    capsys.readouterr()
    text = path.read_text().replace('"duration_seconds": 100.0', '"duration_seconds": 300.0')
    with path.open("r+") as handle:  # in place, as the seed's scripts write
        handle.write(text)
    dir_stat = archive.stat()
    os.utime(archive, ns=(dir_stat.st_atime_ns, dir_stat.st_mtime_ns))
    assert main(["trends", "--format", "json", "--no-save", "--rescan"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["operations"]["execute"]["durations"]["mean"] == 300.0


def test_a_run_without_total_items_counts_the_items_it_counted(tmp_path: Path):
    """trends and the Prometheus series agree on the denominator of the success rate."""
    from exporter.prometheus.series import ITEMS, contributions

    archive = tmp_path / "a"
    counted_only = run("1", "execute", 0, 60.0, (4, 3, 1)).model_copy(
        update={"metrics": Metrics(success_count=3, failure_count=1)}
    )
    write_record(archive, counted_only)
    write_record(archive, run("2", "execute", 1, 60.0, (6, 5, 0)))  # one item unaccounted
    report = report_of(archive, tmp_path)
    assert report.operations["execute"].success_rate == 8 / 10

    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        items = [
            (labels, n)
            for s in index.summaries()
            for (family, labels), n in contributions(s).counters
            if family is ITEMS
        ]
    success = sum(n for (_, outcome), n in items if outcome == "success")
    assert (success, sum(n for _, n in items)) == (8, 10)
