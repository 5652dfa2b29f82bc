"""Bottlenecks: each operation's figures checked against the shared thresholds file's rules.

A rule's value comes from its signal's evaluator in :mod:`exporter.signals.catalog`, the same
definition as the PromQL the alert rules run, so every signal the thresholds file may name is
computed as what it is (never read as some other signal).
"""

from __future__ import annotations

from exporter.reports.results import BottleneckFinding, OperationTrend
from exporter.signals.catalog import SIGNALS, OperationFigures
from exporter.signals.thresholds import Thresholds

__all__ = ["find_bottlenecks", "operation_figures"]


def operation_figures(trend: OperationTrend) -> OperationFigures:
    """The totals the signals' evaluators read, from one operation's trend figures."""
    d = trend.durations
    items = trend.items
    return OperationFigures(
        runs=trend.runs,
        timed_runs=d.count if d else 0,
        duration_seconds=d.mean * d.count if d else 0.0,
        items=items.total,
        success=items.success,
        failure=items.failure,
        partial=items.partial,
        tokens=trend.tokens.input_tokens + trend.tokens.output_tokens,
        cost_usd=trend.cost.cost_usd,
    )


def find_bottlenecks(
    operations: dict[str, OperationTrend], thresholds: Thresholds
) -> list[BottleneckFinding]:
    """Each operation's signals checked against each rule of the shared thresholds file."""
    found: list[BottleneckFinding] = []
    for op, trend in operations.items():
        figures = operation_figures(trend)
        for rule in thresholds.bottlenecks:
            signal = SIGNALS[rule.signal]
            value = signal.evaluate(figures)
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
                    recommendation=(
                        f"{rule.recommendation.replace('{operation}', op)} "
                        f"({signal.evidence(figures)})"
                    ),
                )
            )
    return found
