"""The one definition of the figures every report, rule and dashboard must agree on.

* **Item success rate** of an operation: ``sum(success_count) / sum(total_items)`` over its
  runs, as the seed's ``trend-analysis.py`` computes it. A run that counts items by outcome but
  has no ``total_items`` (the seed's script fails on it) contributes the items it counted. An
  operation whose runs record no items has *no data* (``None``), not a 0 % rate (the seed
  reports 0 %, and flags it).
* **Duration statistics** of an operation: over the runs that recorded a
  ``duration_seconds``. A run without a duration is left out (the seed counts it as 0 s,
  which drags the mean and the minimum down with a value nobody measured).
* **Overall parallel efficiency** of an operation: its runs' item seconds (``duration_seconds
  x parallel_efficiency``, summed over the runs that recorded both) over their wall seconds
  (``duration_seconds``, summed over the runs that recorded one): the work done per second of
  wall time, weighted by time. A run that recorded no item time adds wall time but no work, as
  the instrumentation counts a run without timed items. ``None`` when no item time was
  recorded. The mean of the per-run efficiencies weighs a one-minute run like a one-hour one.
* Every archived run counts once: a retried or resumed batch contributes each of its runs.

These are given twice, as Python over values here and as SQL over the archive index's rows
(the measures of :mod:`exporter.index.rollups`, which build on :data:`SQL_RUN_TOTAL`);
``tests/test_trends.py`` proves the two agree. The Prometheus rules
express the same definitions in PromQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "SQL_RUN_TOTAL",
    "DurationStats",
    "ItemCounts",
    "duration_stats",
    "parallel_efficiency",
    "percentile",
    "percentile_at",
    "run_total",
    "success_rate",
]

# A run's item total: total_items, or the items it counted when total_items is missing (the
# model guarantees the counts never exceed total_items), as exporter.prometheus.series counts
# them; a run without counts contributes 0.
SQL_RUN_TOTAL: Final = (
    "MAX(COALESCE(f.total_items, 0), COALESCE(f.success_count, 0) "
    "+ COALESCE(f.failure_count, 0) + COALESCE(f.partial_count, 0))"
)


def run_total(
    total_items: int | None, success: int | None, failure: int | None, partial: int | None
) -> int:
    """A run's item total in Python: :data:`SQL_RUN_TOTAL` over values."""
    return max(total_items or 0, (success or 0) + (failure or 0) + (partial or 0))


def parallel_efficiency(item_seconds: float | None, wall_seconds: float | None) -> float | None:
    """Item seconds over wall seconds; ``None`` when either was not recorded (or is zero)."""
    if item_seconds is None or not wall_seconds:
        return None
    return item_seconds / wall_seconds


def success_rate(success: int, total: int) -> float | None:
    """Successful items over all items; ``None`` (no data) when there are no items."""
    return success / total if total > 0 else None


@dataclass(frozen=True, slots=True)
class ItemCounts:
    """Item counts summed over runs; :attr:`success_rate` is the shared definition."""

    total: int = 0
    success: int = 0
    failure: int = 0
    partial: int = 0

    @property
    def success_rate(self) -> float | None:
        return success_rate(self.success, self.total)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ascending ``ordered``, interpolating between closest ranks.

    The same method as numpy's default (``linear``): the median of an even count is the mean of
    the two middle values, as :func:`statistics.median` gives it.
    """
    return percentile_at(len(ordered), q, ordered.__getitem__)


def percentile_at(count: int, q: float, value_at: Callable[[int], float]) -> float:
    """:func:`percentile` of ``count`` ascending values, of which it reads only the one or two
    it needs, by rank (0-based) through ``value_at``: for values kept in an ordered index."""
    if count <= 0:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1")
    position = (count - 1) * q
    low = math.floor(position)
    fraction = position - low
    below = value_at(low)
    if fraction == 0.0:
        return below
    return below + (value_at(min(low + 1, count - 1)) - below) * fraction


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Statistics of the recorded durations of one operation, in seconds."""

    count: int
    mean: float
    median: float
    min: float
    max: float
    p95: float


def duration_stats(durations: Iterable[float | None]) -> DurationStats | None:
    """Statistics over the durations that were recorded; ``None`` when none were."""
    ordered = sorted(d for d in durations if d is not None)
    if not ordered:
        return None
    return DurationStats(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        median=percentile(ordered, 0.5),
        min=ordered[0],
        max=ordered[-1],
        p95=percentile(ordered, 0.95),
    )
