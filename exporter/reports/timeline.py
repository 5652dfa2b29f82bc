"""Trend figures over time: runs, outcomes, durations, items, tokens and cost per period.

The charts of the HTML report (:mod:`exporter.reports.html`) plot these. Runs are aggregated in
SQL per operation (and model) and per *period* of fixed length, aligned on the Unix epoch
(UTC): an hour, six hours, a day, a week or thirty days, the shortest that keeps a chart at
most :data:`MAX_POINTS` points. A hundred thousand runs thus become a few hundred points and
the page stays small; the tables of the report keep the exact figures over every run.

The sums use the measures of :data:`exporter.index.rollups.OPERATION_TOTALS` and
:data:`~exporter.index.rollups.MODEL_TOTALS`, so the periods of one operation add up to the
report's totals. A run's outcome follows ``exporter.prometheus.series.operation_outcome`` (its
``status``, else its item counts), written here in SQL; a test holds the two equal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from exporter.index.rollups import MODEL_TOTALS, OPERATION_TOTALS
from exporter.index.stats import SQL_RUN_TOTAL
from exporter.index.store import ArchiveIndex, RecordFilter

__all__ = [
    "MAX_POINTS",
    "PERIODS",
    "ModelPoint",
    "OperationPoint",
    "Timeline",
    "compute_timeline",
    "period_for",
]

MAX_POINTS: Final = 200
# (seconds, name of one period), shortest first
PERIODS: Final[tuple[tuple[int, str], ...]] = (
    (3_600, "hour"),
    (21_600, "6 hours"),
    (86_400, "day"),
    (604_800, "7 days"),
    (2_592_000, "30 days"),
)

# The outcome label of a run, as exporter.prometheus.series.operation_outcome gives it.
OUTCOME_SQL: Final = (
    "CASE f.status WHEN 'completed' THEN 'success' WHEN 'partial' THEN 'partial' "
    "WHEN 'failed' THEN 'failure' WHEN 'crashed' THEN 'failure' ELSE "
    f"CASE WHEN COALESCE(f.success_count, 0) >= {SQL_RUN_TOTAL} THEN 'success' "
    "WHEN COALESCE(f.success_count, 0) + COALESCE(f.partial_count, 0) > 0 THEN 'partial' "
    "ELSE 'failure' END END"
)


def _sum(rollup_measure: str) -> str:
    return f"SUM({OPERATION_TOTALS.measure(rollup_measure).expr})"


_PERIOD: Final = "CAST(f.timestamp / ? AS INTEGER)"
_OPERATIONS_SQL: Final = (
    f"SELECT f.operation, {_PERIOD} AS period, COUNT(*), "
    + "".join(f"SUM(({OUTCOME_SQL}) = '{o}'), " for o in ("success", "partial", "failure"))
    + f"{_sum('durations')}, {_sum('duration_seconds')}, MAX(f.duration_seconds), "
    f"{_sum('items')}, {_sum('success')} "
    + "FROM files f WHERE {where} GROUP BY f.operation, period"
)
_MODELS_SQL: Final = (
    f"SELECT f.operation, m.model, {_PERIOD} AS period, "
    + ", ".join(
        f"SUM({MODEL_TOTALS.measure(name).expr.format(r='m')})"
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "runs_priced")
    )
    + f", SUM({MODEL_TOTALS.measure('cost_usd').expr.format(r='m')}) "
    "FROM models m JOIN files f ON f.id = m.file_id WHERE {where} "
    "GROUP BY f.operation, m.model, period"
)
_SPAN_SQL: Final = "SELECT MIN(f.timestamp), MAX(f.timestamp) FROM files f WHERE {where}"


class OperationPoint(NamedTuple):
    """One operation's runs that started in one period (``start``: epoch seconds)."""

    start: float
    runs: int
    success_runs: int
    partial_runs: int
    failure_runs: int
    timed_runs: int
    duration_sum: float
    duration_max: float | None
    items: int
    success_items: int

    @property
    def mean_duration(self) -> float | None:
        return self.duration_sum / self.timed_runs if self.timed_runs else None

    @property
    def success_rate(self) -> float | None:
        """Σ success / Σ items, as exporter.index.stats defines it (None: no items)."""
        return self.success_items / self.items if self.items else None


class ModelPoint(NamedTuple):
    """One model's usage by one operation's runs that started in one period."""

    start: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    runs_priced: int
    cost_usd: float | None  # None: no run of the period was priced

    @property
    def tokens(self) -> int:
        """Input (which includes cache reads) plus output."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per operation (and model), the periods that had runs, oldest first."""

    period_seconds: int
    period_name: str
    operations: dict[str, list[OperationPoint]] = field(default_factory=dict)
    models: dict[str, dict[str, list[ModelPoint]]] = field(default_factory=dict)


def period_for(first: float, last: float, max_points: int = MAX_POINTS) -> tuple[int, str]:
    """The shortest period that spans ``first``..``last`` in at most ``max_points`` periods."""
    for seconds, name in PERIODS:
        if (last // seconds) - (first // seconds) + 1 <= max_points:
            return seconds, name
    return PERIODS[-1]


def compute_timeline(
    index: ArchiveIndex, where: RecordFilter | None = None, *, max_points: int = MAX_POINTS
) -> Timeline:
    """The runs ``where`` selects, aggregated per operation (and model) and period."""
    where = where or RecordFilter()
    with index.snapshot() as snap:
        ((first, last),) = snap.select(_SPAN_SQL, where=where)
        if first is None:
            return Timeline(*PERIODS[2])
        seconds, name = period_for(first, last, max_points)
        op_rows = snap.select(_OPERATIONS_SQL, (seconds,), where=where)
        model_rows = snap.select(_MODELS_SQL, (seconds,), where=where)
    operations: dict[str, list[OperationPoint]] = defaultdict(list)
    for op, period, *values in sorted(op_rows, key=lambda r: (r[0], r[1])):
        operations[op].append(OperationPoint(float(period * seconds), *values))
    models: dict[str, dict[str, list[ModelPoint]]] = defaultdict(lambda: defaultdict(list))
    for op, model, period, inp, out, cache, priced, cost in sorted(
        model_rows, key=lambda r: (r[0], r[1], r[2])
    ):
        models[op][model].append(
            ModelPoint(float(period * seconds), inp, out, cache, priced, cost if priced else None)
        )
    return Timeline(
        seconds,
        name,
        dict(operations),
        {op: dict(by_model) for op, by_model in models.items()},
    )
