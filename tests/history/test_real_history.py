"""``analyze`` on a history shaped like the one in issue 12: the orchestrator's conventions,
subjects and bodies full of other operations' words, a stale front matter, a superseded plan
beside the executed one, a batch result with counts only, and neighbours (460, 4.6, 41)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from exporter.archive.files import list_record_files, read_record
from exporter.archive.model import BatchRecord
from exporter.cli.main import main
from tests.support.git_history import Project, at

STAGES = {
    "PRP-46.1.1-nlp-core": 1,
    "PRP-46.2.1-review-cmd": 2,
    "PRP-46.2.2-context-sync": 2,
    "PRP-46.2.3-generator": 2,
    "PRP-46.3.1-docs": 3,
    "PRP-46.3.2-metrics": 3,
    "PRP-46.3.3-cli": 3,
    "PRP-46.4.1-release": 4,
}
WORDS = "generate the review report, update-context for CLAUDE.md, then execute again"


def _names() -> dict[str, str]:
    return {name.split("-")[1]: name for name in STAGES}  # "46.2.1" -> file stem


@pytest.fixture
def history(tmp_path: Path) -> Project:
    p = Project(tmp_path / "project")
    # The day before: archiving other PRPs; the body mentions PRP-46, the files are batch 41's.
    p.prp("PRP-41.1.1-old", batch_id=41, stage=1, status="completed")
    p.write("src/app.py", "print('hello')\n")
    p.commit("Initial project", -24 * 60)
    p.move("PRPs/feature-requests/PRP-41.1.1-old.md", "PRPs/executed/PRP-41.1.1-old.md")
    p.commit("Archive executed PRPs", -23 * 60, body="PRP-41: implemented via PRP-46")
    # Documents that are not items, and a neighbouring batch 460.
    p.write("PRPs/feature-requests/PRP-46-BATCH-PLAN.md", "# plan\n")
    p.write("PRPs/feature-requests/PRP-46-USAGE-GUIDE.md", "no front matter here\n")
    p.commit("Plan batch 46", 0, body=WORDS)
    # generate: one commit adds every PRP (and a superseded plan claiming PRP-46.1.1).
    for name, stage in STAGES.items():
        p.prp(name, prp_id=name[:10], batch_id=46, stage=stage, status="planning")
    p.prp("PRP-46.1.1-core-superseded", batch_id=46, stage=1, status="pending")
    p.commit("Batch 46: review tooling and context sync plans", 5, body=WORDS)
    # execute: the convention "PRP-{id}: Phase N - title", code changed, front matter updated
    # except for two items whose front matter was never updated.
    stale = {"46.3.2", "46.4.1"}
    minutes = {"46.1.1": 30, "46.2.1": 45, "46.2.2": 55, "46.2.3": 60}
    minutes |= {"46.3.1": 75, "46.3.2": 85, "46.3.3": 95, "46.4.1": 120}
    for number, minute in minutes.items():
        name = _names()[number]
        if number not in stale:
            p.set_front(f"PRPs/feature-requests/{name}.md", status="completed")
        title = name.split("-", 2)[2].replace("-", " ")
        subject = f"PRP-{number}: Phase {STAGES[name]} - {title}"
        p.code(f"src/{title.replace(' ', '_')}.py", minute, subject, body=WORDS)
        if number == "46.1.1":
            p.code("src/nlp_core.py", 38, "PRP-46.1.1: Phase 1 - fix the review tests", WORDS)
    p.prp("PRP-460.1.1-x", batch_id=460, stage=1, status="completed")
    p.commit("Add PRPs for batch 460", 48)
    p.code("src/other.py", 50, "PRP-460.1.1: Phase 1 - batch 460 work")
    p.orchestration(
        "batches/batch-46.result.json",
        {
            "batch_id": 46,
            "stage_filter": "",
            "total": 8,
            "success": 8,
            "failed": 0,
            "timestamp": at(121).isoformat(),
        },
    )
    # review: files added under a reviews folder; subjects use other operations' words.
    p.write("PRPs/reviews/PRP-46.2.1-review.md", "approved\n")
    p.commit("PRP-46 execution: generate a summary", 150, body="update-context next")
    p.write("PRPs/reviews/PRP-46.3.1-review.md", "approved\n")
    p.commit("Notes on batch 46 (execute follow-ups)", 160)
    # update-context: front matter only (PRPs moved to executed/), subject full of other words.
    for name in STAGES:
        if name.split("-")[1] not in stale:
            p.move(f"PRPs/feature-requests/{name}.md", f"PRPs/executed/{name}.md")
            p.set_front(f"PRPs/executed/{name}.md", context_synced="true")
    p.commit("Batch 46: generate and review follow-ups after execute", 200, body=WORDS)
    return p


def records(root: Path) -> dict[str, BatchRecord]:
    found: dict[str, BatchRecord] = {}
    for path in list_record_files(root / ".ce/completed-batches"):
        record = read_record(path)
        found[record.operation] = record
    return found


def analyze(root: Path, *args: str) -> int:
    return main(["analyze", "--batch", "46", "--root", str(root), *args])


def test_every_operation_from_its_own_evidence(history: Project, capsys):
    assert analyze(history.root, "--operation", "all") == 0
    err = capsys.readouterr().err
    assert err == ""  # no warnings about the plan documents, no missing operation
    found = records(history.root)
    assert sorted(found) == ["execute", "generate", "review", "update-context"]

    generate = found["generate"]
    m = generate.metrics
    assert (generate.source, generate.timestamp, generate.duration_seconds) == ("prp", at(5), None)
    assert (m.total_items, m.success_count, m.failure_count) == (8, 8, 0)
    assert any("PRP-46.1.1: 2 files claim this id" in n for n in generate.notes or [])

    execute = found["execute"]
    m = execute.metrics
    assert execute.source == "orchestrator"
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (8, 8, 0, 0)
    assert execute.status == "completed"
    assert execute.timestamp == at(30)
    assert execute.duration_seconds == 90 * 60
    assert [(s.stage, s.duration_seconds) for s in m.stage_durations or []] == [
        (1, 8 * 60.0),
        (2, 22 * 60.0),
        (3, 35 * 60.0),
        (4, 25 * 60.0),
    ]
    notes = execute.notes or []
    assert any("batch-46.result.json (total 8, success 8, failed 0)" in n for n in notes)
    stale_note = next(n for n in notes if n.startswith("PRP-46.3.2, PRP-46.4.1:"))
    assert "front matter says 2 planning" in stale_note
    assert "counted by the batch result" in stale_note

    review = found["review"]
    assert (review.source, review.timestamp, review.duration_seconds) == ("git", at(150), 600.0)
    assert review.metrics.total_items is None

    update = found["update-context"]
    assert (update.source, update.timestamp, update.duration_seconds) == ("git", at(200), None)
    assert "a single update-context commit: a timestamp, no duration" in (update.notes or [])


def test_verbose_lists_each_document_once_and_each_commit_with_its_rule(history: Project, capsys):
    assert analyze(history.root, "--operation", "all", "--verbose", "--dry-run") == 0
    err = capsys.readouterr().err.splitlines()
    ignored = [line for line in err if "ignored (not an item of the batch)" in line]
    assert [line.rsplit("/", 1)[1] for line in ignored] == [
        "PRP-46-BATCH-PLAN.md",
        "PRP-46-USAGE-GUIDE.md",
    ]
    rules = {line.split(": ", 2)[2]: line for line in err if " commit " in line}
    assert "(no evidence of any operation)" in rules["Plan batch 46"]
    assert "generate (added PRP files)" in rules["Batch 46: review tooling and context sync plans"]
    assert "execute (subject convention)" in rules["PRP-46.2.1: Phase 2 - review cmd"]
    assert "review (added review files)" in rules["PRP-46 execution: generate a summary"]
    assert (
        "update-context (changed PRP front matter only)"
        in rules["Batch 46: generate and review follow-ups after execute"]
    )
    assert not any("Archive executed PRPs" in line for line in err)
    assert not any("PRP-460" in line for line in err)


def test_a_batch_whose_id_prefixes_another_sees_only_its_own(history: Project):
    assert main(["analyze", "--batch", "460", "--root", str(history.root)]) == 0
    found = records(history.root)
    assert sorted(found) == ["execute", "generate"]
    execute = found["execute"]
    assert (execute.metrics.total_items, execute.timestamp) == (1, at(50))
    assert found["generate"].timestamp == at(48)


def test_rerun_after_more_work_replaces_its_own_records(history: Project):
    assert analyze(history.root) == 0
    first = {p.name for p in list_record_files(history.root / ".ce/completed-batches")}
    history.code("src/late.py", 130, "PRP-46.4.1: Phase 4 - release fixes")
    assert analyze(history.root) == 0
    again = {p.name for p in list_record_files(history.root / ".ce/completed-batches")}
    assert again == first
    execute = records(history.root)["execute"]
    assert execute.duration_seconds == timedelta(minutes=100).total_seconds()
