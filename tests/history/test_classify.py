"""Which commits are a batch's, and which operation each did, on real ``git log`` output."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.history.evidence import gather
from exporter.history.sources.prp import find_batch_prps
from tests.support.git_history import Project

NOISE = "generate, review, peer review, update-context, context update, drift, execute"


def operations(root: Path, batch: str = "47") -> dict[str, tuple[str | None, str]]:
    """subject -> (operation, rule) for every commit of the batch."""
    commits = gather(root, batch).commits
    assert commits is not None
    return {c.commit.subject: (c.operation, c.rule) for c in commits}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path / "project")
    p.write("src/app.py", "x = 1\n")
    p.commit("Initial commit", -60)
    return p


def test_the_subject_convention_decides_before_files_and_words(project: Project):
    project.write("PRPs/reviews/notes.md", "adds a review file\n")
    project.commit("PRP-47.1.1: Phase 1 - refactor the review command", 1, body=NOISE)
    project.code("src/gen.py", 2, "PRP-47.1.2: Phase 1 - generate the update-context docs")
    found = operations(project.root)
    assert found == {
        "PRP-47.1.1: Phase 1 - refactor the review command": ("execute", "subject convention"),
        "PRP-47.1.2: Phase 1 - generate the update-context docs": (
            "execute",
            "subject convention",
        ),
    }


def test_files_decide_before_subject_words_and_body_words_never_do(project: Project):
    project.prp("PRP-47.1.1-a", batch_id=47, stage=1, status="planning")
    project.commit("Batch 47: review the execute plan", 1, body=NOISE)
    project.write("PRPs/reviews/PRP-47.1.1-review.md", "approved\n")
    project.commit("Batch 47: generate notes", 2, body=NOISE)
    project.set_front("PRPs/feature-requests/PRP-47.1.1-a.md", status="completed")
    project.commit("Batch 47: generate and review", 3, body=NOISE)
    project.code("src/app.py", 4, "Batch 47: review fixes, update-context", body=NOISE)
    project.commit("Batch 47: peer review round", 5, body=NOISE)  # changes nothing
    project.commit("Batch 47 wrap-up", 6, body=NOISE)  # neither files nor subject words
    assert operations(project.root) == {
        "Batch 47: review the execute plan": ("generate", "added PRP files"),
        "Batch 47: generate notes": ("review", "added review files"),
        "Batch 47: generate and review": ("update-context", "changed PRP front matter only"),
        "Batch 47: review fixes, update-context": ("execute", "changed code or documents"),
        "Batch 47: peer review round": ("review", "words in the subject"),
        "Batch 47 wrap-up": (None, "no evidence of any operation"),
    }


def test_a_changed_prp_body_is_not_a_front_matter_update(project: Project):
    rel = project.prp("PRP-47.1.1-a", batch_id=47, stage=1, status="planning")
    project.commit("Add PRP-47.1.1", 1)
    project.set_front(rel, status="completed")
    (project.root / rel).write_text((project.root / rel).read_text() + "\nMore plan.\n")
    project.commit("Tweak PRP-47.1.1", 2)
    project.move(rel, "PRPs/executed/PRP-47.1.1-a.md")
    project.set_front("PRPs/executed/PRP-47.1.1-a.md", status="done")
    project.commit("Move PRP-47.1.1", 3)
    assert operations(project.root) == {
        "Add PRP-47.1.1": ("generate", "added PRP files"),
        "Tweak PRP-47.1.1": ("execute", "subject names an item, no other evidence"),
        "Move PRP-47.1.1": ("update-context", "changed PRP front matter only"),
    }


def test_a_mention_in_the_body_never_makes_a_commit_the_batchs(project: Project):
    project.prp("PRP-41.1.1-old", batch_id=41, stage=1, status="completed")
    project.code("src/app.py", 1, "Archive executed PRPs", body="PRP-41: implemented via PRP-47")
    project.code("src/app.py", 2, "Housekeeping", body="batch 47 follow-up; PRP-47.1.1 too")
    project.code("src/app.py", 3, "PRP-470.1.1: Phase 1 - neighbour")
    project.code("src/app.py", 4, "PRP-4.7: fix", body="batch 47")
    project.code("src/app.py", 5, "Batch 470 and PRP-47a")
    assert operations(project.root) == {}


def test_a_more_specific_batch_keeps_its_items(project: Project):
    project.prp("PRP-4.6.1-x", batch_id=4.6, stage=1, status="completed")
    project.prp("PRP-4.1.1-y", batch_id=4, stage=1, status="completed")
    project.prp("PRP-4.2.1-z", stage=2, status="completed")  # no batch_id: the name decides
    project.commit("Add PRPs", 1)
    project.code("src/x.py", 2, "PRP-4.6.1: Phase 1 - x")
    project.code("src/y.py", 3, "PRP-4.1.1: Phase 1 - y")
    four = find_batch_prps(project.root, "4")
    assert [p.item_id for p in four.prps] == ["PRP-4.1.1", "PRP-4.2.1"]
    assert four.foreign == {"PRP-4.6.1"}
    assert [p.item_id for p in find_batch_prps(project.root, "4.6").prps] == ["PRP-4.6.1"]
    assert set(operations(project.root, "4")) == {"Add PRPs", "PRP-4.1.1: Phase 1 - y"}
    assert set(operations(project.root, "4.6")) == {"Add PRPs", "PRP-4.6.1: Phase 1 - x"}


def test_only_item_files_are_prps_and_duplicates_count_once(project: Project):
    project.prp("PRP-47.1.1-core", batch_id=47, stage=1, status="pending")
    project.prp("PRP-47.1.1-nlp", batch_id=47, stage=1, status="completed")
    project.prp("PRP-47.2.1", batch_id=47, status="planning")  # stage from the id
    project.write("PRPs/feature-requests/PRP-47-BATCH-PLAN.md", "no front matter\n")
    project.write("PRPs/feature-requests/PRP-47.md", "the batch's own plan\n")
    project.prp("PRP-47x.1.1", batch_id=47, stage=1, status="completed")
    scan = find_batch_prps(project.root, "47")
    assert [(p.item_id, p.path.name, p.stage) for p in scan.prps] == [
        ("PRP-47.1.1", "PRP-47.1.1-nlp.md", 1),
        ("PRP-47.2.1", "PRP-47.2.1.md", 2),
    ]
    assert scan.prps[1].stage_from_id
    assert scan.warnings == []
    assert sorted(p.name for p in scan.ignored) == ["PRP-47-BATCH-PLAN.md", "PRP-47.md"]
    (note,) = scan.notes
    assert note == (
        "PRP-47.1.1: 2 files claim this id; counted once, by "
        "PRPs/feature-requests/PRP-47.1.1-nlp.md (completed); also: "
        "PRPs/feature-requests/PRP-47.1.1-core.md (pending)"
    )
