"""Reconstruct canonical records of batches that were never instrumented.

For each operation the best source wins: the orchestrator's files (item outcomes, tokens,
elapsed times), else PRP front matter (items, stages, statuses; ``generate`` and ``execute``
only) timed by ``git log``, else ``git log`` alone (timing only: no item counts are invented).
Each record names its ``source`` and lists in ``notes`` what it could not measure.

Records get a deterministic ``run_id`` from the batch and operation, so analysing a batch again
replaces the earlier analysis instead of adding a run; a record written by instrumentation (or
by another tool, without ``run_id``) is never replaced.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from exporter.archive.files import find_runs, write_record
from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    ModelUsage,
    OptimizationMetrics,
    RecordStatus,
    StageDuration,
    TokenUsage,
    measured_efficiency,
    record_status,
)
from exporter.archive.pricing import PricingTable, combine_sources
from exporter.history.sources import SourceError
from exporter.history.sources.git import Commit, batch_commits
from exporter.history.sources.orchestrator import OrchestratorBatch, Task, parse_time, read_batch
from exporter.history.sources.prp import Prp, find_batch_prps
from instrumentation.semconv import Operation, run_outcome

__all__ = ["Analysis", "Outcome", "analyze_batch", "run_id_for", "save_analysis"]

SUCCESS: Final = frozenset(
    {"completed", "complete", "success", "succeeded", "done", "ok", "passed", "executed", "merged"}
)
FAILURE: Final = frozenset(
    {
        "failed",
        "failure",
        "error",
        "errored",
        "cancelled",
        "canceled",
        "timeout",
        "timed_out",
        "crashed",
        "blocked",
        "abandoned",
    }
)
PARTIAL: Final = frozenset({"partial", "partially_completed", "in_progress", "in-progress"})
_STAGE_NOTE: Final = (
    "stage durations from commit times: each stage runs from the previous stage's last "
    "commit to its own last commit"
)


def run_id_for(batch_id: str, operation: str) -> str:
    """The run id of ``analyze``'s record of one batch and operation (stable across re-runs)."""
    digest = hashlib.sha256(f"{batch_id}\0{operation}".encode()).hexdigest()[:20]
    return f"analyze-{digest}"


