"""Reading values out of orchestrator JSON defensively: counts, seconds, times, operations."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from dateutil import parser as date_parser

from instrumentation.semconv import Operation

__all__ = ["MAX_FILE_BYTES", "count", "operation_of", "parse_time", "read_json", "seconds"]

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
_MAX_COUNT: Final = 2**53

# The operation names orchestrators write: the operation itself or its subagent type.
_OPERATIONS: Final[dict[str, Operation]] = {
    "generate": "generate",
    "generator": "generate",
    "gen": "generate",
    "execute": "execute",
    "executor": "execute",
    "exe": "execute",
    "review": "review",
    "reviewer": "review",
    "peer-review": "review",
    "update-context": "update-context",
    "context-updater": "update-context",
    "context-update": "update-context",
    "update_context": "update-context",
}


def read_json(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    """A JSON object from a file of at most 4 MiB; else one warning and ``None``."""
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


def count(value: Any) -> int | None:
    """A non-negative count: an integer, or the length of a list of ids."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value) if value <= _MAX_COUNT else None


def seconds(value: Any) -> float | None:
    """Seconds in [0, 1e9); ``None`` otherwise."""
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


def operation_of(data: dict[str, Any]) -> Operation | None:
    """The operation a file names in ``operation`` or ``type`` (``executor`` = execute)."""
    for key in ("operation", "type"):
        value = data.get(key)
        if isinstance(value, str) and value.strip().lower() in _OPERATIONS:
            return _OPERATIONS[value.strip().lower()]
    return None
