"""Default locations, the seed's (kept in a module of their own: the CLI reads them at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_ARCHIVE", "DEFAULT_ORCHESTRATION", "DEFAULT_REPORT"]

DEFAULT_ARCHIVE: Final = Path(".ce/completed-batches")
DEFAULT_REPORT: Final = Path(".ce/trend-analysis-report.md")
DEFAULT_ORCHESTRATION: Final = Path(".ce/orchestration")
