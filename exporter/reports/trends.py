"""Trends across archived batch runs: the report computed from the index's figures.

:func:`compute_trends` reads, for every run (of one operation), the totals the archive index
keeps current (:mod:`exporter.index.rollups`) and a few lookups in its ordered indexes for extremes
and quantiles: a report over a hundred thousand runs costs milliseconds once the index is
warm. A selection by time (``--since``, ``--recent``) is aggregated with the same definitions
in SQL over the selected rows. The figures
follow :mod:`exporter.index.stats` (the shared definitions) and the bottleneck rules come from
:func:`exporter.signals.thresholds.load_thresholds`, the file the alert rules are generated from.

Where this differs from the seed's ``trend-analysis.py`` (documented in docs/architecture.md):
``recent`` means the N most recent runs by start time, not the last N file names; a run with no
duration is left out of duration statistics instead of counting as 0 s; an operation without
items has no success rate (``None``) instead of 0 %.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from exporter.index.figures import Row, figures_from_scan, figures_from_totals, read_elsewhere
from exporter.index.stats import DurationStats, ItemCounts, parallel_efficiency
from exporter.index.store import ArchiveIndex, RecordFilter
from exporter.reports.bottlenecks import find_bottlenecks
from exporter.reports.results import (
    CostFigures,
    ErrorTypeFigures,
    ModelFigures,
    OperationTrend,
    ParallelFigures,
    Selection,
    StageFigures,
    TokenFigures,
    TrendReport,
)
from exporter.signals.thresholds import Thresholds
from instrumentation.semconv import OPERATIONS

__all__ = ["compute_trends"]


_OP_RANK: Final[dict[str, int]] = {op: rank for rank, op in enumerate(OPERATIONS)}


def _op_order(operation: str) -> tuple[int, str]:
    return (_OP_RANK.get(operation, len(_OP_RANK)), operation)


def _stage_figures(rows: Iterable[Row]) -> dict[str, list[StageFigures]]:
    by_op: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_op[row["operation"]].append(row)
    result: dict[str, list[StageFigures]] = {}
    for operation, stages in by_op.items():
        overall = sum(s["duration_seconds"] for s in stages)
        result[operation] = [
            StageFigures(
                stage=s["stage"],
                runs=s["rows"],
                total_seconds=s["duration_seconds"],
                mean_seconds=s["duration_seconds"] / s["rows"],
                share=s["duration_seconds"] / overall if overall > 0 else 0.0,
            )
            for s in sorted(stages, key=lambda s: (s["stage"] is None, s["stage"] or 0))
        ]
    return result


def _operation(row: Row, stages: dict[str, list[StageFigures]]) -> OperationTrend:
    """One operation's row of :class:`~exporter.index.figures.Figures` as an OperationTrend."""
    op, runs, timed = row["operation"], row["rows"], row["durations"]
    items = ItemCounts(row["items"], row["success"], row["failure"], row["partial"])
    tok_runs, tok_total = row["runs_with_tokens"], row["total_tokens"]
    cost_runs, cost = row["runs_priced"], row["cost_usd"]
    par_runs = row["runs_with_efficiency"]
    return OperationTrend(
        operation=op,
        runs=runs,
        batches=row["batches"],
        runs_without_duration=runs - timed,
        durations=DurationStats(
            count=timed,
            mean=row["duration_seconds"] / timed,
            median=row["median"],
            min=row["shortest"],
            max=row["longest"],
            p95=row["p95"],
        )
        if timed
        else None,
        items=items,
        success_rate=items.success_rate,
        tokens=TokenFigures(
            runs_with_tokens=tok_runs,
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            total_tokens=tok_total,
            mean_per_run=tok_total / tok_runs if tok_runs else None,
        ),
        cost=CostFigures(
            runs_priced=cost_runs,
            runs_unpriced=row["runs_unpriced"],
            cost_usd=cost if cost_runs else 0.0,
            mean_per_run=cost / cost_runs if cost_runs else None,
        ),
        parallel=ParallelFigures(
            runs=par_runs,
            mean_efficiency=row["efficiency_sum"] / par_runs,
            overall_efficiency=parallel_efficiency(
                row["item_seconds"] if row["runs_with_item_time"] else None,
                row["duration_seconds"] if timed else None,
            ),
            seconds_saved=row["seconds_saved"],
        )
        if par_runs
        else None,
        stages=stages.get(op, []),
    )


def compute_trends(
    index: ArchiveIndex,
    thresholds: Thresholds,
    where: RecordFilter | None = None,
    *,
    now: datetime | None = None,
) -> TrendReport:
    """The trend report over the records ``where`` selects (all valid records by default).

    Over every record, or every record of one operation, the figures come from the totals the
    index keeps (:mod:`exporter.index.rollups`); a selection by time is aggregated when asked.
    """
    where = where or RecordFilter()
    if where.since is None and where.recent is None:
        figures = figures_from_totals(index, where.operation)
    else:
        figures = figures_from_scan(index, where)
    stages = _stage_figures(figures.stages)
    rows = sorted(figures.operations, key=lambda r: _op_order(r["operation"]))
    operations = {row["operation"]: _operation(row, stages) for row in rows}
    models = [
        ModelFigures(
            operation=m["operation"],
            model=m["model"],
            runs=m["rows"],
            input_tokens=m["input_tokens"],
            output_tokens=m["output_tokens"],
            cache_read_tokens=m["cache_read_tokens"],
            cost_usd=m["cost_usd"] if m["runs_priced"] else None,
            runs_unpriced=m["runs_unpriced"],
        )
        for m in sorted(figures.models, key=lambda m: (_op_order(m["operation"]), m["model"]))
    ]
    by_type: dict[str, dict[str, int]] = defaultdict(dict)
    for e in figures.errors:
        by_type[e["error_type"]][e["operation"]] = e["rows"]
    errors = sorted(
        (
            ErrorTypeFigures(error_type=t, count=sum(ops.values()), by_operation=ops)
            for t, ops in by_type.items()
        ),
        key=lambda e: (-e.count, e.error_type),
    )
    first = min((r["first_run"] for r in rows), default=None)
    last = max((r["last_run"] for r in rows), default=None)
    return TrendReport(
        generated_at=now or datetime.now(UTC),
        archive=str(index.archive),
        selection=Selection(
            operation=where.operation,
            since=datetime.fromtimestamp(where.since, UTC) if where.since is not None else None,
            recent=where.recent,
        ),
        records=sum(t.runs for t in operations.values()),
        invalid_files=index.invalid_files(),
        first_run=datetime.fromtimestamp(first, UTC) if first is not None else None,
        last_run=datetime.fromtimestamp(last, UTC) if last is not None else None,
        operations=operations,
        models=models,
        errors=errors,
        bottlenecks=find_bottlenecks(operations, thresholds),
        read_elsewhere=read_elsewhere(index, where),
    )
