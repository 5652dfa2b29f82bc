"""Trends across archived batch runs: figures, bottlenecks and the markdown report.

:func:`compute_trends` reads the archive index with SQL aggregates (one ``GROUP BY`` per
section) and fetches only the per-run durations it needs for the median and p95, so a report
over a hundred thousand runs costs a fraction of a second once the index is warm. The figures
follow :mod:`exporter.stats` (the shared definitions) and the bottleneck rules come from
:func:`exporter.thresholds.load_thresholds`, the file the alert rules are generated from.

Where this differs from the seed's ``trend-analysis.py`` (documented in docs/architecture.md):
``recent`` means the N most recent runs by start time, not the last N file names; a run with no
duration is left out of duration statistics instead of counting as 0 s; an operation without
items has no success rate (``None``) instead of 0 %.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dateutil import parser as date_parser
from pydantic import BaseModel, ConfigDict

from exporter.index import ArchiveIndex, RecordFilter
from exporter.stats import (
    SQL_DURATION_AGGREGATES,
    SQL_ITEM_AGGREGATES,
    SQL_PARALLEL_AGGREGATES,
    DurationStats,
    ItemCounts,
    parallel_efficiency,
    percentile,
)
from exporter.thresholds import Thresholds
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
    # summed item time over summed wall time (exporter.stats), as the Prometheus panel shows it
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


# -- queries -------------------------------------------------------------------------------

_OPERATION_SQL: Final = f"""
SELECT f.operation, COUNT(*), COUNT(DISTINCT f.batch_id), MIN(f.timestamp), MAX(f.timestamp),
       {SQL_DURATION_AGGREGATES}, {SQL_ITEM_AGGREGATES},
       COUNT(COALESCE(f.total_tokens, f.input_tokens, f.output_tokens)),
       COALESCE(SUM(f.input_tokens), 0), COALESCE(SUM(f.output_tokens), 0),
       COALESCE(SUM(COALESCE(f.total_tokens,
                             COALESCE(f.input_tokens, 0) + COALESCE(f.output_tokens, 0))), 0),
       COUNT(f.estimated_cost), COALESCE(SUM(f.estimated_cost), 0),
       SUM(f.estimated_cost IS NULL
           AND COALESCE(f.total_tokens, f.input_tokens, f.output_tokens) > 0),
       COUNT(f.parallel_efficiency), AVG(f.parallel_efficiency),
       COALESCE(SUM((f.parallel_efficiency - 1) * f.duration_seconds), 0),
       {SQL_PARALLEL_AGGREGATES}
FROM files f WHERE {{where}} GROUP BY f.operation
"""  # noqa: S608 (constant fragments; values are bound parameters)

_DURATIONS_SQL: Final = (
    "SELECT f.operation, f.duration_seconds FROM files f "
    "WHERE {where} AND f.duration_seconds IS NOT NULL"
)  # sorted in Python: cheaper than SQLite's temporary B-tree for 100k rows

_MODELS_SQL: Final = """
SELECT f.operation, m.model, COUNT(*), SUM(m.input_tokens), SUM(m.output_tokens),
       SUM(m.cache_read_tokens), SUM(m.cost_usd), SUM(m.cost_usd IS NULL)
