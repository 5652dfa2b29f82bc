"""History a live ``serve --live-only`` leaves to backfill, loaded once: ``backfill --missing``.

The archive's :class:`~exporter.index.ledger.Ledger` says which records the live scrape
counts and which are history, and which history a backfill loaded already. This module picks
what is missing (history never loaded, records never seen, decided here by the same rule the
live exporter uses) and loads it:

* into a TSDB directory with promtool (``--tsdb``; the native stack), marked loaded when
  promtool succeeded;
* or as an OpenMetrics file for a separate promtool step (``--output``; the compose stack's
  init services), with the load's id in ``<output>.id``. Its records are *pending* until the
  loading step, after promtool succeeded, copies that id into the confirmation file
  (``--loaded-marker``, default ``<output>.loaded``). Each run writes every history record not
  confirmed yet and marks them with its own id, so only the latest id matters: a load that
  was never confirmed is simply contained in the next one.

Each load gets its own ``backfill`` label (its start time), so loads never share a series with
each other, nor with the live scrape (``job="batch-metrics-history"``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exporter.index.ledger import Ledger, counts_live
from exporter.index.store import ArchiveIndex
from exporter.index.summary import RecordSummary
from exporter.prometheus.backfill import BackfillStats, write_openmetrics
from exporter.prometheus.blocks import write_blocks

__all__ = ["HISTORY_JOB", "Loaded", "load_missing"]

HISTORY_JOB: Final = "batch-metrics-history"
_PENDING: Final = "pending:"
_CONFIRMED: Final = ".loaded"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one ``--missing`` run did: the backfill's stats, and the records it left live."""

    stats: BackfillStats
    live: int
    load_id: str


def _marker_id(marker: Path | None) -> str | None:
    if marker is None:
        return None
    try:
        return marker.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def missing_history(
    index: ArchiveIndex, ledger: Ledger, now: float, *, marker: Path | None = None
) -> tuple[list[RecordSummary], int]:
    """History records not loaded yet (deciding records never seen), and how many are live.

    A record pending in a load whose id ``marker`` holds is recorded as loaded for good. The
    ledger is read and written in one transaction, so a record a running ``serve`` decides
    meanwhile is either seen decided here or decided by this call, never both.
    """
    summaries = index.summaries()
    confirmed = _marker_id(marker)
    with ledger.write() as tx:
        cutover = tx.cutover(now)
        decided = tx.decided()
        loads = tx.history_to_load()
        if confirmed is not None:
            done = [name for name, load in loads.items() if load == _PENDING + confirmed]
            tx.mark_loaded(done, f"file:{confirmed}")
            loads.update((name, f"file:{confirmed}") for name in done)
        missing: list[RecordSummary] = []
        live: list[str] = []
        history: list[str] = []
        for summary in summaries:
            name = summary.file
            if name in decided:
                load = loads.get(name)
                if not decided[name] and (load is None or load.startswith(_PENDING)):
                    missing.append(summary)
            elif counts_live(summary.end_timestamp, now, cutover):
                live.append(name)
            else:
                history.append(name)
                missing.append(summary)
        tx.decide(live, history, first_seen=now)
    return missing, len(live)


def load_missing(
    index: ArchiveIndex,
    ledger: Ledger,
    now: float,
    *,
    tsdb: Path | None = None,
    output: Path | None = None,
    labels: Mapping[str, str] | None = None,
    marker: Path | None = None,
) -> Loaded:
    """Load the missing history into ``tsdb``, or write it to ``output`` (see the docstring)."""
    if output is not None and marker is None:
        marker = Path(str(output) + _CONFIRMED)
    missing, live = missing_history(index, ledger, now, marker=marker)
    load_id = str(int(now))
    all_labels = {"job": HISTORY_JOB, "backfill": load_id, **(labels or {})}
    names = [s.file for s in missing]
    if tsdb is not None:
        stats = write_blocks(missing, tsdb, labels=all_labels)
        ledger.mark_loaded(names, f"tsdb:{load_id}")
        return Loaded(stats, live, load_id)
    assert output is not None
    id_file = Path(str(output) + ".id")
    if not missing:
        for path in (output, id_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return Loaded(BackfillStats(0, 0, 0, None, None), live, load_id)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            stats = write_openmetrics(missing, handle, labels=all_labels)
        Path(tmp).replace(output)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    ledger.mark_loaded(names, _PENDING + load_id)
    id_file.write_text(load_id + "\n", encoding="utf-8")
    return Loaded(stats, live, load_id)
