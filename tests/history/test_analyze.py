"""``batch-metrics analyze`` on real git repositories built in tmp_path with controlled dates."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.archive.files import list_record_files, read_record, write_record
from exporter.archive.model import BatchRecord, Metrics
from exporter.cli.main import main
from exporter.history.sources.prp import find_batch_prps

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def git(root: Path, *args: str, when: datetime | None = None) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when.isoformat()
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )


def commit(root: Path, message: str, minutes: float) -> None:
    git(root, "commit", "--allow-empty", "-q", "-m", message, when=T0 + timedelta(minutes=minutes))


def prp(root: Path, name: str, folder: str = "feature-requests", **front: object) -> Path:
    path = root / "PRPs" / folder / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["---", *(f"{k}: {v}" for k, v in front.items()), "---", f"# {name}", ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    prp(root, "PRP-47.1.1", prp_id="PRP-47.1.1", batch_id=47, stage=1, status="completed")
    prp(root, "PRP-47.1.2", prp_id="PRP-47.1.2", batch_id=47, stage=1, status="planning")
    prp(root, "PRP-47.2.1", prp_id="PRP-47.2.1", batch_id=47, stage=2, status="failed")
    prp(root, "PRP-47.2.2", prp_id="PRP-47.2.2", batch_id=47, stage=2, status="planning")
    # Neighbours that must never be counted for batch 47.
    prp(root, "PRP-470.1.1", prp_id="PRP-470.1.1", batch_id=470, stage=1, status="completed")
    prp(root, "PRP-4.7", prp_id="PRP-4.7", batch_id=4, stage=1, status="completed")
    commit(root, "Generate PRPs for batch 47", 0)
    commit(root, "Generate PRP-470.1.1", 5)
    commit(root, "Implement PRP-47.1.1", 10)
    commit(root, "Implement PRP-47.1.2 (work in progress)", 30)
    commit(root, "Implement PRP-470.1.1", 40)
    commit(root, "Fix PRP-4.7", 45)
    commit(root, "Implement PRP-47.2.1", 70)
    commit(root, "Review PRP-47.1.1 and PRP-47.2.1", 100)
    commit(root, "Peer review fixes for batch 47", 130)
    return root


def analyze(root: Path, *args: str) -> int:
    return main(["analyze", "--batch", "47", "--root", str(root), *args])


def records(root: Path) -> dict[str, BatchRecord]:
    found: dict[str, BatchRecord] = {}
    for path in list_record_files(root / ".ce/completed-batches"):
        record = read_record(path)
        found[record.operation] = record
    return found


def test_execute_counts_items_by_front_matter_and_times_stages_by_commits(project: Path):
    assert analyze(project, "--operation", "execute") == 0
    (execute,) = records(project).values()
    m = execute.metrics
    assert (execute.source, execute.batch_id) == ("prp", "47")
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (4, 1, 1, 1)
    assert m.stages == 2
    # Execute commits of batch 47 at +10, +30, +70 min; stage 1 ends at +30, stage 2 at +70.
    assert execute.duration_seconds == 3600.0
    assert execute.timestamp == T0 + timedelta(minutes=10)
    assert [(s.stage, s.duration_seconds, s.items) for s in m.stage_durations or []] == [
        (1, 1200.0, ["PRP-47.1.1", "PRP-47.1.2"]),
        (2, 2400.0, ["PRP-47.2.1", "PRP-47.2.2"]),
    ]
    assert {(e.item_id, e.error_type) for e in m.errors or []} == {
        ("PRP-47.1.2", "status_not_updated"),
        ("PRP-47.2.1", "prp_failed"),
        ("PRP-47.2.2", "not_started"),
    }
    assert any("PRP-47.1.2" in n and "planning" in n for n in execute.notes or [])


def test_batch_id_matches_exactly_in_file_names_and_commits(project: Path):
    scan = find_batch_prps(project, "47")
    assert [p.item_id for p in scan.prps] == [
        "PRP-47.1.1",
        "PRP-47.1.2",
        "PRP-47.2.1",
        "PRP-47.2.2",
    ]
    assert (scan.warnings, scan.ignored) == ([], [])
    assert [p.item_id for p in find_batch_prps(project, "4").prps] == ["PRP-4.7"]
    assert analyze(project, "--operation", "generate") == 0
    generate = records(project)["generate"]
    # Only "Generate PRPs for batch 47" counts; the PRP-470 commit at +5 min does not.
    assert generate.duration_seconds is None
    assert generate.timestamp == T0
    assert generate.metrics.total_items == 4


def test_review_from_git_alone_gives_timing_and_no_invented_counts(project: Path):
    assert analyze(project, "--operation", "review") == 0
    review = records(project)["review"]
    assert review.source == "git"
    assert review.duration_seconds == 1800.0
    assert review.metrics.total_items is None
    assert review.metrics.success_count is None
    assert "no item counts" in (review.notes or [""])[0]


def test_update_context_without_evidence_writes_nothing(project: Path, capsys):
    assert analyze(project, "--operation", "update-context") == 1
    assert capsys.readouterr().err == (
        f"batch-metrics: error: no data found for batch 47 under {project}\n"
    )
    assert not (project / ".ce/completed-batches").exists()
    assert analyze(project, "--operation", "all") == 0
    err = capsys.readouterr().err
    assert err == "batch-metrics: batch 47: no evidence of update-context; nothing written for it\n"


def test_rerun_is_idempotent(project: Path):
    assert analyze(project) == 0
    first = {p.name: p.read_text() for p in list_record_files(project / ".ce/completed-batches")}
    assert sorted(first) == [
        "batch-47-execute.json",
        "batch-47-generate.json",
        "batch-47-review.json",
    ]
    assert analyze(project) == 0
    again = {p.name: p.read_text() for p in list_record_files(project / ".ce/completed-batches")}
    assert again == first


def test_never_overwrites_an_instrumented_record(project: Path, capsys):
    archive = project / ".ce/completed-batches"
    mine = BatchRecord(
        batch_id="47",
        operation="execute",
        timestamp=T0,
        duration_seconds=5.0,
        metrics=Metrics(total_items=1, success_count=1),
        run_id="live-1",
        source="instrumentation",
    )
    path = write_record(archive, mine)
    before = path.read_text()
    assert analyze(project, "--operation", "execute") == 0
    assert "recorded by instrumentation; kept" in capsys.readouterr().out
    assert path.read_text() == before
    assert [p.name for p in list_record_files(archive)] == ["batch-47-execute.json"]


def test_not_a_git_repository_still_records_front_matter_and_says_so(tmp_path: Path, capsys):
    root = tmp_path / "plain"
    prp(root, "PRP-47.1.1", batch_id=47, stage=1, status="completed")
    assert analyze(root, "--operation", "execute") == 3
    err = capsys.readouterr().err
    assert err == f"batch-metrics: error: {root} is not a git repository\n"
    (execute,) = records(root).values()
    assert execute.duration_seconds is None
    assert "no timing: git history unavailable" in (execute.notes or [])


def test_missing_git_binary_is_one_line(project: Path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(project / "no-bin"))
    assert analyze(project, "--operation", "execute") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["batch-metrics: error: git is not installed (no 'git' on PATH)"]


def test_no_prps_for_the_batch(tmp_path: Path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    assert main(["analyze", "--batch", "99", "--root", str(root)]) == 1
    assert "error: no data found for batch 99" in capsys.readouterr().err
    assert not (root / ".ce").exists()


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 65])
def test_bad_batch_id_is_a_usage_error(tmp_path: Path, bad: str, capsys):
    assert main(["analyze", "--batch", bad, "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_yaml_bomb_and_non_yaml_front_matter_are_skipped_with_a_warning(project: Path, capsys):
    bomb = ["---", 'a: &a ["x","x","x","x","x","x","x","x","x"]']
    bomb += [
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    (project / "PRPs/feature-requests/PRP-47.3.1.md").write_text("\n".join([*bomb, "---", ""]))
    (project / "PRPs/feature-requests/PRP-47.3.2.md").write_text("---\n: : [\n---\n")
    (project / "PRPs/feature-requests/PRP-47.3.3.md").write_bytes(b"---\n" + b"k: v\n" * 20000)
    assert analyze(project, "--operation", "execute") == 0
    err = capsys.readouterr().err
    assert "PRP-47.3.1.md: front matter uses YAML anchors or aliases (refused); skipped" in err
    assert "PRP-47.3.2.md: front matter is not YAML" in err
    assert "PRP-47.3.3.md: front matter not closed within 64 KiB; skipped" in err
    assert records(project)["execute"].metrics.total_items == 4


def test_orchestrator_files_win_and_are_read_exactly(project: Path):
    tasks = project / ".ce/orchestration/tasks/batch-47"
    tasks.mkdir(parents=True)
    specs = [("1", "PRP-47.1.1", 1), ("2", "PRP-47.1.2", 1), ("3", "PRP-47.2.1", 2)]
    for n, item, stage in specs:
        (tasks / f"task-{n}.json").write_text(
            json.dumps(
                {
                    "item_id": item,
                    "stage": stage,
                    "operation": "execute",
                    "model": "claude-haiku-4-5",
                }
            )
        )
    results = {
        "1": {
            "status": "completed",
            "tokens_used": 1500,
            "input_tokens": 1000,
            "output_tokens": 500,
            "elapsed_seconds": 100,
        },
        "2": {
            "status": "failed",
            "errors": [{"type": "TimeoutError", "message": "slow"}],
            "tokens_used": 300,
            "input_tokens": 200,
            "output_tokens": 100,
            "elapsed_seconds": 250,
        },
    }
    for n, result in results.items():
        (tasks / f"task-{n}.result.json").write_text(json.dumps(result))
    (tasks / "task-3.hb").write_text(
        json.dumps(
            {
                "status": "running",
                "progress": 0.5,
                "tokens_used": 10,
                "elapsed_seconds": 40,
                "last_update": "2025-03-03T10:00:00+00:00",
            }
        )
    )
    batches = project / ".ce/orchestration/batches"
    batches.mkdir(parents=True)
    (batches / "batch-47.result.json").write_text(
        json.dumps(
            {
                "operation": "execute",
                "started_at": "2025-03-03T09:00:00+00:00",
                "elapsed_seconds": 400,
            }
        )
    )
    assert analyze(project, "--operation", "execute") == 0
    execute = records(project)["execute"]
    m = execute.metrics
    assert execute.source == "orchestrator"
    assert execute.timestamp == T0
    assert execute.duration_seconds == 400.0
    # Every item of the batch counts: PRP-47.2.1's task never finished, so its front matter
    # (failed) decides; PRP-47.2.2 has no task and was never started.
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (4, 1, 2, 0)
    assert [(s.stage, s.duration_seconds) for s in m.stage_durations or []] == [
        (1, 250.0),
        (2, 40.0),
    ]
    assert {(e.item_id, e.error_type) for e in m.errors or []} == {
        ("PRP-47.1.2", "TimeoutError"),
        ("PRP-47.2.1", "prp_failed"),
        ("PRP-47.2.2", "not_started"),
    }
    notes = execute.notes or []
    assert notes[0] == "item outcomes: 1 by front matter; 2 by task result"
    assert "PRP-47.1.2: front matter says 1 planning for these items; counted by the " in "\n".join(
        notes
    )
    usage = m.token_usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1200, 600, 1810)
    assert usage.cost_source == "estimate"
    assert execute.optimization_metrics is not None
    assert execute.optimization_metrics.parallel_efficiency == pytest.approx(390 / 400)
