"""Default locations, the seed's (kept in a module of their own: the CLI reads them at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_ARCHIVE",
    "DEFAULT_ORCHESTRATION",
    "DEFAULT_REPORT",
    "RECORD_GLOB",
    "is_record_name",
]

DEFAULT_ARCHIVE: Final = Path(".ce/completed-batches")
DEFAULT_REPORT: Final = Path(".ce/trend-analysis-report.md")
DEFAULT_ORCHESTRATION: Final = Path(".ce/orchestration")

# Every record file of an archive, as the seed's scripts find them.
RECORD_GLOB: Final = "batch-*.json"


def is_record_name(name: str) -> bool:
    """Whether a file name in an archive is a record's (the seed's ``batch-*.json``)."""
    return name.startswith("batch-") and name.endswith(".json")
