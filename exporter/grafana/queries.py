"""PromQL that only the dashboards use (the alerting signals live in exporter.prometheus.promql).

Every expression is restricted to the ``$operation`` template variable (a regex) where the
metric has an operation, and aggregates over ``$window`` (a PromQL range) unless it is a
rate over a fixed period (per hour, per day), which the panel pairs with an equal
``interval`` so each step is one period. Metric names come from
:mod:`instrumentation.contract`, as ``batch-metrics serve`` exposes them.
"""

from __future__ import annotations

from typing import Final

from instrumentation import contract

__all__ = [
    "COST",
    "DURATION",
    "ERRORS",
    "ITEMS",
    "LAST_COMPLETION",
    "LAST_SUCCESS",
    "OPERATIONS",
    "SCRAPE_JOB",
    "SELECTED",
    "STAGE_DURATION",
    "TOKENS",
    "cache_read_share",
    "error_trend",
    "exporter_health",
    "increase",
    "only_selected",
    "per_run_by_model",
    "quantile",
    "top_errors",
]

OPERATIONS: Final = contract.OPERATIONS.prometheus_name
ITEMS: Final = contract.ITEMS.prometheus_name
DURATION: Final = contract.DURATION.prometheus_name
STAGE_DURATION: Final = contract.STAGE_DURATION.prometheus_name
TOKENS: Final = contract.TOKENS.prometheus_name
COST: Final = contract.COST.prometheus_name
ERRORS: Final = contract.ERRORS.prometheus_name
LAST_COMPLETION: Final = contract.LAST_COMPLETION.prometheus_name
LAST_SUCCESS: Final = contract.LAST_SUCCESS.prometheus_name
# The job that scrapes `batch-metrics serve` in prometheus/prometheus.yml.
SCRAPE_JOB: Final = "batch-metrics"

SELECTED: Final = 'operation=~"$operation"'
TOP_ERROR_TYPES: Final = 10
TRENDED_ERROR_TYPES: Final = 5


def increase(metric: str, by: str, matchers: str = "", window: str = "$window") -> str:
    """The counter's growth over ``window``, summed by ``by``, for the selected operations."""
    selector = f"{metric}{{{SELECTED}{', ' + matchers if matchers else ''}}}"
    return f"sum by ({by}) (increase({selector}[{window}]))"


def only_selected(expr: str, window: str = "$window") -> str:
    """Restrict a per-operation signal from promql (which has no matchers) to ``$operation``.

    The operations are those with a sample in ``window``, not only in the last five minutes
    (an instant selector's look-back): backfilled history has samples only where runs ended,
    and a signal over a window of it must not vanish between them.
    """
    selected = f"last_over_time({OPERATIONS}{{{SELECTED}}}[{window}])"
    return f"({expr}) and on (operation) group by (operation) ({selected})"


def quantile(q: float, histogram: str, by: str, window: str = "$window") -> str:
    """The ``q`` quantile of a histogram's observations in ``window``, estimated from buckets."""
    return (
        f"histogram_quantile({q:g}, sum by ({by}, le) "
        f"(increase({histogram}_bucket{{{SELECTED}}}[{window}])))"
    )


def per_run_by_model(metric: str, matchers: str = "") -> str:
    """A per-model counter's growth per run of its operation in ``$window``.

    The runs are all of the operation's runs (a record does not say which model each run
    used), so the figures of one operation's models add up to its per-run total.
    """
    runs = increase(OPERATIONS, "operation")
    return f"{increase(metric, 'operation, model', matchers)} / on (operation) group_left {runs}"


def cache_read_share() -> str:
    """Cache-read tokens over input tokens (which include cache reads), per operation and model.

    No line for a model whose runs reported no cache reads: unreported is not 0 %.
    """
    reads = increase(TOKENS, "operation, model", 'type="cache_read"')
    inputs = increase(TOKENS, "operation, model", 'type="input"')
    return f"{reads} / {inputs}"


def top_errors() -> str:
    """The most frequent error types in ``$window``, most frequent first."""
    return f"sort_desc(topk({TOP_ERROR_TYPES}, {increase(ERRORS, 'error_type')}))"


def error_trend() -> str:
    """Errors per hour of the types most frequent in ``$window``."""
    hourly = increase(ERRORS, "error_type", window="1h")
    top = f"topk({TRENDED_ERROR_TYPES}, {increase(ERRORS, 'error_type')})"
    return f"{hourly} and on (error_type) {top}"


def exporter_health() -> dict[str, str]:
    """The exporter's own health, by panel: is it scraped, does it read the archive."""
    return {
        "up": f'up{{job="{SCRAPE_JOB}"}}',
        "records": contract.EXPORTER_RECORDS.prometheus_name,
        "invalid": contract.EXPORTER_INVALID_RECORDS.prometheus_name,
        "scan_errors": f"increase({contract.EXPORTER_SCAN_ERRORS.prometheus_name}[$window])",
        "scan_age": f"time() - {contract.EXPORTER_LAST_SCAN_TIMESTAMP.prometheus_name}",
    }
