"""One canonical record per operation, combined from the evidence of every source.

A record exists only where some source shows the operation happened: ``generate`` where PRP
files, generate tasks or generate commits exist; ``execute`` where execute tasks, a batch
result, execute commits or front matter past planning exist; ``review`` and
``update-context`` only where their tasks or commits do. Outcomes come from
:mod:`.outcomes`, timing from :mod:`.timing`, tokens from :mod:`.tokens`; each says in the
record's ``notes`` which source gave what.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from exporter.archive.model import (
    BatchRecord,
    Metrics,
    OptimizationMetrics,
    RecordSource,
    measured_efficiency,
    record_status,
)
from exporter.archive.pricing import PricingTable
from exporter.history.evidence import OperationEvidence
from exporter.history.outcomes import resolve_outcomes
from exporter.history.sources.status import status_outcome
from exporter.history.timing import resolve_timing, stage_items
from exporter.history.tokens import token_usage
from instrumentation.semconv import run_outcome

__all__ = ["build_record", "run_id_for"]


def run_id_for(batch_id: str, operation: str) -> str:
    """The run id of ``analyze``'s record of one batch and operation (stable across re-runs)."""
    digest = hashlib.sha256(f"{batch_id}\0{operation}".encode()).hexdigest()[:20]
    return f"analyze-{digest}"


def _happened(ev: OperationEvidence) -> bool:
    if ev.tasks or ev.result is not None or ev.commits:
        return True
    if ev.operation == "generate":
        return bool(ev.prps)
    if ev.operation == "execute":
        return any(status_outcome(p.status) or p.executed_dir for p in ev.prps)
    return False


def _mtime(ev: OperationEvidence) -> datetime | None:
    if not ev.prps or ev.operation not in ("generate", "execute"):
        return None
    return datetime.fromtimestamp(min(p.path.stat().st_mtime for p in ev.prps)).astimezone()


def build_record(
    ev: OperationEvidence, pricing: PricingTable, item_notes: list[str]
) -> BatchRecord | None:
    """The record of ``ev.operation``, or None when no source shows it happened.

    ``item_notes`` (files that claim one id, ...) go into the records that count items.
    """
    if not _happened(ev):
        return None
    counts = resolve_outcomes(ev)
    stages = stage_items(ev)
    timing = resolve_timing(ev, stages, _mtime(ev))
    if timing.timestamp is None:
        return None
    notes = list(ev.notes)
    source: RecordSource
    if counts is not None:
        notes += counts.notes
        if ev.operation in ("generate", "execute"):
            notes += item_notes
        source = counts.source
    else:
        n = len(ev.commits or [])
        notes.append(
            f"timing only, from {n} {ev.operation} commit(s); item outcomes were not recorded "
            "anywhere, so no item counts are given"
        )
        source = "git" if ev.commits else "orchestrator"
    notes += timing.notes
    tokens = token_usage(ev.tasks, ev.result, pricing, notes)
    efficiency = measured_efficiency(timing.item_seconds, timing.duration)
    status = None
    if counts is not None:
        outcome = run_outcome(counts.total, counts.success, counts.partial, body_failed=False)
        status = record_status(outcome)
    return BatchRecord(
        batch_id=ev.batch_id,
        operation=ev.operation,
        timestamp=timing.timestamp,
        duration_seconds=timing.duration,
        metrics=Metrics(
            total_items=counts.total if counts else None,
            stages=len(stages) if counts else None,
            success_count=counts.success if counts else None,
            failure_count=counts.failure if counts else None,
            partial_count=counts.partial if counts else None,
            token_usage=tokens,
            stage_durations=timing.stages or None,
            errors=counts.errors if counts else None,
        ),
        optimization_metrics=OptimizationMetrics(parallel_efficiency=efficiency)
        if efficiency is not None
        else None,
        run_id=run_id_for(ev.batch_id, ev.operation),
        status=status,
        source=source,
        notes=notes or None,
    )
