"""The orchestrator's aggregate result: ``.ce/orchestration/batches/batch-{id}.result.json``.

Two shapes exist in the wild, and both are read (every field optional):

* the batch executor's script writes counts only::

      {"batch_id": 47, "stage_filter": "", "total": 10, "success": 10, "failed": 0,
       "timestamp": "2025-11-12T11:29:00Z"}

  ``stage_filter`` names the one stage the run covered ("" = all), ``timestamp`` is when the
  result was written (the end of the run).
* the base orchestrator's documented aggregate::

      {"batch_id": 43, "status": "success", "stage": 1,
       "completed_tasks": ["phase-1"], "failed_tasks": [], "total_tokens_used": 180000,
       "total_elapsed_seconds": 3600, "results": [{"task_id": "phase-1", "status": "success"}]}

  ``completed_tasks`` / ``failed_tasks`` are lists of task or PRP ids (or counts); ``results``
  entries name a ``task_id``, ``prp_id`` or ``item_id`` and a ``status``.

Aliases read as well: ``operation`` (or ``type``), ``total_items``/``total_tasks``,
``successful``/``failed_count``, ``started_at``/``created_at``, ``completed_at``/
``finished_at``, ``elapsed_seconds``, ``tokens_used``/``total_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from exporter.history.sources.ids import normal_item_id
from exporter.history.sources.status import ItemOutcome, status_outcome
from exporter.history.sources.values import count, operation_of, parse_time, seconds
from instrumentation.semconv import Operation

__all__ = ["BatchResult", "parse_batch_result"]

Shape = Literal["executor", "documented", "other"]


@dataclass(slots=True)
class BatchResult:
    """What one batch result file says; ``None`` where it says nothing."""

    path: Path
    shape: Shape
    operation: Operation | None  # the operation or type field; None when absent
    total: int | None = None
    success: int | None = None
    failure: int | None = None
    partial: int | None = None
    outcomes: dict[str, ItemOutcome] = field(default_factory=dict)  # task or item id -> outcome
    stage: int | None = None  # the one stage the result covers (stage_filter / stage)
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed_seconds: float | None = None
    tokens: int | None = None

    @property
    def has_counts(self) -> bool:
        return self.success is not None or self.failure is not None or bool(self.outcomes)

    def describe(self) -> str:
        """``total 10, success 10, failed 0`` as the file gave them."""
        parts = [
            f"{name} {value}"
            for name, value in (
                ("total", self.total),
                ("success", self.success),
                ("failed", self.failure),
                ("partial", self.partial),
            )
            if value is not None
        ]
        return ", ".join(parts) or "no counts"


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _stage(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def _id_list(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    ids = [normal_item_id(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
    return [i for i in ids if i is not None]


def _listed(result: BatchResult, data: dict[str, Any]) -> None:
    """Per-task or per-item outcomes from ``completed_tasks``, ``failed_tasks``, ``results``."""
    lists: tuple[tuple[str, ItemOutcome], ...] = (
        ("completed_tasks", "success"),
        ("failed_tasks", "failure"),
    )
    for key, outcome in lists:
        for i in _id_list(data.get(key)) or []:
            result.outcomes[i] = outcome
    entries = data.get("results")
    if isinstance(entries, list):
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            ident = normal_item_id(_first(entry, "prp_id", "item_id", "task_id"))
            said = status_outcome(str(entry.get("status") or ""))
            if ident is not None and said is not None:
                result.outcomes.setdefault(ident, said)


def parse_batch_result(path: Path, data: dict[str, Any]) -> BatchResult:
    """Read either shape of a batch result (a JSON object already loaded)."""
    documented = any(k in data for k in ("completed_tasks", "failed_tasks", "results", "status"))
    shape: Shape = (
        "executor"
        if "stage_filter" in data or "success" in data
        else "documented"
        if documented
        else "other"
    )
    result = BatchResult(path=path, shape=shape, operation=operation_of(data))
    result.total = count(_first(data, "total", "total_items", "total_tasks", "total_prps"))
    success = _first(data, "success", "successful", "success_count")
    failure = _first(data, "failed", "failure", "failed_count", "failure_count")
    completed, failed = data.get("completed_tasks"), data.get("failed_tasks")
    result.success = count(success if success is not None else completed)
    result.failure = count(failure if failure is not None else failed)
    result.partial = count(_first(data, "partial", "partial_count"))
    _listed(result, data)
    if result.outcomes and result.success is None:
        result.success = sum(o == "success" for o in result.outcomes.values())
        result.failure = sum(o == "failure" for o in result.outcomes.values())
        result.partial = sum(o == "partial" for o in result.outcomes.values()) or None
    stage = _first(data, "stage_filter", "stage")
    result.stage = _stage(stage) if stage != "" else None
    status = data.get("status")
    result.status = str(status).strip().lower()[:64] if status is not None else None
    result.started_at = parse_time(_first(data, "started_at", "created_at"))
    result.finished_at = parse_time(_first(data, "completed_at", "finished_at", "timestamp"))
    result.elapsed_seconds = seconds(_first(data, "total_elapsed_seconds", "elapsed_seconds"))
    result.tokens = count(_first(data, "total_tokens_used", "tokens_used", "total_tokens"))
    if result.total is None and result.success is not None:
        result.total = (result.success or 0) + (result.failure or 0) + (result.partial or 0)
    return result
