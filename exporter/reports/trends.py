"""Trends across archived batch runs: figures, bottlenecks and the markdown report.

:func:`compute_trends` reads, for every run (of one operation), the totals the archive index
keeps current (:mod:`exporter.index.rollups`) and a few lookups in its ordered indexes for extremes
and quantiles: a report over a hundred thousand runs costs milliseconds once the index is
warm. A selection by time (``--since``, ``--recent``) is aggregated with the same definitions
in SQL over the selected rows. The figures
follow :mod:`exporter.reports.stats` (the shared definitions) and the bottleneck rules come from
:func:`exporter.signals.thresholds.load_thresholds`, the file the alert rules are generated from.

Where this differs from the seed's ``trend-analysis.py`` (documented in docs/architecture.md):
``recent`` means the N most recent runs by start time, not the last N file names; a run with no
duration is left out of duration statistics instead of counting as 0 s; an operation without
items has no success rate (``None``) instead of 0 %.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dateutil import parser as date_parser
from pydantic import BaseModel, ConfigDict

from exporter.index.rollups import (
    ERROR_TOTALS,
    MODEL_TOTALS,
    OPERATION_TOTALS,
    STAGE_TOTALS,
    Rollup,
)
from exporter.index.store import ArchiveIndex, RecordFilter, Snapshot, SumOverflowError
from exporter.reports.stats import (
    DurationStats,
    ItemCounts,
    parallel_efficiency,
    percentile,
    percentile_at,
)
from exporter.signals.thresholds import Thresholds
from instrumentation.semconv import OPERATIONS

__all__ = [
    "BottleneckFinding",
    "CostFigures",
    "ErrorTypeFigures",
    "ModelFigures",
    "OperationTrend",
    "ParallelFigures",
    "Selection",
    "StageFigures",
    "TokenFigures",
    "TrendReport",
    "compute_trends",
    "find_bottlenecks",
    "parse_since",
    "render_markdown",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class TokenFigures(_Out):
    """Token totals over the runs that reported token usage."""

    runs_with_tokens: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    mean_per_run: float | None


class CostFigures(_Out):
    """USD over the runs with a cost; runs with tokens but no price are counted apart."""

    runs_priced: int
    runs_unpriced: int
    cost_usd: float
    mean_per_run: float | None


class ParallelFigures(_Out):
    """``parallel_efficiency`` = item time / wall time (1.0 = no speedup)."""

    runs: int
    mean_efficiency: float
    # summed item time over summed wall time (exporter.reports.stats), as the Prometheus panel
    # shows it
    overall_efficiency: float | None
    # item time minus wall time, summed over the runs that also recorded a duration
    seconds_saved: float


class StageFigures(_Out):
    stage: int | None
    runs: int
    total_seconds: float
    mean_seconds: float
    share: float  # of the operation's summed stage time


class OperationTrend(_Out):
    operation: str
    runs: int
    batches: int
    runs_without_duration: int
    durations: DurationStats | None
    items: ItemCounts
    success_rate: float | None  # None: no items recorded ("no data")
    tokens: TokenFigures
    cost: CostFigures
    parallel: ParallelFigures | None
    stages: list[StageFigures]

    @property
    def hot_spot(self) -> StageFigures | None:
        """The stage with the largest share of the operation's stage time."""
        return max(self.stages, key=lambda s: s.total_seconds, default=None)


class ModelFigures(_Out):
    operation: str
    model: str
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float | None  # None when no run of this model was priced
    runs_unpriced: int


class ErrorTypeFigures(_Out):
    error_type: str
    count: int
    by_operation: dict[str, int]


class BottleneckFinding(_Out):
    name: str
    operation: str
    signal: str
    value: float
    comparison: str
    threshold: float
    severity: str
    summary: str
    recommendation: str


class Selection(_Out):
    operation: str | None = None
    since: datetime | None = None
    recent: int | None = None


class TrendReport(_Out):
    generated_at: datetime
    archive: str
    selection: Selection
    records: int
    invalid_files: dict[str, str]
    first_run: datetime | None
    last_run: datetime | None
    operations: dict[str, OperationTrend]
    models: list[ModelFigures]
    errors: list[ErrorTypeFigures]
    bottlenecks: list[BottleneckFinding]


