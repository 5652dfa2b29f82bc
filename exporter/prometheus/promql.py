"""The PromQL of each signal, as the Prometheus rules and the Grafana dashboards read it.

The signals are declared once, in :mod:`exporter.signals.catalog` (query, recording rule, Python
evaluator) with their alerts in :mod:`exporter.signals.alerts`; this module keeps the names the
dashboards and tests import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from exporter.signals import catalog
from exporter.signals.catalog import (
    cost_usd_per_run,
    mean_duration,
    parallel_efficiency,
    success_rate,
    tokens_per_run,
)
from exporter.signals.thresholds import Bottleneck, Thresholds, Trigger
from instrumentation import contract

__all__ = [
    "HEARTBEAT_AGE_METRIC",
    "SIGNALS",
    "alert_expr",
    "cost_usd_per_run",
    "mean_duration",
    "parallel_efficiency",
    "recorded_name",
    "stalled_task_expr",
    "success_rate",
    "tokens_per_run",
]

HEARTBEAT_AGE_METRIC: Final = contract.TASK_HEARTBEAT_AGE.prometheus_name

# signal key -> its PromQL over a window (None: all time)
SIGNALS: Final[Mapping[str, Callable[[str | None], str]]] = MappingProxyType(
    {key: signal.query for key, signal in catalog.SIGNALS.items()}
)


def recorded_name(signal: str, window: str) -> str:
    """Name of the recording rule that stores ``signal`` over ``window`` (level:metric:ops)."""
    return catalog.SIGNALS[signal].recorded(window)


def alert_expr(
    bottleneck: Bottleneck | Trigger, thresholds: Thresholds, *, recorded: bool = True
) -> str:
    """The alert condition: the signal (recorded, or inline) compared with its threshold."""
    signal = catalog.SIGNALS[bottleneck.signal]
    window = thresholds.window
    value = signal.recorded(window) if recorded else f"({signal.query(window)})"
    return f"{value} {bottleneck.comparison} {bottleneck.threshold:g}"


def stalled_task_expr(thresholds: Thresholds) -> str:
    """Running tasks whose last heartbeat is older than the orchestrator's stall limit."""
    return f"{HEARTBEAT_AGE_METRIC} > {thresholds.stalled_heartbeat_seconds:g}"
