"""Reconstruct canonical records of batches that were never instrumented.

Every source is read once (:mod:`.evidence`), each commit gets the operation its evidence shows
(:mod:`.classify`), and each operation's record combines the sources by rank (:mod:`.records`):
task files > batch result > PRP front matter for outcomes, the orchestrator's times before
git's. Each record names its ``source`` (the strongest one behind its item counts) and says in
``notes`` which source gave what, where two disagree, and what could not be measured.
``docs/sources.md`` states every rule.

Records get a deterministic ``run_id`` from the batch and operation, so analysing a batch again
replaces the earlier analysis instead of adding a run; a record written by instrumentation (or
by another tool, without ``run_id``) is never replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.archive.files import find_runs, write_record
from exporter.archive.model import BatchRecord
from exporter.archive.pricing import PricingTable
from exporter.history.classify import Classified
from exporter.history.evidence import gather
from exporter.history.records import build_record, run_id_for
from instrumentation.semconv import Operation

__all__ = ["Analysis", "Outcome", "analyze_batch", "run_id_for", "save_analysis"]


@dataclass
class Analysis:
    """Records built for a batch, what could not be built, and diagnostics (one line each)."""

    records: list[BatchRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # operations without any evidence
    warnings: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # sources that could not be used
    ignored: list[Path] = field(default_factory=list)  # batch documents that are not items
    commits: list[Classified] = field(default_factory=list)  # the batch's, classified


@dataclass(frozen=True)
class Outcome:
    record: BatchRecord
    path: Path | None  # None: not written
    reason: str | None = None  # why it was not written


def analyze_batch(
    root: Path, batch_id: str, operations: Sequence[Operation], pricing: PricingTable
) -> Analysis:
    """Build one record per operation that some source shows happened."""
    evidence = gather(root, batch_id)
    analysis = Analysis(
        warnings=list(evidence.warnings),
        unavailable=list(evidence.unavailable),
        ignored=list(evidence.scan.ignored),
        commits=list(evidence.commits or []),
    )
    for operation in operations:
        record = build_record(evidence.for_operation(operation), pricing, evidence.scan.notes)
        if record is None:
            analysis.missing.append(operation)
        else:
            analysis.records.append(record)
    return analysis


def save_analysis(archive: Path, records: Iterable[BatchRecord]) -> list[Outcome]:
    """Write each record unless the archive holds one from instrumentation or another tool."""
    outcomes = []
    for record in records:
        others = [
            r
            for r in find_runs(archive, record.batch_id, record.operation)
            if r.record.run_id != record.run_id
        ]
        instrumented = [r for r in others if r.record.source == "instrumentation"]
        foreign = [r for r in others if r.record.run_id is None]
        if instrumented:
            reason = f"{instrumented[0].path.name} was recorded by instrumentation; kept"
            outcomes.append(Outcome(record, None, reason))
        elif foreign:
            reason = f"{foreign[0].path.name} was written by another tool (no run_id); kept"
            outcomes.append(Outcome(record, None, reason))
        else:
            outcomes.append(Outcome(record, write_record(archive, record)))
    return outcomes