# -- gathering the figures -----------------------------------------------------------------

_OP_RANK: Final[dict[str, int]] = {op: rank for rank, op in enumerate(OPERATIONS)}


def _op_order(operation: str) -> tuple[int, str]:
    return (_OP_RANK.get(operation, len(_OP_RANK)), operation)


# Per operation, what sums cannot give: computed over a selection, or read for one operation
# from the index's ordered indexes on (operation, ...).
_EXTREMES: Final = {
    "batches": "COUNT(DISTINCT f.batch_id)",
    "first_run": "MIN(f.timestamp)",
    "last_run": "MAX(f.timestamp)",
    "shortest": "MIN(f.duration_seconds)",
    "longest": "MAX(f.duration_seconds)",
}
_ONE_OPERATION: Final = "f.operation = ?1 AND f.invalid_reason IS NULL"
_EXTREMES_OF_ONE_SQL: Final = "SELECT " + ", ".join(  # noqa: S608 (constant SQL)
    f"(SELECT {aggregate} FROM files f WHERE {_ONE_OPERATION})"  # noqa: S608
    for aggregate in _EXTREMES.values()
)
_DURATION_AT_RANK_SQL: Final = (
    f"SELECT f.duration_seconds FROM files f WHERE {_ONE_OPERATION} "  # noqa: S608
    "AND f.duration_seconds IS NOT NULL ORDER BY f.duration_seconds LIMIT 1 OFFSET ?2"
)
_DURATIONS_SQL: Final = (
    "SELECT f.operation, f.duration_seconds FROM files f "
    "WHERE {where} AND f.duration_seconds IS NOT NULL"
)  # sorted in Python: cheaper than SQLite's temporary B-tree for 100k rows


Row = dict[str, Any]
_CHILD_ROLLUPS: Final = (MODEL_TOTALS, STAGE_TOTALS, ERROR_TOTALS)


@dataclass(frozen=True, slots=True)
class _Figures:
    """Rows named by column: OPERATION_TOTALS + _EXTREMES + median and p95, and the totals
    of the other rollups."""

    operations: list[Row]
    models: list[Row]
    stages: list[Row]
    errors: list[Row]


def _named(rollup: Rollup, rows: Iterable[tuple[Any, ...]], extra: Iterable[str] = ()) -> list[Row]:
    columns = (*rollup.columns, *extra)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _read_totals(snap: Snapshot, rollup: Rollup, operation: str | None) -> list[Row]:
    rows = snap.select(
        rollup.read_sql(operation=operation is not None), (operation,) if operation else ()
    )
    overflowed = [row[0] for row in rows if rollup.overflowed(row)]  # keys start with operation
    if overflowed:
        raise SumOverflowError(overflowed)
    return _named(rollup, (row[:-1] for row in rows))


def _from_totals(index: ArchiveIndex, operation: str | None) -> _Figures:
    """Every record (of ``operation``): the maintained totals, and a few indexed lookups."""
    with index.snapshot() as snap:
        operations = _read_totals(snap, OPERATION_TOTALS, operation)
        for row in operations:
            op = row["operation"]
            row.update(zip(_EXTREMES, snap.select(_EXTREMES_OF_ONE_SQL, (op,))[0], strict=True))

            def duration_at(rank: int, op: str = op) -> float:
                return float(snap.select(_DURATION_AT_RANK_SQL, (op, rank))[0][0])

            count = row["durations"]
            row["median"] = percentile_at(count, 0.5, duration_at) if count else None
            row["p95"] = percentile_at(count, 0.95, duration_at) if count else None
        return _Figures(operations, *(_read_totals(snap, r, operation) for r in _CHILD_ROLLUPS))


