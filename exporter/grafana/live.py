"""The *live* dashboard: batches running now, from the orchestrator's heartbeat files.

Every panel reads series that ``batch-metrics serve`` exposes from the heartbeat files
(``exporter/prometheus/live.py``), the path the shipped stack scrapes; none needs an
instrumented Python orchestrator's in-process metrics, which that stack does not collect.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.grafana.board import LIVE_UID, above, bars, dashboard, stat, trend
from exporter.grafana.panels import FULL_WIDTH, Layout, Panel, Query
from exporter.prometheus import promql
from exporter.signals.thresholds import Thresholds
from instrumentation import contract

__all__ = ["live_dashboard"]

_TASKS_RUNNING: Final = contract.TASKS_RUNNING.prometheus_name
_PROGRESS: Final = contract.TASK_PROGRESS.prometheus_name
_AGE: Final = promql.HEARTBEAT_AGE_METRIC
_TASK: Final = "{{batch_id}} {{task}}"


def _per_batch_table(stalled: float) -> Panel:
    """One row per running batch: its tasks, how many stalled, the oldest heartbeat, progress."""
    columns = {
        "Value #A": "Running tasks",
        "Value #B": "Stalled tasks",
        "Value #C": "Oldest heartbeat (s)",
        "Value #D": "Mean progress",
    }
    return Panel(
        "table",
        "Per batch",
        f"One row per batch with running tasks: how many, how many have not written a heartbeat "
        f"for {stalled:g} s (stalled), the oldest heartbeat's age and the tasks' mean reported "
        "progress (as the orchestrator writes it).",
        (
            Query(f"sum by (batch_id) ({_TASKS_RUNNING})", table=True, instant=True),
            Query(
                f"count by (batch_id) ({_AGE} > {stalled:g}) or (0 * count by (batch_id) ({_AGE}))",
                table=True,
                instant=True,
            ),
            Query(f"max by (batch_id) ({_AGE})", table=True, instant=True),
            Query(f"avg by (batch_id) ({_PROGRESS})", table=True, instant=True),
        ),
        width=FULL_WIDTH,
        height=7,
        transformations=(
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True}, "renameByName": columns},
            },
        ),
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    )


def live_dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """Batches running now: running tasks and batches, progress, heartbeat ages, stalls."""
    stalled = thresholds.stalled_heartbeat_seconds
    layout = Layout()
    layout.add_row(
        "Running now",
        stat(
            "Running tasks",
            "Orchestrator tasks whose heartbeat file says they are running.",
            Query(f"sum({_TASKS_RUNNING}) or vector(0)", "tasks"),
            "short",
            width=8,
        ),
        stat(
            "Running batches",
            "Batches with at least one running task.",
            Query(f"count({_TASKS_RUNNING}) or vector(0)", "batches"),
            "short",
            width=8,
        ),
        stat(
            "Stalled tasks",
            f"Running tasks whose last heartbeat is older than {stalled:g} s "
            "(stalled_heartbeat_seconds in thresholds.yaml; the BatchTaskStalled alert).",
            Query(f"count({promql.stalled_task_expr(thresholds)}) or vector(0)", "stalled"),
            "short",
            width=8,
            thresholds=above(1),
        ),
        _per_batch_table(stalled),
    )
    layout.add_row(
        "Progress",
        bars(
            "Progress per running task",
            "Each running task's progress as its heartbeat reports it (the orchestrator's own "
            "scale, commonly 0 to 1).",
            Query(_PROGRESS, _TASK, True),
            width=FULL_WIDTH,
            display="gradient",
        ),
        trend(
            "Progress over time",
            "A flat line is a task that stopped advancing; a line that ends is a task that "
            "finished (or stopped writing heartbeats: see the ages below).",
            Query(_PROGRESS, _TASK),
            width=FULL_WIDTH,
        ),
    )
    layout.add_row(
        "Heartbeats",
        bars(
            "Heartbeat age per running task",
            f"Seconds since each running task last wrote its heartbeat; red from {stalled:g} s.",
            Query(_AGE, _TASK, True),
            unit="s",
            width=FULL_WIDTH,
            thresholds=above(stalled),
            display="gradient",
        ),
        trend(
            "Heartbeat age over time",
            "A line that keeps rising is a task that stopped reporting.",
            Query(_AGE, _TASK),
            unit="s",
            width=FULL_WIDTH,
            thresholds=above(stalled),
            threshold_line=True,
        ),
    )
    return dashboard(
        LIVE_UID,
        "Batch operations: live",
        "Batches running now: running tasks and batches, each task's progress, heartbeat ages "
        "and stalled tasks, from the orchestrator's heartbeat files.",
        layout,
        thresholds=thresholds,
        refresh="10s",
    )
