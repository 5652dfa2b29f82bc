"""The files an LLM-agent orchestrator leaves behind for one batch.

Layout (``.ce/orchestration/`` under the project root)::

    tasks/batch-{id}/task-{n}.json         spec: item_id (or prp_id), stage, operation, model
    tasks/batch-{id}/task-{n}.hb           heartbeat: status, progress, tokens_used,
                                           elapsed_seconds, last_update
    tasks/batch-{id}/task-{n}.result.json  result: status, output, errors, tokens_used,
                                           elapsed_seconds (input_tokens/output_tokens if known)
    batches/batch-{id}.result.json         aggregate: operation, status, started_at,
                                           elapsed_seconds, ... (every field optional)

Every file is optional and read defensively: a file that is not a JSON object is reported in
``warnings`` and skipped. Only the fields above are used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from dateutil import parser as date_parser

from exporter.archive.model import check_batch_id, checked_stage

__all__ = ["MAX_FILE_BYTES", "OrchestratorBatch", "Task", "parse_time", "read_batch"]

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
_TASK_FILE: Final = re.compile(r"task-([0-9A-Za-z_-]+)\.(json|hb|result\.json)")


@dataclass(slots=True)
class Task:
    """One task (one item) of the batch, merged from its spec, heartbeat and result."""

    task: str
    item_id: str | None = None
    stage: int | None = None
    operation: str | None = None
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


@dataclass(slots=True)
class OrchestratorBatch:
    """What the orchestrator's files say about one batch."""

    tasks: list[Task]
    summary: dict[str, Any]  # batches/batch-{id}.result.json, {} when absent
    warnings: list[str]


def _read_json(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            warnings.append(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; skipped")
            return None
        value = json.loads(data)
    except OSError as exc:
        warnings.append(f"{path}: cannot read: {exc.strerror or exc}; skipped")
        return None
    except (ValueError, RecursionError):
        warnings.append(f"{path}: not JSON; skipped")
        return None
    if not isinstance(value, dict):
        warnings.append(f"{path}: not a JSON object; skipped")
        return None
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        return None
    return float(value)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 (or epoch seconds) time from a file; ``None`` when absent or unreadable."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value).astimezone()
        if isinstance(value, str):
            parsed = date_parser.isoparse(value)
            return parsed if parsed.tzinfo else parsed.astimezone()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _errors(value: Any) -> list[tuple[str, str]]:
    if value is None or value == []:
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
    item = spec.get("item_id") or spec.get("prp_id") or spec.get("item")
    task.item_id = str(item) if item is not None else None
    stage = spec.get("stage")
    task.stage = checked_stage(stage)
    task.operation = str(spec["operation"]) if spec.get("operation") else None
    task.model = str(spec["model"])[:200] if spec.get("model") else None
    task.started_at = parse_time(spec.get("started_at") or spec.get("created_at"))


def _apply_progress(task: Task, data: dict[str, Any], *, result: bool) -> None:
    if result or task.status is None:
        task.status = str(data.get("status") or "").strip().lower() or task.status
    task.tokens_used = _int(data.get("tokens_used")) if "tokens_used" in data else task.tokens_used
    task.elapsed_seconds = _seconds(data.get("elapsed_seconds")) or task.elapsed_seconds
    task.last_update = parse_time(data.get("last_update")) or task.last_update
    if result:
        task.finished = True
        task.input_tokens = _int(data.get("input_tokens"))
        task.output_tokens = _int(data.get("output_tokens"))
        task.model = str(data["model"])[:200] if data.get("model") else task.model
        task.errors = _errors(data.get("errors"))


def read_batch(root: Path, batch_id: str) -> OrchestratorBatch | None:
    """The orchestrator's record of ``batch_id`` under ``root``; ``None`` when it left none."""
    base = root / ".ce/orchestration"
    task_dir = base / "tasks" / f"batch-{check_batch_id(batch_id)}"
    summary_path = base / "batches" / f"batch-{batch_id}.result.json"
    if not task_dir.is_dir() and not summary_path.is_file():
        return None
    warnings: list[str] = []
    summary = _read_json(summary_path, warnings) if summary_path.is_file() else None
    tasks: dict[str, Task] = {}
    files = sorted(task_dir.iterdir()) if task_dir.is_dir() else []
    # Specs first, then heartbeats, then results: later files refine earlier ones.
    order = {"json": 0, "hb": 1, "result.json": 2}
    named = [(m, p) for p in files if (m := _TASK_FILE.fullmatch(p.name))]
    for match, path in sorted(named, key=lambda mp: (order[mp[0][2]], mp[1].name)):
        data = _read_json(path, warnings)
        if data is None:
            continue
        task = tasks.setdefault(match[1], Task(task=match[1]))
        if match[2] == "json":
            _apply_spec(task, data)
        else:
            _apply_progress(task, data, result=match[2] == "result.json")
    return OrchestratorBatch(
        tasks=sorted(tasks.values(), key=lambda t: t.task), summary=summary or {}, warnings=warnings
    )
