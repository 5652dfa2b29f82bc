"""When an operation started, how long it and each stage took, from the best source for each.

Start: the batch result's ``started_at``, else its end (``timestamp``) minus its elapsed time,
else the earliest task start, else the first commit of the operation, else (no git) the PRP
files' modification time, else the batch result's end time. Duration: the batch result's
elapsed time (or end minus start), else the sum of each stage's longest task, else first to
last commit of the operation; one commit gives a timestamp and no duration. Stages: the
longest task of each stage, else commits (a stage runs from the previous stage's last commit,
or its own first, to its own last commit).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from exporter.archive.model import StageDuration
from exporter.history.classify import Classified
from exporter.history.evidence import OperationEvidence
from exporter.history.sources.orchestrator import Task

__all__ = ["Stages", "Timing", "resolve_timing", "stage_items"]

Stages = dict[int | None, list[str]]


@dataclass
class Timing:
    timestamp: datetime | None = None
    duration: float | None = None
    stages: list[StageDuration] = field(default_factory=list)
    item_seconds: float = 0.0  # the tasks' elapsed time, for parallel efficiency
    notes: list[str] = field(default_factory=list)


def _order(stage: int | None) -> tuple[bool, int]:
    return (stage is None, stage or 0)


def stage_items(ev: OperationEvidence) -> Stages:
    """Items by stage: every PRP for generate and execute, else the items that saw work."""
    prp_stage = {p.item_id: p.stage for p in ev.prps}
    stages: Stages = defaultdict(list)
    if ev.operation in ("generate", "execute"):
        for p in ev.prps:
            stages[p.stage].append(p.item_id)
    seen = {i for items in stages.values() for i in items}
    touched = [(t.name, t.stage) for t in ev.tasks]
    touched += [(i, None) for c in ev.commits or [] for i in sorted(c.commit.items)]
    for item, stage in touched:
        if item not in seen:
            seen.add(item)
            stages[prp_stage.get(item, stage)].append(item)
    return {s: sorted(stages[s]) for s in sorted(stages, key=_order)}


def _task_start(task: Task) -> datetime | None:
    if task.started_at is not None:
        return task.started_at
    if task.last_update is not None and task.elapsed_seconds is not None:
        return task.last_update - timedelta(seconds=task.elapsed_seconds)
    return None


def _commit_stages(
    stages: Stages, commits: Sequence[Classified], start: datetime | None
) -> list[StageDuration]:
    """Each stage from the previous stage's last commit (or its own first) to its last one.

    The first stage starts at ``start`` when a source gave a start before the first commit.
    """
    result = []
    previous_end = start if start is not None and start < commits[0].commit.time else None
    for stage, items in stages.items():
        times = sorted(c.commit.time for c in commits if c.commit.items & set(items))
        duration = None
        if times:
            first, last = times[0], times[-1]
            start = previous_end if previous_end is not None and previous_end <= first else first
            duration = (last - start).total_seconds() if last > start else None
            previous_end = last
        result.append(StageDuration(stage=stage, duration_seconds=duration, items=items))
    return result


def _task_stages(stages: Stages, tasks: list[Task]) -> list[StageDuration]:
    by_item = {t.name: t for t in tasks}
    result = []
    for stage, items in stages.items():
        elapsed = [
            e for i in items if (t := by_item.get(i)) and (e := t.elapsed_seconds) is not None
        ]
        result.append(
            StageDuration(
                stage=stage, duration_seconds=max(elapsed) if elapsed else None, items=items
            )
        )
    return result


def _untimed(stages: list[StageDuration]) -> list[str]:
    return [str(s.stage) for s in stages if s.duration_seconds is None and s.stage is not None]


def _start(ev: OperationEvidence, commits: list[Classified], mtime: datetime | None) -> Timing:
    timing = Timing()
    result = ev.result
    name = result.path.name if result is not None else ""
    starts = sorted(s for t in ev.tasks if (s := _task_start(t)) is not None)
    if result is not None and result.started_at is not None:
        timing.timestamp = result.started_at
        timing.notes.append(f"start: {name} started_at")
    elif result and result.finished_at and result.elapsed_seconds is not None:
        timing.timestamp = result.finished_at - timedelta(seconds=result.elapsed_seconds)
        timing.notes.append(f"start: {name} timestamp minus its elapsed time")
    elif starts:
        timing.timestamp = starts[0]
        timing.notes.append("start: the earliest task start")
    elif commits:
        timing.timestamp = commits[0].commit.time
        timing.notes.append(f"start: the first of {len(commits)} {ev.operation} commit(s)")
    elif result is not None and result.finished_at is not None:
        timing.timestamp = result.finished_at
        timing.notes.append(
            f"timestamp is when the orchestrator wrote {name} (the end of the run); "
            "its start is not recorded"
        )
    elif mtime is not None:
        timing.timestamp = mtime
        timing.notes.append("timestamp is the PRP files' modification time")
    return timing


def _duration(ev: OperationEvidence, commits: list[Classified], timing: Timing) -> None:
    result = ev.result
    name = result.path.name if result is not None else ""
    op = ev.operation
    if result is not None and result.elapsed_seconds is not None:
        timing.duration = result.elapsed_seconds
        timing.notes.append(f"duration: {name} elapsed time")
    elif (
        result
        and result.started_at
        and result.finished_at
        and result.finished_at >= result.started_at
    ):
        timing.duration = (result.finished_at - result.started_at).total_seconds()
        timing.notes.append(f"duration: {name} start to end")
    elif timing.item_seconds or any(t.elapsed_seconds is not None for t in ev.tasks):
        known = [s.duration_seconds for s in timing.stages if s.duration_seconds is not None]
        timing.duration = sum(known)
        timing.notes.append("duration: the sum of each stage's longest task")
    elif len(commits) >= 2:
        timing.duration = (commits[-1].commit.time - commits[0].commit.time).total_seconds()
        timing.notes.append(f"duration: first to last {op} commit")
    elif len(commits) == 1:
        timing.notes.append(f"a single {op} commit: a timestamp, no duration")
    elif ev.commits is None:
        timing.notes.append("no timing: git history unavailable")
    else:
        timing.notes.append(f"no timing: no {op} commits of this batch")


def resolve_timing(ev: OperationEvidence, stages: Stages, mtime: datetime | None) -> Timing:
    """Timing of the record of ``ev.operation``; ``mtime`` is the PRP files' modification time."""
    commits = sorted(ev.commits or [], key=lambda c: c.commit.time)
    timing = _start(ev, commits, mtime)
    timed_tasks = any(t.elapsed_seconds is not None for t in ev.tasks)
    if timed_tasks:
        timing.stages = _task_stages(stages, ev.tasks)
        timing.item_seconds = sum(t.elapsed_seconds or 0.0 for t in ev.tasks)
        timing.notes.append("stage durations: the longest task of each stage")
    elif len(commits) >= 2 and ev.operation in ("generate", "execute"):
        # Reviews and context updates cover the whole batch: their commits time no stage.
        timing.stages = _commit_stages(stages, commits, timing.timestamp)
        timing.notes.append(
            f"stage durations from {ev.operation} commit times: each stage runs from the "
            "previous stage's last commit (or its own first) to its own last commit"
        )
    else:
        timing.stages = [StageDuration(stage=s, items=i) for s, i in stages.items()]
    _duration(ev, commits, timing)
    untimed = _untimed(timing.stages)
    if untimed and len(untimed) < len(timing.stages):
        timing.notes.append(
            f"stage(s) {', '.join(untimed)}: no duration (no task times, or one commit only)"
        )
    return timing
