"""Everything the sources say about one batch, sorted by operation.

:func:`gather` reads each source once (orchestrator files, PRP files, git) and
:meth:`BatchEvidence.for_operation` hands one operation its share: its tasks, the batch
result if that describes it, and the commits classified as its work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from exporter.history.classify import Classified, classify
from exporter.history.sources import SourceError
from exporter.history.sources.batch_result import BatchResult
from exporter.history.sources.git import Change, Commit, batch_commits, front_matter_only
from exporter.history.sources.ids import convention_items
from exporter.history.sources.orchestrator import Task, read_batch
from exporter.history.sources.prp import Prp, PrpScan, find_batch_prps
from instrumentation.semconv import Operation

__all__ = ["BatchEvidence", "OperationEvidence", "gather"]


@dataclass
class OperationEvidence:
    """What the sources say about one operation of the batch."""

    batch_id: str
    operation: Operation
    prps: list[Prp]
    tasks: list[Task]
    result: BatchResult | None
    commits: list[Classified] | None  # None: git unavailable
    notes: list[str] = field(default_factory=list)  # about where the evidence came from


@dataclass
class BatchEvidence:
    """What every source says about the batch, read once."""

    batch_id: str
    scan: PrpScan
    tasks: list[Task]
    result: BatchResult | None
    commits: list[Classified] | None
    warnings: list[str]
    unavailable: list[str]

    def result_operation(self) -> tuple[Operation | None, str | None]:
        """Which operation the batch result describes, and a note when it was inferred."""
        result = self.result
        if result is None:
            return None, None
        if result.operation is not None:
            return result.operation, None
        if result.shape == "executor":
            return "execute", None
        ops = {t.operation for t in self.tasks if t.operation is not None}
        if len(ops) == 1:
            (op,) = ops
            return op, f"the batch result names no operation; taken as {op}, as its tasks say"
        return "execute", "the batch result names no operation; taken as execute"

    def task_operation(self, task: Task) -> Operation:
        if task.operation is not None:
            return task.operation
        if self.result is not None and self.result.operation is not None:
            return self.result.operation
        return "execute"

    def for_operation(self, operation: Operation) -> OperationEvidence:
        tasks = [t for t in self.tasks if self.task_operation(t) == operation]
        result_op, note = self.result_operation()
        result = self.result if result_op == operation else None
        commits = None
        if self.commits is not None:
            commits = [c for c in self.commits if c.operation == operation]
        evidence = OperationEvidence(
            batch_id=self.batch_id,
            operation=operation,
            prps=self.scan.prps,
            tasks=tasks,
            result=result,
            commits=commits,
        )
        if result is not None and note is not None:
            evidence.notes.append(note)
        if any(t.operation is None for t in tasks):
            evidence.notes.append(
                f"{sum(t.operation is None for t in tasks)} task(s) name no operation; "
                f"taken as {operation}"
            )
        return evidence


def _own(commit: Commit, foreign: set[str]) -> bool:
    """False for commits whose only items belong to a more specific batch (4.6 within 4)."""
    return not commit.items or not commit.items <= foreign


def _classified(root: Path, batch_id: str, commits: list[Commit]) -> list[Classified]:
    def fm_only(commit: Commit, changes: list[Change]) -> bool:
        return front_matter_only(root, commit, changes)

    return [classify(c, batch_id, convention_items(c.subject, batch_id), fm_only) for c in commits]


def gather(root: Path, batch_id: str) -> BatchEvidence:
    """Read every source of ``batch_id`` under ``root`` once."""
    warnings: list[str] = []
    unavailable: list[str] = []
    orchestrated = read_batch(root, batch_id)
    if orchestrated is not None:
        warnings += orchestrated.warnings
    scan = find_batch_prps(root, batch_id)
    warnings += scan.warnings
    commits: list[Classified] | None
    try:
        found = [c for c in batch_commits(root, batch_id) if _own(c, scan.foreign)]
        commits = _classified(root, batch_id, found)
    except SourceError as exc:
        commits = None
        unavailable.append(str(exc))
    return BatchEvidence(
        batch_id=batch_id,
        scan=scan,
        tasks=orchestrated.tasks if orchestrated else [],
        result=orchestrated.result if orchestrated else None,
        commits=commits,
        warnings=warnings,
        unavailable=unavailable,
    )
