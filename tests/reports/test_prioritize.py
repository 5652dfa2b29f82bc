"""``prioritize``: consistent scoring from the data file, triggers evaluated on the archive."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.archive.model import BatchRecord, Metrics, TokenUsage
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.reports.prioritize import load_framework, measure_signals, rank


def record(batch: str, op: str, run: str, counts: tuple[int, int], usage: tuple[int, float]):
    return BatchRecord(
        batch_id=batch,
        operation=op,
        timestamp=datetime(2025, 5, 1, tzinfo=UTC),
        duration_seconds=100.0,
        run_id=run,
        metrics=Metrics(
            total_items=counts[0],
            success_count=counts[1],
            token_usage=TokenUsage(total_tokens=usage[0], estimated_cost=usage[1]),
        ),
    )


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    write_record(archive, record("1", "execute", "a", (10, 7), (150_000, 0.50)))
    write_record(archive, record("1", "execute", "b", (10, 8), (10_000, 0.10)))  # a retry
    write_record(archive, record("1", "generate", "c", (10, 10), (40_000, 0.20)))
    write_record(archive, record("2", "execute", "d", (10, 10), (20_000, 0.40)))
    return archive


def test_signals_are_exact(archive: Path, tmp_path: Path):
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        signals = measure_signals(index)
    assert signals.records == 4
    assert signals.values["tokens_per_batch"] == (200_000 + 20_000) / 2
    assert signals.values["cost_per_batch"] == pytest.approx((0.80 + 0.40) / 2)
    assert signals.values["success_rate"] == 25 / 30  # execute: (7 + 8 + 10) / 30
    assert signals.values["repeated_run_share"] == 1 / 3  # (1, execute) of 3 pairs
    assert signals.evidence["success_rate"] == "execute: 25 of 30 items succeeded (83.3%)"


def test_ranking_uses_one_consistent_scoring(archive: Path, tmp_path: Path):
    framework = load_framework()
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        ranked = rank(framework, measure_signals(index))
    table = [(r.id, r.indicated, r.impact, r.impact_source, r.score) for r in ranked]
    assert table == [
        ("llm-caching", True, "high", "declared", 12),  # 3 x (6 - 2)
        ("subagent-result-caching", True, "high", "data", 9),  # share 1/3 > 0.3 -> high
        ("advanced-error-recovery", True, "medium", "data", 6),  # 0.83 in [0.8, 0.9) -> medium
        ("multi-model-orchestration", False, "high", "declared", 6),
        ("streaming-progress", False, "low", "declared", 4),
    ]


def test_cli_json_and_edited_candidates_file(archive: Path, tmp_path: Path, capsys):
    custom = tmp_path / "candidates.yaml"
    custom.write_text(
        "scoring: {impact_points: {high: 3, medium: 2, low: 1}, effort_max: 5,\n"
        "          priority_bands: {high: 10, medium: 5}}\n"
        "candidates:\n"
        "  - {id: faster-execute, name: Faster execute, impact: low, effort: 1,\n"
        "     triggers: [{signal: mean_duration_seconds, comparison: '>', threshold: 50}]}\n"
    )
    code = main(
        ["prioritize", "--archive", str(archive), "--candidates", str(custom), "--format", "json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    (only,) = out["candidates"]
    assert (only["id"], only["score"], only["priority"], only["indicated"]) == (
        "faster-execute",
        5,
        "medium",
        True,
    )
    assert only["triggers"][0]["evidence"] == "execute: mean 100s"


def test_invalid_candidates_file_is_one_line(archive: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scoring: {impact_points: {high: 3}, effort_max: 5}\ncandidates: []\n")
    assert main(["prioritize", "--archive", str(archive), "--candidates", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("batch-metrics: error: invalid candidates file") and err.count("\n") == 1


def test_empty_archive_is_an_error(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prioritize", "--archive", str(tmp_path / "empty")]) == 1
    assert "no archived runs" in capsys.readouterr().err