def _from_scan(index: ArchiveIndex, where: RecordFilter) -> _Figures:
    """The records ``where`` selects: the same sums, computed over them, in one transaction
    (so the durations fetched for the quantiles are those the sums counted)."""
    statements = [
        OPERATION_TOTALS.scan_sql(extra=_EXTREMES.values()),
        _DURATIONS_SQL,
        *(r.scan_sql() for r in _CHILD_ROLLUPS),
    ]
    with index.snapshot() as snap:
        op_rows, duration_rows, *child_rows = [snap.select(sql, where=where) for sql in statements]
    by_op: dict[str, list[float]] = defaultdict(list)
    for op, duration in duration_rows:
        by_op[op].append(duration)
    operations = _named(OPERATION_TOTALS, op_rows, _EXTREMES)
    for row in operations:
        durations = sorted(by_op[row["operation"]])
        row["median"] = percentile(durations, 0.5) if durations else None
        row["p95"] = percentile(durations, 0.95) if durations else None
    return _Figures(
        operations, *(_named(r, rows) for r, rows in zip(_CHILD_ROLLUPS, child_rows, strict=True))
    )


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
    """One operation's row of :class:`_Figures` as an OperationTrend."""
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


def find_bottlenecks(
    operations: dict[str, OperationTrend], thresholds: Thresholds
) -> list[BottleneckFinding]:
    """Each operation's signals checked against each rule of the shared thresholds file."""
    found: list[BottleneckFinding] = []
    for op, trend in operations.items():
        for rule in thresholds.bottlenecks:
            value: float | None
            if rule.signal == "mean_duration_seconds":
                d = trend.durations
                value = d.mean if d else None
                evidence = f"mean {d.mean:.0f}s over {d.count} runs" if d else ""
            else:
                value = trend.success_rate
                i = trend.items
                evidence = (
                    f"{i.success} of {i.total} items succeeded, {i.failure} failed, "
                    f"{i.partial} partial"
                )
            if value is None or not rule.flags(value):
                continue
            found.append(
                BottleneckFinding(
                    name=rule.name,
                    operation=op,
                    signal=rule.signal,
                    value=value,
                    comparison=rule.comparison,
                    threshold=rule.threshold,
                    severity=rule.severity,
                    summary=rule.summary.replace("{operation}", op),
                    recommendation=f"{rule.recommendation.replace('{operation}', op)} ({evidence})",
                )
            )
    return found


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
        figures = _from_totals(index, where.operation)
    else:
        figures = _from_scan(index, where)
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
    )


# -- --since -------------------------------------------------------------------------------

