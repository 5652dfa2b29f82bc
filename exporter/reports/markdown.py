"""The markdown trend report (``.ce/trend-analysis-report.md``), in the seed's section order."""

from __future__ import annotations

from typing import Final

from exporter.reports.results import TrendReport

__all__ = ["render_markdown"]


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


_SHOWN_FILES: Final = 10


def _notes_section(report: TrendReport) -> list[str]:
    """Which records were read from figures outside ``metrics`` (only when some were)."""
    found = report.read_elsewhere
    if not found:
        return []
    shown = [f"{name} ({', '.join(fields)})" for name, fields in list(found.items())[:_SHOWN_FILES]]
    more = f", and {len(found) - _SHOWN_FILES} more" if len(found) > _SHOWN_FILES else ""
    return [
        "\n## Notes",
        f"\n- {len(found)} record(s) had no figure in the seed's place and were read from "
        f"another tool's shape outside `metrics` (a top-level `token_usage`, a `status`): "
        f"{'; '.join(shown)}{more}",
    ]


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
        _notes_section,
    ):
        lines += section(report)
    return "\n".join(lines) + "\n"
