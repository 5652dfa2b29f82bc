"""The PromQL for each bottleneck signal, in one place.

``trends`` computes the same signals from the archive (:mod:`exporter.index.stats`); the
generated Prometheus recording and alerting rules and the provisioned Grafana alert rules
all take their expressions from here, with thresholds from exporter/data/thresholds.yaml, so
the three always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

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
_DURATION_SUM: Final = contract.DURATION.series("_sum")
_DURATION_COUNT: Final = contract.DURATION.series("_count")
_ITEMS: Final = contract.ITEMS.prometheus_name


def _sum_by_operation(expr: str) -> str:
    return f"sum by (operation) ({expr})"


def _over(metric: str, window: str | None) -> str:
    """The counter's growth within ``window``, or its all-time value when ``window`` is None."""
    return metric if window is None else f"increase({metric}[{window}])"


def mean_duration(window: str | None) -> str:
    """Mean operation duration per operation: duration sum over operation count."""
    return (
        f"{_sum_by_operation(_over(_DURATION_SUM, window))}"
        f" / {_sum_by_operation(_over(_DURATION_COUNT, window))}"
    )


def success_rate(window: str | None) -> str:
    """Item success rate per operation: successful items over all items."""
    successful = _over(f'{_ITEMS}{{outcome="success"}}', window)
    every = _over(_ITEMS, window)
    return f"{_sum_by_operation(successful)} / {_sum_by_operation(every)}"


def parallel_efficiency(window: str | None) -> str:
    """Parallel efficiency per operation: item seconds over wall seconds (1.0 = no speed-up).

    The time-weighted figure ``trends`` reports as ``overall_efficiency``
    (:mod:`exporter.index.stats`). A signal to watch, not a bottleneck: no threshold, no alert.
    """
    work = _over(contract.ITEM_WORK.prometheus_name, window)
    wall = _over(_DURATION_SUM, window)
    return f"{_sum_by_operation(work)} / {_sum_by_operation(wall)}"


def _per_run(expr: str, window: str | None) -> str:
    runs = _sum_by_operation(_over(contract.OPERATIONS.prometheus_name, window))
    return f"{_sum_by_operation(_over(expr, window))} / {runs}"


def tokens_per_run(window: str | None) -> str:
    """Mean input + output tokens per operation run (decision-framework trigger)."""
    return _per_run(f'{contract.TOKENS.prometheus_name}{{type=~"input|output"}}', window)


def cost_usd_per_run(window: str | None) -> str:
    """Mean priced cost in USD per operation run (decision-framework trigger)."""
    return _per_run(contract.COST.prometheus_name, window)


SIGNALS: Final[dict[str, Callable[[str | None], str]]] = {
    "mean_duration_seconds": mean_duration,
    "success_rate": success_rate,
    "tokens_per_run": tokens_per_run,
    "cost_usd_per_run": cost_usd_per_run,
}

_RECORDED: Final = {
    "mean_duration_seconds": "operation:batch_operation_duration_seconds:mean{window}",
    "success_rate": "operation:batch_items:success_ratio{window}",
    "tokens_per_run": "operation:batch_tokens:per_run{window}",
    "cost_usd_per_run": "operation:batch_cost_usd:per_run{window}",
}


def recorded_name(signal: str, window: str) -> str:
    """Name of the recording rule that stores ``signal`` over ``window`` (level:metric:ops)."""
    return _RECORDED[signal].format(window=window)


def alert_expr(
    bottleneck: Bottleneck | Trigger, thresholds: Thresholds, *, recorded: bool = True
) -> str:
    """The alert condition: the signal (recorded, or inline) compared with its threshold."""
    signal = (
        recorded_name(bottleneck.signal, thresholds.window)
        if recorded
        else f"({SIGNALS[bottleneck.signal](thresholds.window)})"
    )
    return f"{signal} {bottleneck.comparison} {bottleneck.threshold:g}"


def stalled_task_expr(thresholds: Thresholds) -> str:
    """Running tasks whose last heartbeat is older than the orchestrator's stall limit."""
    return f"{HEARTBEAT_AGE_METRIC} > {thresholds.stalled_heartbeat_seconds:g}"
