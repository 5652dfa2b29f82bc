"""On one archive, ``trends`` gives the seed trend-analysis.py figures where the seed is right.

The seed's script is extracted from the seed PRP at test time (tests/seed_scripts.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.index.store import ArchiveIndex
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from tests.support.generated_archive import write_archive
from tests.support.seed import extract_script, load_script


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    write_archive(root / ".ce/completed-batches", 240, seed=7)
    return root


def _ours(archive: Path, tmp_path: Path):
    with ArchiveIndex(archive, tmp_path / "index.sqlite") as index:
        index.refresh()
        return compute_trends(index, load_thresholds())


def test_durations_success_rates_and_bottlenecks_equal_the_seeds(project: Path, tmp_path: Path):
    seed = load_script("trend-analysis", tmp_path / "seed")
    archive = project / ".ce/completed-batches"
    analyzer = seed.TrendAnalyzer(archive)
    metrics = analyzer.load_metrics(None)
    seed_durations = analyzer.analyze_durations(metrics)
    seed_rates = analyzer.analyze_success_rates(metrics)
    seed_bottlenecks = analyzer.identify_bottlenecks(metrics)

    report = _ours(archive, tmp_path)

    assert report.records == len(metrics) == 240
    assert set(report.operations) == set(seed_durations)
    for op, expected in seed_durations.items():
        d = report.operations[op].durations
        assert d is not None
        assert d.count == expected["count"] == 60
        assert d.mean == pytest.approx(expected["mean"], rel=1e-12)
        assert d.median == expected["median"]
        assert d.min == expected["min"]
        assert d.max == expected["max"]
    for op, expected in seed_rates.items():
        trend = report.operations[op]
        assert trend.success_rate == pytest.approx(expected["success_rate"], rel=1e-12)
        assert trend.items.total == expected["total"]
        assert trend.items.success == expected["success"]
        assert trend.items.failure == expected["failure"]
    assert sorted((b.name, b.operation) for b in report.bottlenecks) == sorted(
        (b["type"], b["operation"]) for b in seed_bottlenecks
    )
    assert report.bottlenecks, "the generated archive should flag something (mean > 600 s)"


def test_seed_script_report_lines_appear_in_ours(project: Path, tmp_path: Path):
    """Run the seed's script as its users do and find its per-operation lines in our report."""
    script = extract_script("trend-analysis", tmp_path / "seed")
    seed_run = subprocess.run(
        [sys.executable, str(script), "--all"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ours = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "trends", "--all", "--no-save"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_env(tmp_path),
    )
    seed_lines = {
        line
        for line in seed_run.stdout.splitlines()
        if line.startswith(("- Mean:", "- Median:", "- Range:", "- Count:", "- Success Rate:"))
    }
    assert len(seed_lines) >= 12
    assert seed_lines <= set(ours.stdout.splitlines())


def test_zero_items_is_no_data_where_the_seed_says_zero_percent(tmp_path: Path):
    archive = tmp_path / ".ce/completed-batches"
    archive.mkdir(parents=True)
    record = {
        "batch_id": "9",
        "operation": "review",
        "timestamp": "2025-11-01T10:00:00+00:00",
        "duration_seconds": 12.0,
        "metrics": {"total_items": 0, "success_count": 0},
    }
    (archive / "batch-9-review.json").write_text(json.dumps(record))
    seed = load_script("trend-analysis", tmp_path / "seed")
    analyzer = seed.TrendAnalyzer(archive)
    metrics = analyzer.load_metrics(None)
    assert analyzer.analyze_success_rates(metrics)["review"]["success_rate"] == 0
    assert [b["type"] for b in analyzer.identify_bottlenecks(metrics)] == ["high_failure_rate"]

    report = _ours(archive, tmp_path)
    assert report.operations["review"].success_rate is None
    assert report.bottlenecks == []


def _env(tmp_path: Path) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    return {
        **os.environ,
        "PYTHONPATH": str(repo),
        "BATCH_METRICS_INDEX": str(tmp_path / "cli-index.sqlite"),
    }