_RELATIVE: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``2w`` (before ``now``) or an ISO 8601 date/time; ValueError otherwise."""
    text = text.strip()
    match = _RELATIVE.fullmatch(text)
    now = now or datetime.now(UTC)
    if match:
        return now - timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        when = date_parser.isoparse(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"--since {text[:40]!r}: expected a duration like 7d, 12h, 2w or an ISO date"
        ) from exc
    return when if when.tzinfo else when.astimezone()


# -- markdown ------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.0f}s"


def _rate(value: float | None) -> str:
    return "no data (no items recorded)" if value is None else f"{value:.1%}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _durations_section(report: TrendReport) -> list[str]:
    lines = ["## Operation Durations"]
    for op, t in report.operations.items():
        lines.append(f"\n### {op.capitalize()}")
        d = t.durations
        if d is None:
            lines.append(f"- No durations recorded ({t.runs} runs)")
            continue
        lines += [
            f"- Mean: {_seconds(d.mean)} ({d.mean / 60:.1f} min)",
            f"- Median: {_seconds(d.median)}",
            f"- p95: {_seconds(d.p95)}",
            f"- Range: {_seconds(d.min)} - {_seconds(d.max)}",
            f"- Count: {d.count}",
        ]
        if t.runs_without_duration:
            lines.append(
                f"- Runs without a recorded duration (left out): {t.runs_without_duration}"
            )
    return lines


def _success_section(report: TrendReport) -> list[str]:
    lines = ["\n## Success Rates"]
    for op, t in report.operations.items():
        lines += [
            f"\n### {op.capitalize()}",
            f"- Success Rate: {_rate(t.success_rate)}",
            f"- Total Items: {t.items.total}",
            f"- Successful: {t.items.success}",
            f"- Failed: {t.items.failure}",
            f"- Partial: {t.items.partial}",
        ]
    return lines


def _bottleneck_section(report: TrendReport) -> list[str]:
    lines = ["\n## Identified Bottlenecks"]
    if not report.bottlenecks:
        return [*lines, "\nNo bottlenecks identified."]
    for b in report.bottlenecks:
        lines += [
            f"\n### {b.name}",
            f"- Operation: {b.operation}",
            f"- Severity: {b.severity}",
            f"- Signal: {b.signal} = {b.value:.4g} ({b.comparison} {b.threshold:g})",
            f"- Recommendation: {b.recommendation}",
        ]
    return lines


def _cost_section(report: TrendReport) -> list[str]:
    lines = [
        "\n## Token Usage and Cost",
        "\n| Operation | Runs with tokens | Input | Output | Total | Mean / run | Cost | "
        "Cost / run | Unpriced runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op, t in report.operations.items():
        tok, cost = t.tokens, t.cost
        mean_tok = f"{tok.mean_per_run:,.0f}" if tok.mean_per_run is not None else "-"
        mean_cost = _usd(cost.mean_per_run) if cost.mean_per_run is not None else "-"
        lines.append(
            f"| {op} | {tok.runs_with_tokens} | {tok.input_tokens:,} | {tok.output_tokens:,} | "
            f"{tok.total_tokens:,} | {mean_tok} | {_usd(cost.cost_usd)} | {mean_cost} | "
            f"{cost.runs_unpriced} |"
        )
    if report.models:
        lines += [
            "\n### By model",
            "\n| Operation | Model | Runs | Input | Output | Cache read | Cost |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for m in report.models:
            cost_text = "unpriced" if m.cost_usd is None else _usd(m.cost_usd)
            if m.cost_usd is not None and m.runs_unpriced:
                cost_text += f" (+{m.runs_unpriced} unpriced runs)"
            lines.append(
                f"| {m.operation} | {m.model} | {m.runs} | {m.input_tokens:,} | "
                f"{m.output_tokens:,} | {m.cache_read_tokens:,} | {cost_text} |"
            )
    return lines


def _errors_section(report: TrendReport) -> list[str]:
    lines = ["\n## Error Types"]
    if not report.errors:
        return [*lines, "\nNo errors recorded."]
    lines += ["\n| Rank | Error type | Count | By operation |", "|---:|---|---:|---|"]
    for rank, e in enumerate(report.errors, start=1):
        ops = ", ".join(f"{op} {n}" for op, n in sorted(e.by_operation.items()))
        lines.append(f"| {rank} | {e.error_type} | {e.count} | {ops} |")
    return lines


def _stage_section(report: TrendReport) -> list[str]:
    lines = ["\n## Stage Hot Spots"]
    spots = [(op, t.hot_spot) for op, t in report.operations.items() if t.hot_spot]
    if not spots:
        return [*lines, "\nNo stage durations recorded."]
    for op, spot in spots:
        assert spot is not None
        stage = "unstaged" if spot.stage is None else f"stage {spot.stage}"
        lines.append(
            f"- {op}: {stage} takes {spot.share:.0%} of stage time "
            f"(mean {_seconds(spot.mean_seconds)} over {spot.runs} runs)"
        )
    return lines


def _parallel_section(report: TrendReport) -> list[str]:
    lines = ["\n## Parallel Efficiency"]
    rows = [(op, t.parallel) for op, t in report.operations.items() if t.parallel]
    if not rows:
        return [*lines, "\nNo parallel efficiency recorded."]
    for op, p in rows:
        assert p is not None
        overall = "" if p.overall_efficiency is None else f" ({p.overall_efficiency:.2f}x overall)"
        lines.append(
            f"- {op}: mean {p.mean_efficiency:.2f}x over {p.runs} runs{overall}, "
            f"{p.seconds_saved / 3600:.1f} h saved against running items one after another"
        )
    return lines


def render_markdown(report: TrendReport) -> str:
    """The seed's report (durations, success rates, bottlenecks) plus the added sections."""
    lines = ["# Batch Operations Trend Analysis", f"\nAnalyzed {report.records} batch operations"]
    if report.first_run and report.last_run:
        lines.append(
            f"from {report.first_run:%Y-%m-%d %H:%M} to {report.last_run:%Y-%m-%d %H:%M} UTC"
        )
    if report.invalid_files:
        lines.append(f"({len(report.invalid_files)} invalid files skipped)")
    lines.append("")
    for section in (
        _durations_section,
        _success_section,
        _bottleneck_section,
        _cost_section,
        _errors_section,
        _stage_section,
        _parallel_section,
    ):
        lines += section(report)
    return "\n".join(lines) + "\n"