FROM models m JOIN files f ON f.id = m.file_id WHERE {where}
GROUP BY f.operation, m.model
"""

_ERRORS_SQL: Final = """
SELECT e.error_type, f.operation, COUNT(*)
FROM errors e JOIN files f ON f.id = e.file_id WHERE {where}
GROUP BY e.error_type, f.operation
"""

_STAGES_SQL: Final = """
SELECT f.operation, s.stage, COUNT(s.duration_seconds), SUM(s.duration_seconds)
FROM stages s JOIN files f ON f.id = s.file_id WHERE {where} AND s.duration_seconds IS NOT NULL
GROUP BY f.operation, s.stage
"""


_OP_RANK: Final[dict[str, int]] = {op: rank for rank, op in enumerate(OPERATIONS)}


def _op_order(operation: str) -> tuple[int, str]:
    return (_OP_RANK.get(operation, len(_OP_RANK)), operation)


def _median_p95(rows: Iterable[tuple[Any, ...]]) -> dict[str, tuple[float, float]]:
    by_op: dict[str, list[float]] = defaultdict(list)
    for operation, duration in rows:
        by_op[operation].append(duration)
    for durations in by_op.values():
        durations.sort()
    return {op: (percentile(d, 0.5), percentile(d, 0.95)) for op, d in by_op.items()}


def _stages(selected: Iterable[tuple[Any, ...]]) -> dict[str, list[StageFigures]]:
    rows: dict[str, list[tuple[int | None, int, float]]] = defaultdict(list)
    for operation, stage, runs, total in selected:
        rows[operation].append((stage, runs, total))
    result: dict[str, list[StageFigures]] = {}
    for operation, stages in rows.items():
        overall = sum(total for _, _, total in stages)
        result[operation] = [
            StageFigures(
                stage=stage,
                runs=runs,
                total_seconds=total,
                mean_seconds=total / runs,
                share=total / overall if overall > 0 else 0.0,
            )
            for stage, runs, total in sorted(stages, key=lambda s: (s[0] is None, s[0] or 0))
        ]
    return result


def _operation(
    row: tuple[Any, ...],
    quantiles: dict[str, tuple[float, float]],
    stages: dict[str, list[StageFigures]],
) -> OperationTrend:
    """One row of ``_OPERATION_SQL`` (columns in its order) as an OperationTrend."""
    op, runs, batches, _first, _last, d_count, d_mean, d_min, d_max = row[:9]
    items = ItemCounts(*row[9:13])
    tok_runs, tok_in, tok_out, tok_total, cost_runs, cost, unpriced = row[13:20]
    par_runs, par_mean, par_saved, item_seconds, wall_seconds = row[20:25]
    durations = None
    if d_count:
        median, p95 = quantiles[op]
        durations = DurationStats(
            count=d_count, mean=d_mean, median=median, min=d_min, max=d_max, p95=p95
        )
    return OperationTrend(
        operation=op,
        runs=runs,
        batches=batches,
        runs_without_duration=runs - d_count,
        durations=durations,
        items=items,
        success_rate=items.success_rate,
        tokens=TokenFigures(
            runs_with_tokens=tok_runs,
            input_tokens=tok_in,
            output_tokens=tok_out,
            total_tokens=tok_total,
            mean_per_run=tok_total / tok_runs if tok_runs else None,
        ),
        cost=CostFigures(
            runs_priced=cost_runs,
            runs_unpriced=unpriced or 0,
            cost_usd=cost,
            mean_per_run=cost / cost_runs if cost_runs else None,
        ),
        parallel=ParallelFigures(
            runs=par_runs,
            mean_efficiency=par_mean,
            overall_efficiency=parallel_efficiency(item_seconds, wall_seconds),
            seconds_saved=par_saved,
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
    """The trend report over the records ``where`` selects (all valid records by default)."""
    where = where or RecordFilter()
    op_rows, duration_rows, stage_rows, model_rows, error_rows = index.select_many(
        [_OPERATION_SQL, _DURATIONS_SQL, _STAGES_SQL, _MODELS_SQL, _ERRORS_SQL], where
    )
    quantiles = _median_p95(duration_rows)
    stages = _stages(stage_rows)
    rows = sorted(op_rows, key=lambda r: _op_order(r[0]))
    operations = {row[0]: _operation(row, quantiles, stages) for row in rows}
    models = [
        ModelFigures(
            operation=op,
            model=model,
            runs=runs,
            input_tokens=tin,
            output_tokens=tout,
            cache_read_tokens=tcache,
            cost_usd=cost,
            runs_unpriced=unpriced,
        )
        for op, model, runs, tin, tout, tcache, cost, unpriced in sorted(
            model_rows, key=lambda r: (_op_order(r[0]), r[1])
        )
    ]
    by_type: dict[str, dict[str, int]] = defaultdict(dict)
    for error_type, op, count in error_rows:
        by_type[error_type][op] = count
    errors = sorted(
        (
            ErrorTypeFigures(error_type=t, count=sum(ops.values()), by_operation=ops)
            for t, ops in by_type.items()
        ),
        key=lambda e: (-e.count, e.error_type),
    )
    first = min((r[3] for r in rows), default=None)
    last = max((r[4] for r in rows), default=None)
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
