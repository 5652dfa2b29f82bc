"""Bottlenecks: each operation's figures checked against the shared thresholds file's rules."""

from __future__ import annotations

from exporter.reports.results import BottleneckFinding, OperationTrend
from exporter.signals.thresholds import Thresholds

__all__ = ["find_bottlenecks"]


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
