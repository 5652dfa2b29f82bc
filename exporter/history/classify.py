"""Which operation a commit of a batch did, from evidence, strongest first.

1. The orchestrator's subject convention: a subject that starts ``PRP-47.1.2: ...`` is
   execute work on that item.
2. What the commit changed (``git log --name-status``):
   a. it added a PRP file of the batch (``PRP-47.x.y...md``)        -> generate
   b. it added a file under a ``reviews`` (or ``review``) folder       -> review
   c. it changed PRP front matter and nothing else (context files
      ``CLAUDE.md`` and ``.serena/`` may change with it)               -> update-context
   d. it changed code or documents (anything but PRP files, review
      files and the orchestrator's ``.ce/`` bookkeeping)               -> execute
3. Words in the subject alone (``review``, ``update-context``, ``generate``...). The body is
   never read.
4. Nothing decides: execute when the subject names an item of the batch (``Implement
   PRP-47.1.2``); otherwise the commit counts for no operation (a batch plan added, say).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from exporter.history.sources.git import Change, Commit
from exporter.history.sources.ids import item_of_name, mentioned_items, prp_id_of
from instrumentation.semconv import Operation

__all__ = ["Classified", "classify", "needs_front_matter_check"]

# Words that say which operation a commit did; checked in the subject only, in this order.
_OPERATION_WORDS: Final[tuple[tuple[Operation, re.Pattern[str]], ...]] = (
    (
        "update-context",
        re.compile(r"\b(update[- ]context|context[- ]update|sync(ed)? context|drift)\b", re.I),
    ),
    ("review", re.compile(r"\b(peer[- ]review|review(ed|s)?)\b", re.I)),
    (
        "generate",
        re.compile(r"\b(generate[ds]?|generation|create[ds]? prps?|add(ed)? prps?)\b", re.I),
    ),
)
_REVIEW_DIRS: Final = frozenset({"reviews", "review", "peer-reviews"})


@dataclass(frozen=True, slots=True)
class Classified:
    """A commit with the operation it did and the rule that decided it."""

    commit: Commit
    operation: Operation | None  # None: no evidence of any operation
    rule: str  # "subject convention", "added PRP files", ... (for notes and --verbose)


def _in_reviews(path: str) -> bool:
    return any(part.lower() in _REVIEW_DIRS for part in PurePosixPath(path).parts[:-1])


def _is_prp_file(change: Change) -> bool:
    """A PRP: ``PRP-{id}...md`` outside a reviews folder (a review may be named after one)."""
    name = change.name
    return (
        name.startswith("PRP-")
        and name.lower().endswith(".md")
        and prp_id_of(name) is not None
        and not _in_reviews(change.path)
    )


def _is_context_file(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return parts[-1] == "CLAUDE.md" or ".serena" in parts[:-1]


def _is_bookkeeping(path: str) -> bool:
    # Paths are relative to the repository's top, which may be above the project root.
    return ".ce" in PurePosixPath(path).parts[:-1]


def _is_work(change: Change) -> bool:
    """Code or documents: what execute changes."""
    return not (
        _is_prp_file(change)
        or _in_reviews(change.path)
        or _is_bookkeeping(change.path)
        or _is_context_file(change.path)
    )


def needs_front_matter_check(commit: Commit) -> list[Change] | None:
    """The PRP files to compare when only PRP files (and context files) were modified."""
    prp_changes = []
    for change in commit.changes:
        if _is_context_file(change.path) and change.status in "MAR":
            continue
        if not _is_prp_file(change) or change.status not in "MR":
            return None
        prp_changes.append(change)
    return prp_changes or None


def _added_items(commit: Commit, batch_id: str) -> set[str]:
    """PRP files of the batch the commit added (a file moved with delete + add is no add)."""
    added = {
        item
        for c in commit.changes
        if c.status in "AC" and _is_prp_file(c) and (item := item_of_name(c.name, batch_id))
    }
    deleted = {
        item
        for c in commit.changes
        if c.status == "D" and (item := item_of_name(c.name, batch_id)) is not None
    }
    return added - deleted


def _by_evidence(
    commit: Commit,
    batch_id: str,
    convention: frozenset[str],
    front_matter_only: Callable[[Commit, list[Change]], bool],
) -> tuple[Operation, str] | None:
    """Steps 1 and 2: the subject convention, then what the commit changed."""
    if convention:
        return "execute", "subject convention"
    if _added_items(commit, batch_id):
        return "generate", "added PRP files"
    if any(c.status in "AC" and _in_reviews(c.path) for c in commit.changes):
        return "review", "added review files"
    prp_changes = needs_front_matter_check(commit)
    if prp_changes is not None and front_matter_only(commit, prp_changes):
        return "update-context", "changed PRP front matter only"
    if any(_is_work(c) for c in commit.changes):
        return "execute", "changed code or documents"
    return None


def classify(
    commit: Commit,
    batch_id: str,
    convention: frozenset[str],
    front_matter_only: Callable[[Commit, list[Change]], bool],
) -> Classified:
    """The operation ``commit`` did for ``batch_id`` (see the module docstring for the rule).

    ``convention`` holds the items its subject names by the execute convention;
    ``front_matter_only`` compares the old and new text of the PRP files it modified.
    """
    decided = _by_evidence(commit, batch_id, convention, front_matter_only)
    if decided is not None:
        return Classified(commit, *decided)
    for operation, words in _OPERATION_WORDS:
        if words.search(commit.subject):
            return Classified(commit, operation, "words in the subject")
    if mentioned_items(commit.subject, batch_id):
        return Classified(commit, "execute", "subject names an item, no other evidence")
    return Classified(commit, None, "no evidence of any operation")
