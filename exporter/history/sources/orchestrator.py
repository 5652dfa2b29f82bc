"""The files an LLM-agent orchestrator leaves behind for one batch.

Layout (``.ce/orchestration/`` under the project root)::

    tasks/batch-{id}/task-{n}.json         spec: item_id (or prp_id), stage, operation (or
                                           type: generator|executor|reviewer|context-updater),
                                           model, started_at (or created_at)
    tasks/batch-{id}/task-{n}.hb           heartbeat: status, progress, tokens_used,
                                           elapsed_seconds, last_update
    tasks/batch-{id}/task-{n}.result.json  result: status, errors, tokens_used, elapsed_seconds
                                           (input_tokens/output_tokens/model if known)
    tasks/batch-{id}/PRP-{id}.hb / .result.json   the same, named by item (review command)
    batches/prp-PRP-{id}.result.json       the batch executor's per-item result (prp_id,
                                           status, elapsed_seconds, errors)
    batches/batch-{id}.result.json         the aggregate (:mod:`.batch_result`, two shapes)

Every file is optional and read defensively: a file that is not a JSON object is reported in
``warnings`` and skipped. Only the fields above are used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from exporter.archive.model import check_batch_id, checked_stage
from exporter.history.sources.batch_result import BatchResult, parse_batch_result
from exporter.history.sources.ids import is_item_of, normal_item_id, prp_id_of
from exporter.history.sources.values import (
    count,
    operation_of,
    parse_time,
    read_json,
    seconds,
)
from instrumentation.semconv import Operation

__all__ = ["OrchestratorBatch", "Task", "read_batch"]

_TASK_FILE: Final = re.compile(
    r"(task-[0-9A-Za-z_-]+|PRP-[0-9A-Za-z._-]+?)\.(json|hb|result\.json)"
)
_PRP_RESULT: Final = re.compile(r"prp-(PRP-[0-9A-Za-z._-]+?)\.result\.json")


@dataclass(slots=True)
class Task:
    """One task (one item) of the batch, merged from its spec, heartbeat and result."""

    task: str  # the file name's stem: "task-3", "PRP-47.1.2"
    item_id: str | None = None
    stage: int | None = None
    operation: Operation | None = None
    model: str | None = None
    status: str | None = None  # from the result, else from the heartbeat
    finished: bool = False  # a result file exists
    tokens_used: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    elapsed_seconds: float | None = None
    started_at: datetime | None = None
    last_update: datetime | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (type, message)

    @property
    def name(self) -> str:
        """The item id, else the task's own name."""
        return self.item_id or self.task


@dataclass(slots=True)
class OrchestratorBatch:
    """What the orchestrator's files say about one batch."""

    tasks: list[Task]
    result: BatchResult | None  # batches/batch-{id}.result.json
    warnings: list[str]


def _errors(value: Any) -> list[tuple[str, str]]:
    if value is None or value in ([], ""):
        return []
    entries = value if isinstance(value, list) else [value]
    found = []
    for entry in entries:
        if isinstance(entry, dict):
            kind = entry.get("type") or entry.get("error_type") or "task_error"
            message = entry.get("message") or entry.get("error_message") or ""
            found.append((str(kind)[:128], str(message)[:500]))
        else:
            found.append(("task_error", str(entry)[:500]))
    return found


def _apply_spec(task: Task, spec: dict[str, Any]) -> None:
    item = normal_item_id(spec.get("item_id") or spec.get("prp_id") or spec.get("item"))
    task.item_id = item or task.item_id
    task.stage = checked_stage(spec.get("stage"))
    task.operation = operation_of(spec)
    task.model = str(spec["model"])[:200] if spec.get("model") else None
    task.started_at = parse_time(spec.get("started_at") or spec.get("created_at"))


def _apply_progress(task: Task, data: dict[str, Any], *, result: bool) -> None:
    if result or task.status is None:
        task.status = str(data.get("status") or "").strip().lower() or task.status
    task.item_id = task.item_id or normal_item_id(data.get("prp_id") or data.get("item_id"))
    task.tokens_used = count(data.get("tokens_used")) if "tokens_used" in data else task.tokens_used
    task.elapsed_seconds = seconds(data.get("elapsed_seconds")) or task.elapsed_seconds
    task.last_update = parse_time(data.get("last_update")) or task.last_update
    if result:
        task.finished = True
        task.input_tokens = count(data.get("input_tokens"))
        task.output_tokens = count(data.get("output_tokens"))
        task.model = str(data["model"])[:200] if data.get("model") else task.model
        task.errors = _errors(data.get("errors"))


def _read_tasks(task_dir: Path, warnings: list[str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    files = sorted(task_dir.iterdir()) if task_dir.is_dir() else []
    # Specs first, then heartbeats, then results: later files refine earlier ones.
    order = {"json": 0, "hb": 1, "result.json": 2}
    named = [(m, p) for p in files if (m := _TASK_FILE.fullmatch(p.name))]
    for match, path in sorted(named, key=lambda mp: (order[mp[0][2]], mp[1].name)):
        data = read_json(path, warnings)
        if data is None:
            continue
        name = match[1]
        task = tasks.setdefault(name, Task(task=name))
        if name.startswith("PRP-") and task.item_id is None:
            task.item_id = name
        if match[2] == "json":
            _apply_spec(task, data)
        else:
            _apply_progress(task, data, result=match[2] == "result.json")
    return tasks


def _read_prp_results(
    folder: Path, batch_id: str, tasks: dict[str, Task], warnings: list[str]
) -> None:
    """The batch executor's ``prp-PRP-47.1.1.result.json`` files: execute results per item."""
    if not folder.is_dir():
        return
    known = {t.item_id for t in tasks.values()}
    for path in sorted(folder.glob("prp-PRP-*.result.json")):
        match = _PRP_RESULT.fullmatch(path.name)
        number = prp_id_of(match[1]) if match else None
        if match is None or number is None or not is_item_of(number, batch_id):
            continue
        item = f"PRP-{number}"
        if item in known:
            continue  # the task files already say what happened to it
        data = read_json(path, warnings)
        if data is None:
            continue
        task = tasks.setdefault(path.name, Task(task=path.name, item_id=item))
        task.operation = operation_of(data) or "execute"
        _apply_progress(task, data, result=True)


def read_batch(root: Path, batch_id: str) -> OrchestratorBatch | None:
    """The orchestrator's record of ``batch_id`` under ``root``; ``None`` when it left none."""
    base = root / ".ce/orchestration"
    task_dir = base / "tasks" / f"batch-{check_batch_id(batch_id)}"
    result_path = base / "batches" / f"batch-{batch_id}.result.json"
    warnings: list[str] = []
    tasks = _read_tasks(task_dir, warnings)
    _read_prp_results(base / "batches", batch_id, tasks, warnings)
    result = None
    if result_path.is_file():
        data = read_json(result_path, warnings)
        result = parse_batch_result(result_path, data) if data is not None else None
    if not tasks and result is None and not warnings:
        return None
    return OrchestratorBatch(
        tasks=sorted(tasks.values(), key=lambda t: t.task), result=result, warnings=warnings
    )
