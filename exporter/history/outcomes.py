"""Item outcomes of one operation, from the strongest source that says something about each item.

Ranking, per item: the orchestrator's task result files > the batch result (per item where it
names items, else its counts for the items it covers) > PRP front matter (``execute``; for
``generate`` a PRP file that exists was generated) > commits (work on an item whose front
matter still says planning: partial, since a commit shows work, not success). Every place where
a weaker source disagrees with the one that counted becomes a note naming both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from exporter.archive.model import ErrorEntry, RecordSource
from exporter.history.evidence import OperationEvidence
from exporter.history.sources.batch_result import BatchResult
from exporter.history.sources.orchestrator import Task
from exporter.history.sources.prp import Prp
from exporter.history.sources.status import ItemOutcome, status_outcome

__all__ = ["Counts", "resolve_outcomes"]

_SHOWN: Final = 10  # item ids named in one note at most


@dataclass
class Counts:
    """Item counts of a record and the notes that explain them."""

    total: int = 0
    success: int = 0
    failure: int = 0
    partial: int = 0
    errors: list[ErrorEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: RecordSource = "prp"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _task_outcome(task: Task) -> ItemOutcome | None:
    if not task.finished:
        return None
    return status_outcome(task.status) or "failure"


def _front_matter(prp: Prp) -> ItemOutcome | None:
    return status_outcome(prp.status) or ("success" if prp.executed_dir else None)


@dataclass
class _Tally:
    """Per-item decisions: outcome, which source decided, and the error entries."""

    decided: dict[str, tuple[ItemOutcome, str]] = field(default_factory=dict)
    errors: list[ErrorEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def decide(self, item: str, outcome: ItemOutcome, source: str) -> None:
        self.decided[item] = (outcome, source)


def _from_tasks(tally: _Tally, tasks: list[Task]) -> list[Task]:
    """Decide items with a result file; return tasks that have none (unfinished)."""
    unfinished = []
    for task in tasks:
        outcome = _task_outcome(task)
        if outcome is None:
            unfinished.append(task)
            continue
        tally.decide(task.name, outcome, "task result")
        if outcome != "success":
            found = task.errors or [("task_failed", f"status {task.status!r}")]
            tally.errors += [
                ErrorEntry(item_id=task.name, error_type=k, error_message=m) for k, m in found
            ]
    return unfinished


def _result_items(
    result: BatchResult, known: set[str], tasks: list[Task]
) -> dict[str, ItemOutcome]:
    """The batch result's per-entry outcomes mapped to items; {} when they name no known item."""
    by_task = {t.task.removeprefix("task-"): t.name for t in tasks}
    mapped = {}
    for key, outcome in result.outcomes.items():
        item = key if key in known else by_task.get(key.removeprefix("task-"))
        if item is None:
            return {}
        mapped[item] = outcome
    return mapped


def _front_matter_note(items: list[Prp], counted_by: str) -> str | None:
    words = Counter(p.status or "no status" for p in items)
    if not words:
        return None
    said = ", ".join(f"{n} {w}" for w, n in sorted(words.items()))
    return f"front matter says {said} for these items; {counted_by}"


def resolve_outcomes(ev: OperationEvidence) -> Counts | None:
    """Counts for the record of ``ev.operation``; None when no source says anything of items."""
    # Generator tasks name phases, not the PRPs they wrote: where they exist they are the items.
    items_from_prps = ev.operation == "execute" or (ev.operation == "generate" and not ev.tasks)
    prps = {p.item_id: p for p in ev.prps} if items_from_prps else {}
    tally = _Tally()
    unfinished = _from_tasks(tally, ev.tasks)
    known = set(prps) | {t.name for t in ev.tasks}
    result = ev.result if ev.result is not None and ev.result.has_counts else None
    aggregate: BatchResult | None = None
    if result is not None:
        per_item = _result_items(result, known, ev.tasks)
        for item, outcome in per_item.items():
            if item not in tally.decided:
                tally.decide(item, outcome, "batch result")
                if outcome != "success":
                    tally.errors.append(
                        ErrorEntry(
                            item_id=item,
                            error_type=f"batch_result_{outcome}",
                            error_message=f"{result.path.name} lists it as {outcome}",
                        )
                    )
        if not per_item and not tally.decided:
            aggregate = result
        elif not per_item and tally.decided:
            tally.notes.append(
                f"the batch result ({result.describe()}) was not used for counts: the task "
                "result files name each item"
            )
    if not prps and not tally.decided and aggregate is None:
        return None
    counts = Counts(source="orchestrator" if tally.decided or aggregate else "prp")
    covered: set[str] = set()
    if aggregate is not None:
        covered = _apply_aggregate(counts, aggregate, prps, tally)
    _from_front_matter(ev, counts, prps, tally, covered)
    for task in unfinished:
        if task.name not in tally.decided and task.name not in covered:
            counts.errors.append(
                ErrorEntry(
                    item_id=task.name,
                    error_type="unfinished",
                    error_message=f"no result file (last status {task.status!r})",
                )
            )
    outcomes = Counter(o for o, _ in tally.decided.values())
    counts.success += outcomes["success"]
    counts.failure += outcomes["failure"]
    counts.partial += outcomes["partial"]
    seen = set(tally.decided) | covered | set(prps) | {t.name for t in unfinished}
    counts.total += len(seen - covered)
    counts.total = max(counts.total, counts.success + counts.failure + counts.partial)
    counts.errors = tally.errors + counts.errors
    counts.notes = tally.notes + counts.notes
    if any(t.name not in tally.decided for t in unfinished):
        counts.notes.append(
            "tasks without a result file are counted as neither success nor failure"
        )
    _sources_note(counts, tally, aggregate)
    return counts


