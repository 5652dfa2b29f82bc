"""Default locations, the seed's (kept in a module of their own: the CLI reads them at start-up)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from exporter.util.errors import EXIT_USAGE, CommandError

__all__ = [
    "DEFAULT_ARCHIVE",
    "DEFAULT_ORCHESTRATION",
    "DEFAULT_REPORT",
    "RECORD_GLOB",
    "is_record_name",
    "require_archive",
]

DEFAULT_ARCHIVE: Final = Path(".ce/completed-batches")
DEFAULT_REPORT: Final = Path(".ce/trend-analysis-report.md")
DEFAULT_ORCHESTRATION: Final = Path(".ce/orchestration")

# Every record file of an archive, as the seed's scripts find them.
RECORD_GLOB: Final = "batch-*.json"


def is_record_name(name: str) -> bool:
    """Whether a file name in an archive is a record's (the seed's ``batch-*.json``)."""
    return name.startswith("batch-") and name.endswith(".json")


def require_archive(archive: Path) -> Path:
    """``archive`` if it is a directory this process can list; else CommandError, exit 2.

    Every command that reads an archive says the same thing, with the same exit status, when
    there is none: a newcomer's first mistake should get one clear answer.
    """
    if not archive.is_dir():
        if archive.exists():
            raise CommandError(f"archive {archive} is not a directory", EXIT_USAGE)
        raise CommandError(
            f"no archive at {archive} (run 'batch-metrics demo', instrument a batch or "
            "'batch-metrics analyze' one first, or name another with --archive DIR)",
            EXIT_USAGE,
        )
    if not os.access(archive, os.R_OK | os.X_OK):
        raise CommandError(f"cannot read archive {archive}: permission denied", EXIT_USAGE)
    return archive
