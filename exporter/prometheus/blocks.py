"""History as TSDB blocks: the OpenMetrics of :mod:`exporter.prometheus.backfill`, through promtool.

``promtool tsdb create-blocks-from openmetrics`` reads its whole input once per block it
creates, and by default a block covers two hours: a year of history meant 4,380 reads of the
file. ``--max-block-duration`` lets it cut blocks as long as the TSDB allows (2 h x 3^9, about
4.5 years), so an archive's history costs one or two reads. Prometheus loads such blocks like
any other (overlapping blocks are merged at query and compaction time since 2.39) and deletes
a block only when all of it is past the retention time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from exporter.index.summary import RecordSummary
from exporter.prometheus.backfill import BackfillStats, write_openmetrics

__all__ = ["MAX_BLOCK_DURATION", "BlocksError", "write_blocks"]

# More than the TSDB's longest block (2 h x 3^9 = 39,366 h): promtool takes the longest it can.
MAX_BLOCK_DURATION: Final = "100000h"
_TIMEOUT_SECONDS: Final = 3600


class BlocksError(Exception):
    """promtool is missing or refused the history (one line, shown to the user)."""


def find_promtool() -> str | None:
    return shutil.which("promtool")


def write_blocks(
    summaries: Iterable[RecordSummary],
    data_dir: Path,
    *,
    labels: Mapping[str, str] | None = None,
    promtool: str | None = None,
    work_dir: Path | None = None,
) -> BackfillStats:
    """Write the history of ``summaries`` as blocks into the TSDB directory ``data_dir``.

    The OpenMetrics text goes to a temporary file (in ``work_dir``, default: the system's
    temporary directory), which is removed afterwards. Nothing is written for no records.
    """
    tool = promtool or find_promtool()
    if tool is None:
        raise BlocksError("promtool not found on PATH: install it (Debian: apt install prometheus)")
    fd, name = tempfile.mkstemp(prefix="batch-metrics-history-", suffix=".om", dir=work_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            stats = write_openmetrics(summaries, handle, labels=labels)
        if stats.samples == 0:
            return stats
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                [
                    tool,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    f"--max-block-duration={MAX_BLOCK_DURATION}",
                    "--quiet",
                    name,
                    str(data_dir),
                ],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BlocksError(f"running {tool} failed: {exc}") from exc
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise BlocksError(f"promtool refused the history: {lines[-1] if lines else '?'}")
        return stats
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink()