def _apply_aggregate(
    counts: Counts, result: BatchResult, prps: dict[str, Prp], tally: _Tally
) -> set[str]:
    """Counts of a batch result that names no items; returns the items it covers."""
    covered = {i for i, p in prps.items() if result.stage is None or p.stage == result.stage}
    counts.success += result.success or 0
    counts.failure += result.failure or 0
    counts.partial += result.partial or 0
    counts.total += result.total if result.total is not None else len(covered)
    where = f"stage {result.stage}" if result.stage is not None else "the batch"
    if result.failure:
        counts.errors.append(
            ErrorEntry(
                error_type="batch_result_failed",
                error_message=f"the batch result counts {result.failure} failed item(s) of "
                f"{where} without naming them",
            )
        )
    if result.total is not None and covered and result.total != len(covered):
        tally.notes.append(
            f"the batch result counts {result.total} item(s) of {where}; "
            f"{len(covered)} PRP file(s) name items there"
        )
    fm = [prps[i] for i in sorted(covered)]
    if result.success is not None and result.success >= len(covered):
        lagging = [p for p in fm if _front_matter(p) != "success"]
    elif result.failure is not None and result.failure >= len(covered):
        lagging = [p for p in fm if _front_matter(p) != "failure"]
    else:
        fm_says = Counter(_front_matter(p) for p in fm)
        differs = (fm_says["success"], fm_says["failure"]) != (result.success, result.failure)
        lagging = fm if differs else []
    if lagging:
        note = _front_matter_note(lagging, "counted by the batch result")
        tally.notes.append(f"{_names([p.item_id for p in lagging])}: {note}")
    return covered


def _from_front_matter(
    ev: OperationEvidence,
    counts: Counts,
    prps: dict[str, Prp],
    tally: _Tally,
    covered: set[str],
) -> None:
    """Front matter decides the items no stronger source decided; it is noted where it lags."""
    worked = {item for c in ev.commits or [] for item in c.commit.items}
    lagging: list[Prp] = []
    stale: list[str] = []
    for item, prp in sorted(prps.items()):
        says = _front_matter(prp) if ev.operation == "execute" else "success"
        if item in covered:
            continue
        if item in tally.decided:
            outcome, _ = tally.decided[item]
            if ev.operation == "execute" and says != outcome:
                lagging.append(prp)
            continue
        if says is not None:
            tally.decide(item, says, "front matter" if ev.operation == "execute" else "PRP files")
            if says == "failure":
                tally.errors.append(
                    ErrorEntry(
                        item_id=item,
                        error_type=f"prp_{prp.status or 'failed'}",
                        error_message=f"front matter status: {prp.status}",
                    )
                )
        elif item in worked:
            tally.decide(item, "partial", "commits")
            stale.append(item)
            tally.errors.append(
                ErrorEntry(
                    item_id=item,
                    error_type="status_not_updated",
                    error_message=f"front matter says {prp.status or 'no status'!r} "
                    "but commits show work",
                )
            )
        else:
            counts.errors.append(
                ErrorEntry(
                    item_id=item,
                    error_type="not_started",
                    error_message=f"front matter status: {prp.status or 'none'}",
                )
            )
    if lagging:
        note = _front_matter_note(lagging, "counted by the orchestrator's files")
        tally.notes.append(f"{_names([p.item_id for p in lagging])}: {note}")
    if stale:
        tally.notes.append(
            f"{_names(stale)}: front matter still says planning while {ev.operation} commits "
            "show work; counted as partial (commits show work, not success)"
        )
    not_started = [e.item_id or "" for e in counts.errors if e.error_type == "not_started"]
    if not_started:
        tally.notes.append(
            f"{len(not_started)} item(s) show no sign of {ev.operation}; counted in total only"
        )


def _sources_note(counts: Counts, tally: _Tally, aggregate: BatchResult | None) -> None:
    by_source = Counter(source for _, source in tally.decided.values())
    parts = [f"{n} by {source}" for source, n in sorted(by_source.items())]
    if aggregate is not None:
        where = f"stage {aggregate.stage}" if aggregate.stage is not None else "all items"
        parts.insert(
            0, f"{where} by the batch result {aggregate.path.name} ({aggregate.describe()})"
        )
    if parts:
        counts.notes.insert(0, "item outcomes: " + "; ".join(parts))