@dataclass
class Analysis:
    """Records built for a batch, what could not be built, and diagnostics (one line each)."""

    records: list[BatchRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # operations without any data
    warnings: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # sources that could not be used


@dataclass(frozen=True)
class Outcome:
    record: BatchRecord
    path: Path | None  # None: not written
    reason: str | None = None  # why it was not written


# -- helpers -------------------------------------------------------------------------------


def _counts_status(success: int, partial: int, total: int) -> RecordStatus:
    return record_status(run_outcome(total, success, partial, body_failed=False))


def _span(times: Iterable[datetime]) -> float | None:
    ordered = sorted(times)
    if len(ordered) < 2:
        return None
    return (ordered[-1] - ordered[0]).total_seconds()


def _stage_durations(
    stages: dict[int | None, list[str]], commits: Sequence[Commit]
) -> list[StageDuration]:
    """Each stage from the previous stage's last commit (or its own first) to its last one."""
    result = []
    previous_end: datetime | None = None
    for stage in sorted(stages, key=lambda s: (s is None, s or 0)):
        items = stages[stage]
        times = sorted(c.time for c in commits if c.items & set(items))
        duration = None
        if times:
            first, last = times[0], times[-1]
            start = previous_end if previous_end is not None and previous_end <= first else first
            duration = (last - start).total_seconds() if last > start else None
            previous_end = last
        result.append(StageDuration(stage=stage, duration_seconds=duration, items=sorted(items)))
    return result


# -- orchestrator --------------------------------------------------------------------------


def _task_outcome(task: Task) -> str:
    status = task.status or ""
    if not task.finished:
        return "unfinished"
    if status in SUCCESS:
        return "success"
    if status in PARTIAL:
        return "partial"
    return "failure"


def _task_start(task: Task) -> datetime | None:
    if task.started_at is not None:
        return task.started_at
    if task.last_update is not None and task.elapsed_seconds is not None:
        return task.last_update - timedelta(seconds=task.elapsed_seconds)
    return None


def _orchestrator_tokens(tasks: list[Task], pricing: PricingTable) -> TokenUsage | None:
    """Token totals; input/output, models and cost from the tasks that report the split."""
    with_tokens = [t for t in tasks if t.tokens_used is not None or t.input_tokens is not None]
    if not with_tokens:
        return None
    split = [t for t in with_tokens if t.input_tokens is not None and t.output_tokens is not None]
    total = sum(
        t.tokens_used
        if t.tokens_used is not None
        else (t.input_tokens or 0) + (t.output_tokens or 0)
        for t in with_tokens
    )
    if not split:
        return TokenUsage(total_tokens=total, cost_source="unpriced")
    with_tokens = split
    by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in with_tokens:
        usage = by_model[t.model or "unknown"]
        usage[0] += t.input_tokens or 0
        usage[1] += t.output_tokens or 0
    models = []
    for model, (tin, tout) in sorted(by_model.items()):
        cost = pricing.cost(model, tin, tout)
        models.append(
            ModelUsage(
                model=model,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=cost.usd,
                cost_source=cost.source,
            )
        )
    priced = [m.cost_usd for m in models if m.cost_usd is not None]
    unpriced = [m.model for m in models if m.cost_usd is None]
    return TokenUsage(
        input_tokens=sum(m.input_tokens for m in models),
        output_tokens=sum(m.output_tokens for m in models),
        total_tokens=total,
        estimated_cost=sum(priced) if priced else None,
        cost_source=combine_sources([m.cost_source for m in models]),
        unpriced_models=unpriced or None,
        by_model=models,
    )


def _from_orchestrator(
    batch_id: str,
    operation: Operation,
    tasks: list[Task],
    summary: dict[str, object],
    pricing: PricingTable,
) -> BatchRecord | None:
    notes: list[str] = []
    outcomes = {t.task: _task_outcome(t) for t in tasks}
    errors: list[ErrorEntry] = []
    for t in tasks:
        item = t.item_id or f"task-{t.task}"
        if outcomes[t.task] == "unfinished":
            errors.append(
                ErrorEntry(
                    item_id=item,
                    error_type="unfinished",
                    error_message=f"no result file (last status {t.status!r})",
                )
            )
        elif outcomes[t.task] in ("failure", "partial"):
            found = t.errors or [("task_failed", f"status {t.status!r}")]
            errors += [ErrorEntry(item_id=item, error_type=k, error_message=m) for k, m in found]
    success = sum(o == "success" for o in outcomes.values())
    failure = sum(o == "failure" for o in outcomes.values())
    partial = sum(o == "partial" for o in outcomes.values())
    if any(o == "unfinished" for o in outcomes.values()):
        notes.append("tasks without a result file are counted as neither success nor failure")
    stages: dict[int | None, list[Task]] = defaultdict(list)
    for t in tasks:
        stages[t.stage].append(t)
    stage_durations = []
    for stage in sorted(stages, key=lambda s: (s is None, s or 0)):
        elapsed = [t.elapsed_seconds for t in stages[stage] if t.elapsed_seconds is not None]
        stage_durations.append(
            StageDuration(
                stage=stage,
                duration_seconds=max(elapsed) if elapsed else None,
                items=sorted(t.item_id or f"task-{t.task}" for t in stages[stage]),
            )
        )
    duration = summary.get("elapsed_seconds")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        known = [s.duration_seconds for s in stage_durations if s.duration_seconds is not None]
        duration = sum(known) if known else None
        if duration is not None:
            notes.append("duration is the sum of each stage's longest task (no batch result)")
    starts = [s for t in tasks if (s := _task_start(t)) is not None]
    timestamp = parse_time(summary.get("started_at")) or (min(starts) if starts else None)
    if timestamp is None:
        return None
    item_time = sum(t.elapsed_seconds or 0.0 for t in tasks)
    efficiency = measured_efficiency(item_time, duration)
    return BatchRecord(
        batch_id=batch_id,
        operation=operation,
        timestamp=timestamp,
        duration_seconds=float(duration) if duration is not None else None,
        metrics=Metrics(
            total_items=len(tasks),
            stages=len(stages),
            success_count=success,
            failure_count=failure,
            partial_count=partial,
            token_usage=_orchestrator_tokens(tasks, pricing),
            stage_durations=stage_durations,
            errors=errors,
        ),
        optimization_metrics=OptimizationMetrics(parallel_efficiency=efficiency)
        if efficiency is not None
        else None,
        run_id=run_id_for(batch_id, operation),
        status=_counts_status(success, partial, len(tasks)),
        source="orchestrator",
        notes=notes or None,
    )


def _orchestrator_tasks(
    batch: OrchestratorBatch, operation: str, only_operation: bool
) -> list[Task]:
    default = batch.summary.get("operation")
    chosen = []
    for t in batch.tasks:
        op = t.operation or (str(default) if default else None)
        if op == operation or (op is None and only_operation):
            chosen.append(t)
    return chosen


# -- PRP front matter + git ----------------------------------------------------------------


@dataclass
class _ItemCounts:
    success: int = 0
    failure: int = 0
    partial: int = 0
    errors: list[ErrorEntry] = field(default_factory=list)
    planning_with_work: list[str] = field(default_factory=list)


def _prp_outcomes(operation: Operation, prps: list[Prp], worked: set[str]) -> _ItemCounts:
    """Item outcomes from front matter; "planning" with commits is partial, not a failure."""
    counts = _ItemCounts()
    for p in prps:
        status = p.status or ("executed" if p.executed_dir else "")
        if operation == "generate" or status in SUCCESS:
            counts.success += 1
        elif status in FAILURE:
            counts.failure += 1
            counts.errors.append(
                ErrorEntry(
                    item_id=p.item_id,
                    error_type=f"prp_{status}",
                    error_message=f"front matter status: {status}",
                )
            )
        elif status in PARTIAL:
            counts.partial += 1
        elif p.item_id in worked:
            counts.partial += 1
            counts.planning_with_work.append(p.item_id)
            counts.errors.append(
                ErrorEntry(
                    item_id=p.item_id,
                    error_type="status_not_updated",
                    error_message=f"front matter says {status or 'no status'!r} "
                    "but commits show work",
                )
            )
        else:
            counts.errors.append(
                ErrorEntry(
                    item_id=p.item_id,
                    error_type="not_started",
                    error_message=f"front matter status: {status or 'none'}",
                )
            )
    return counts


def _from_prps(
    batch_id: str, operation: Operation, prps: list[Prp], commits: list[Commit] | None
) -> BatchRecord:
    notes: list[str] = []
    op_commits = [c for c in commits or [] if c.operation == operation]
    worked = {item for c in op_commits for item in c.items}
    counts = _prp_outcomes(operation, prps, worked)
    success, failure, partial = counts.success, counts.failure, counts.partial
    errors, planning_with_work = counts.errors, counts.planning_with_work
    if planning_with_work:
        notes.append(
            f"{len(planning_with_work)} item(s) still say planning in their front "
            f"matter while commits show work; counted as partial: "
            f"{', '.join(planning_with_work)}"
        )
    not_started = len(prps) - success - failure - partial
    if not_started:
        notes.append(f"{not_started} item(s) show no sign of {operation}; counted in total only")
    stages: dict[int | None, list[str]] = defaultdict(list)
    for p in prps:
        stages[p.stage].append(p.item_id)
    if commits is None:
        notes.append("no timing: git history unavailable")
        stage_durations = [StageDuration(stage=s, items=sorted(i)) for s, i in stages.items()]
    elif not op_commits:
        notes.append(f"no timing: no {operation} commits mention this batch")
        stage_durations = [StageDuration(stage=s, items=sorted(i)) for s, i in stages.items()]
    else:
        notes.append(_STAGE_NOTE)
        stage_durations = _stage_durations(stages, op_commits)
    duration = _span(c.time for c in op_commits)
    if op_commits and duration is None:
        notes.append("duration unknown: a single commit")
    timestamp = op_commits[0].time if op_commits else min(_mtime(p.path) for p in prps)
    if not op_commits:
        notes.append("timestamp is the PRP files' modification time")
    return BatchRecord(
        batch_id=batch_id,
        operation=operation,
        timestamp=timestamp,
        duration_seconds=duration,
        metrics=Metrics(
            total_items=len(prps),
            stages=len(stages),
            success_count=success,
            failure_count=failure,
            partial_count=partial,
            stage_durations=sorted(stage_durations, key=lambda s: (s.stage is None, s.stage or 0)),
            errors=errors,
        ),
        run_id=run_id_for(batch_id, operation),
        status=_counts_status(success, partial, len(prps)),
        source="prp",
        notes=notes,
    )


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone()


def _from_git(batch_id: str, operation: Operation, commits: list[Commit]) -> BatchRecord | None:
    op_commits = [c for c in commits if c.operation == operation]
    if not op_commits:
        return None
    items = sorted({i for c in op_commits for i in c.items})
    duration = _span(c.time for c in op_commits)
    notes = [
        f"timing only, from {len(op_commits)} {operation} commit(s); item outcomes were not "
        "recorded anywhere, so no item counts are given",
    ]
    if duration is None:
        notes.append("duration unknown: a single commit")
    return BatchRecord(
        batch_id=batch_id,
        operation=operation,
        timestamp=op_commits[0].time,
        duration_seconds=duration,
        metrics=Metrics(
            stage_durations=[StageDuration(stage=None, duration_seconds=duration, items=items)]
            if items
            else None,
        ),
        run_id=run_id_for(batch_id, operation),
        source="git",
        notes=notes,
    )


# -- public --------------------------------------------------------------------------------


def analyze_batch(
    root: Path, batch_id: str, operations: Sequence[Operation], pricing: PricingTable
) -> Analysis:
    """Build one record per operation from the best source that has data for it."""
    analysis = Analysis()
    orchestrated = read_batch(root, batch_id)
    if orchestrated is not None:
        analysis.warnings += orchestrated.warnings
    prps, prp_warnings = find_batch_prps(root, batch_id)
    analysis.warnings += prp_warnings
    commits: list[Commit] | None
    try:
        commits = batch_commits(root, batch_id)
    except SourceError as exc:
        commits = None
        analysis.unavailable.append(str(exc))
    for operation in operations:
        record: BatchRecord | None = None
        if orchestrated is not None:
            tasks = _orchestrator_tasks(orchestrated, operation, len(operations) == 1)
            if tasks:
                record = _from_orchestrator(
                    batch_id, operation, tasks, orchestrated.summary, pricing
                )
        if record is None and prps and operation in ("generate", "execute"):
            record = _from_prps(batch_id, operation, prps, commits)
        if record is None and commits:
            record = _from_git(batch_id, operation, commits)
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
