"""Live progress of running batches, read from the orchestrator's heartbeat files.

LLM-agent orchestrators write ``{orchestration}/tasks/batch-{id}/task-{n}.hb`` (JSON: status,
progress, tokens_used, elapsed_seconds, last_update) while a task runs, ``task-{n}.result.json``
when it ends, and ``{orchestration}/batches/batch-{id}.result.json`` when the whole batch ends.
:class:`HeartbeatCollector` exposes, for running tasks only (so labels stay bounded by what is
running now, and a finished task's series go away):

* ``batch_tasks_running{batch_id}``: tasks whose heartbeat says they run;
* ``batch_task_heartbeat_age_seconds{batch_id, task}``: seconds since the task's last heartbeat
  (``last_update``, else the file's mtime), which ``BatchTaskStalled`` alerts on;
* ``batch_task_progress{batch_id, task}``: the task's reported progress, as written;
* ``batch_tasks_abandoned{batch_id}``: tasks whose heartbeat says running but is older than the
  abandon age (``abandoned_heartbeat_seconds`` in thresholds.yaml, 1 h by default). Such a task
  is not running any more (its process died without a result): it leaves the three series above,
  so the stalled alert resolves instead of firing forever, and ``BatchTaskAbandoned`` fires once.

A task runs when its heartbeat status is one of :data:`RUNNING_STATUSES` and it has no result
file; a batch with a result file is skipped without listing its tasks. Unreadable heartbeat
files are skipped (they are being rewritten, or are not ours). A ``last_update`` written
without a UTC offset is read as UTC (orchestrators write UTC; the exporter's own time zone,
often another in a container, says nothing about the writer's).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.signals.thresholds import load_thresholds
from exporter.util.paths import DEFAULT_ORCHESTRATION
from instrumentation import contract

__all__ = [
    "DEFAULT_ORCHESTRATION_DIR",
    "RUNNING_STATUSES",
    "HeartbeatCollector",
    "RunningTask",
    "scan_running_tasks",
]

_log = logging.getLogger(__name__)

DEFAULT_ORCHESTRATION_DIR: Final = DEFAULT_ORCHESTRATION
RUNNING_STATUSES: Final = frozenset({"running", "in_progress", "in-progress", "started"})
_MAX_HEARTBEAT_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class RunningTask:
    batch_id: str
    task: str
    last_update: float  # epoch seconds
    progress: float | None


def _last_update(data: dict[str, Any], fallback: float) -> float:
    value = data.get("last_update")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        if parsed.tzinfo is None:  # no offset: UTC, whatever this process's zone
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return fallback


def _read_heartbeat(path: Path) -> tuple[dict[str, Any], float] | None:
    try:
        with path.open("rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            data = json.loads(handle.read(_MAX_HEARTBEAT_BYTES))
    except (OSError, ValueError):
        return None
    return (data, mtime) if isinstance(data, dict) else None


def scan_running_tasks(orchestration: Path) -> list[RunningTask]:
    """Every running task under ``orchestration``, sorted by batch id and task."""
    tasks_dir = orchestration / "tasks"
    batches_dir = orchestration / "batches"
    found: list[RunningTask] = []
    try:
        batch_dirs = sorted(p for p in tasks_dir.iterdir() if p.name.startswith("batch-"))
    except OSError:
        return found
    for batch_dir in batch_dirs:
        batch_id = batch_dir.name.removeprefix("batch-")
        if (batches_dir / f"{batch_dir.name}.result.json").exists():
            continue
        try:
            heartbeats = sorted(batch_dir.glob("task-*.hb"))
        except OSError:
            continue
        for hb in heartbeats:
            task = hb.name.removesuffix(".hb")
            if (batch_dir / f"{task}.result.json").exists():
                continue
            read = _read_heartbeat(hb)
            if read is None:
                continue
            data, mtime = read
            if str(data.get("status", "")).lower() not in RUNNING_STATUSES:
                continue
            progress = data.get("progress")
            found.append(
                RunningTask(
                    batch_id,
                    task,
                    _last_update(data, mtime),
                    float(progress) if isinstance(progress, int | float) else None,
                )
            )
    return found


class HeartbeatCollector(Collector):
    """Running tasks and their heartbeat ages, read from the orchestration directory per scrape.

    ``abandon_after`` (seconds) defaults to the thresholds file's ``abandoned_heartbeat_seconds``,
    the file the alert rules are generated from.
    """

    def __init__(
        self,
        orchestration: Path,
        *,
        clock: Callable[[], float] = time.time,
        abandon_after: float | None = None,
    ) -> None:
        self.orchestration = Path(orchestration)
        self._clock = clock
        if abandon_after is None:
            abandon_after = load_thresholds().abandoned_heartbeat_seconds
        self.abandon_after = abandon_after

    def collect(self) -> Iterator[Metric]:
        return self._families(scan_running_tasks(self.orchestration), self._clock())

    def describe(self) -> Iterator[Metric]:
        """The families :meth:`collect` yields, without reading the heartbeats."""
        return self._families([], 0.0)

    def _families(self, found: list[RunningTask], now: float) -> Iterator[Metric]:
        tasks = [t for t in found if now - t.last_update <= self.abandon_after]
        abandoned: dict[str, int] = {}
        for t in found:
            if now - t.last_update > self.abandon_after:
                abandoned[t.batch_id] = abandoned.get(t.batch_id, 0) + 1
        running = GaugeMetricFamily(
            contract.TASKS_RUNNING.prometheus_base,
            contract.TASKS_RUNNING.help,
            labels=list(contract.TASKS_RUNNING.labels),
        )
        age = GaugeMetricFamily(
            contract.TASK_HEARTBEAT_AGE.prometheus_base,
            contract.TASK_HEARTBEAT_AGE.help,
            labels=list(contract.TASK_PROGRESS.labels),
        )
        progress = GaugeMetricFamily(
            contract.TASK_PROGRESS.prometheus_base,
            contract.TASK_PROGRESS.help,
            labels=list(contract.TASK_PROGRESS.labels),
        )
        per_batch: dict[str, int] = {}
        for t in tasks:
            per_batch[t.batch_id] = per_batch.get(t.batch_id, 0) + 1
            age.add_metric([t.batch_id, t.task], max(0.0, now - t.last_update))
            if t.progress is not None:
                progress.add_metric([t.batch_id, t.task], t.progress)
        for batch_id, n in per_batch.items():
            running.add_metric([batch_id], n)
        gone = GaugeMetricFamily(
            contract.TASKS_ABANDONED.prometheus_base,
            contract.TASKS_ABANDONED.help,
            labels=list(contract.TASKS_ABANDONED.labels),
        )
        for batch_id, n in abandoned.items():
            gone.add_metric([batch_id], n)
        yield running
        yield age
        yield progress
        yield gone
