"""Sources ranked per item: task files > batch result > front matter > commits; notes say which."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.archive.model import BatchRecord
from exporter.archive.pricing import load_pricing
from exporter.cli.main import main
from exporter.history.analyze import analyze_batch
from exporter.history.sources import SourceError
from exporter.history.sources.git import batch_commits
from tests.support.git_history import Project, at


@pytest.fixture
def batch47(tmp_path: Path) -> Project:
    """Three PRPs whose front matter still says planning; execute commits by convention."""
    p = Project(tmp_path / "project")
    p.prp("PRP-47.1.1-a", batch_id=47, stage=1, status="planning")
    p.prp("PRP-47.1.2-b", batch_id=47, stage=1, status="planning")
    p.prp("PRP-47.2.1-c", batch_id=47, stage=2, status="planning")
    p.commit("Generate batch 47", 0)
    p.code("src/a.py", 20, "PRP-47.1.1: Phase 1 - a")
    p.code("src/b.py", 40, "PRP-47.1.2: Phase 1 - b")
    p.code("src/c.py", 60, "PRP-47.2.1: Phase 2 - c")
    return p


def execute(root: Path) -> BatchRecord:
    analysis = analyze_batch(root, "47", ("execute",), load_pricing(None))
    (record,) = analysis.records
    return record


def test_commits_alone_show_work_not_success(batch47: Project):
    record = execute(batch47.root)
    m = record.metrics
    assert (record.source, m.total_items, m.success_count, m.partial_count) == ("prp", 3, 0, 3)
    assert record.status == "partial"
    assert {e.error_type for e in m.errors or []} == {"status_not_updated"}
    assert any("commits show work, not success" in n for n in record.notes or [])
    assert (record.timestamp, record.duration_seconds) == (at(20), 2400.0)


def test_documented_batch_result_names_items_and_outranks_front_matter(batch47: Project):
    batch47.orchestration(
        "batches/batch-47.result.json",
        {
            "batch_id": 47,
            "status": "partial",
            "completed_tasks": ["PRP-47.1.1", "47.1.2"],
            "failed_tasks": ["PRP-47.2.1"],
            "total_tokens_used": 180000,
            "total_elapsed_seconds": 3600,
            "started_at": at(10).isoformat(),
        },
    )
    record = execute(batch47.root)
    m = record.metrics
    assert record.source == "orchestrator"
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (3, 2, 1, 0)
    assert [(e.item_id, e.error_type) for e in m.errors or []] == [
        ("PRP-47.2.1", "batch_result_failure")
    ]
    assert (record.timestamp, record.duration_seconds) == (at(10), 3600.0)
    # The first stage starts at the batch result's start, before its first commit.
    assert [(s.stage, s.duration_seconds) for s in m.stage_durations or []] == [
        (1, 1800.0),
        (2, 1200.0),
    ]
    assert m.token_usage is not None
    assert (m.token_usage.total_tokens, m.token_usage.cost_source) == (180000, "unpriced")
    notes = record.notes or []
    assert notes[:2] == [
        "the batch result names no operation; taken as execute",
        "item outcomes: 3 by batch result",
    ]
    assert any(n.startswith("PRP-47.1.1, PRP-47.1.2, PRP-47.2.1: front matter says") for n in notes)
    assert "start: batch-47.result.json started_at" in notes
    assert "duration: batch-47.result.json elapsed time" in notes


def test_executor_batch_result_of_one_stage_counts_that_stage_only(batch47: Project):
    batch47.set_front("PRPs/feature-requests/PRP-47.1.1-a.md", status="completed")
    batch47.set_front("PRPs/feature-requests/PRP-47.1.2-b.md", status="completed")
    batch47.prp("PRP-47.2.2-d", batch_id=47, stage=2, status="planning")
    batch47.orchestration(
        "batches/batch-47.result.json",
        {"batch_id": 47, "stage_filter": "2", "total": 2, "success": 1, "failed": 1},
    )
    record = execute(batch47.root)
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (4, 3, 1, 0)
    assert [e.error_type for e in m.errors or []] == ["batch_result_failed"]
    assert (record.notes or [])[0] == (
        "item outcomes: stage 2 by the batch result batch-47.result.json "
        "(total 2, success 1, failed 1); 2 by front matter"
    )


def test_task_files_outrank_the_batch_result(batch47: Project):
    for n, item in ((1, "PRP-47.1.1"), (2, "PRP-47.1.2"), (3, "PRP-47.2.1")):
        batch47.orchestration(
            f"tasks/batch-47/task-{n}.json", {"item_id": item, "type": "executor"}
        )
        status = "failed" if n == 3 else "success"
        batch47.orchestration(
            f"tasks/batch-47/task-{n}.result.json", {"status": status, "elapsed_seconds": 60 * n}
        )
    batch47.orchestration(
        "batches/batch-47.result.json",
        {"batch_id": 47, "stage_filter": "", "total": 3, "success": 3, "failed": 0},
    )
    record = execute(batch47.root)
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count) == (3, 2, 1)
    notes = record.notes or []
    assert notes[0] == "item outcomes: 3 by task result"
    assert any("was not used for counts: the task result files name each item" in n for n in notes)
    # The tasks' times win over the commits'.
    assert [(s.stage, s.duration_seconds) for s in m.stage_durations or []] == [
        (1, 120.0),
        (2, 180.0),
    ]
    assert record.duration_seconds == 300.0


def test_review_tasks_are_the_review_record(batch47: Project):
    batch47.orchestration(
        "tasks/batch-47/PRP-47.1.1.result.json",
        {"status": "approved", "elapsed_seconds": 30, "last_update": at(100).isoformat()},
    )
    batch47.orchestration(
        "tasks/batch-47/PRP-47.1.1.json", {"prp_id": "47.1.1", "type": "reviewer", "stage": 1}
    )
    analysis = analyze_batch(batch47.root, "47", ("review", "execute"), load_pricing(None))
    review, execute_record = analysis.records
    assert (review.operation, review.source) == ("review", "orchestrator")
    assert (review.metrics.total_items, review.metrics.success_count) == (1, 1)
    assert execute_record.metrics.total_items == 3  # the reviewer's task is not execute work


def test_git_missing_with_orchestrator_files_is_one_error_line(
    batch47: Project, capsys, monkeypatch
):
    batch47.orchestration(
        "batches/batch-47.result.json",
        {
            "batch_id": 47,
            "stage_filter": "",
            "total": 3,
            "success": 3,
            "failed": 0,
            "timestamp": at(90).isoformat(),
        },
    )
    monkeypatch.setenv("PATH", str(batch47.root / "no-bin"))
    with pytest.raises(SourceError, match="git is not installed"):
        batch_commits(batch47.root, "47")
    args = ["analyze", "--batch", "47", "--root", str(batch47.root), "--operation", "execute"]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert captured.err == "batch-metrics: error: git is not installed (no 'git' on PATH)\n"
    assert "batch 47 execute (orchestrator): saved" in captured.out
    (record,) = analyze_batch(batch47.root, "47", ("execute",), load_pricing(None)).records
    assert (record.timestamp, record.duration_seconds) == (at(90), None)
    assert "no timing: git history unavailable" in (record.notes or [])


def test_generator_tasks_are_the_generate_items(batch47: Project):
    for n in (1, 2, 3):
        batch47.orchestration(f"tasks/batch-47/task-{n}.json", {"type": "generator"})
        batch47.orchestration(
            f"tasks/batch-47/task-{n}.result.json",
            {"status": "success", "elapsed_seconds": 20, "last_update": at(1).isoformat()},
        )
    analysis = analyze_batch(batch47.root, "47", ("generate",), load_pricing(None))
    (generate,) = analysis.records
    m = generate.metrics
    assert (generate.source, m.total_items, m.success_count) == ("orchestrator", 3, 3)
