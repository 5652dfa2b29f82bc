"""Every signal batch-metrics alerts on, declared once.

A *signal* is a per-operation figure with an alert threshold in ``exporter/data/thresholds.yaml``
(mean duration, success rate, tokens and cost per run). :data:`SIGNALS` gives each one, under
the key the thresholds file uses, everything every view needs:

* its PromQL over a window (:attr:`Signal.query`), which the Grafana alert rules and panels run;
* the recording rule that stores it (:attr:`Signal.recorded`), which the Prometheus alerts read;
* its Python evaluator over one operation's archive figures (:attr:`Signal.evaluate`), which
  ``trends`` applies to find bottlenecks: the same definition as the PromQL, on the same runs;
* how its value and threshold read in an alert's text.

The exporter's own health and the live heartbeats are watched by :data:`HEALTH` alerts (target
down or absent, scan errors, invalid records, a stale scan, stalled and abandoned tasks, and the
always-firing watchdog), declared here with their query, threshold and texts.
:mod:`exporter.prometheus.rules` and :mod:`exporter.grafana.alerting` only render these into
their engines' formats; :mod:`exporter.prometheus.promql` re-exports the queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from instrumentation import contract

__all__ = [
    "EXPORTER_JOB",
    "SIGNALS",
    "OperationFigures",
    "Signal",
    "cost_usd_per_run",
    "mean_duration",
    "parallel_efficiency",
    "success_rate",
    "tokens_per_run",
]

Comparison = Literal[">", "<"]

# The scrape job of `batch-metrics serve` in prometheus/prometheus.yml: the exporter health
# alerts watch this job (a Pushgateway's pushes are not a live exporter).
EXPORTER_JOB: Final = "batch-metrics"

_DURATION_SUM: Final = contract.DURATION.series("_sum")
_DURATION_COUNT: Final = contract.DURATION.series("_count")
_ITEMS: Final = contract.ITEMS.prometheus_name


# -- PromQL --------------------------------------------------------------------------------


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
    """Item success rate per operation: successful items over all items.

    An operation without a success series (an exporter that does not zero-initialise, or a
    series not yet scraped) still gets a rate, 0 when all its items failed: the missing
    numerator is taken as 0 for every operation that has items, so it cannot hide failures.
    """
    every = _sum_by_operation(_over(_ITEMS, window))
    successful = _sum_by_operation(_over(f'{_ITEMS}{{outcome="success"}}', window))
    return f"({successful} or 0 * {every}) / {every}"


def parallel_efficiency(window: str | None) -> str:
    """Parallel efficiency per operation: item seconds over wall seconds (1.0 = no speed-up).

    The time-weighted figure ``trends`` reports as ``overall_efficiency``. A signal to watch,
    not a bottleneck: no threshold, no alert.
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


# -- the Python side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperationFigures:
    """One operation's totals over the runs a report selected: what the evaluators read.

    The same quantities the Prometheus counters sum: ``duration_seconds`` over the
    ``timed_runs`` that recorded a duration; items by outcome (``items`` is ``total_items``,
    which may exceed the counted outcomes); input + output tokens; priced cost in USD.
    """

    runs: int
    timed_runs: int
    duration_seconds: float
    items: int
    success: int
    failure: int
    partial: int
    tokens: int
    cost_usd: float


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class Signal:
    """One per-operation signal, as PromQL, as a recording rule and as a Python evaluator."""

    key: str  # the `signal:` of a rule in thresholds.yaml
    description: str  # "mean duration of a run", in alert texts
    record: str  # recording rule name, ``{window}`` filled in
    query: Callable[[str | None], str]  # PromQL over a window (None: all time), by operation
    evaluate: Callable[[OperationFigures], float | None]  # None: no data for this operation
    evidence: Callable[[OperationFigures], str]  # the figures behind the value, one line
    value_text: str  # template text of a value held in the template expression ``{value}``
    threshold_text: str  # str.format of the threshold
    unit: str  # Grafana's unit for panels of this signal

    def recorded(self, window: str) -> str:
        """Name of the recording rule that stores this signal over ``window``."""
        return self.record.format(window=window)

    def value_template(self, value: str) -> str:
        """How the value reads in an alert text, ``value`` being the engine's expression."""
        return self.value_text.replace("{value}", value)


SIGNALS: Final[Mapping[str, Signal]] = MappingProxyType(
    {
        s.key: s
        for s in (
            Signal(
                key="mean_duration_seconds",
                description="mean duration of a run",
                record="operation:batch_operation_duration_seconds:mean{window}",
                query=mean_duration,
                evaluate=lambda f: _ratio(f.duration_seconds, f.timed_runs),
                evidence=lambda f: (
                    f"mean {f.duration_seconds / f.timed_runs:.0f}s over {f.timed_runs} runs"
                    if f.timed_runs
                    else "no run recorded a duration"
                ),
                value_text="{{ {value} | humanizeDuration }}",
                threshold_text="{:g} s",
                unit="s",
            ),
            Signal(
                key="success_rate",
                description="item success rate",
                record="operation:batch_items:success_ratio{window}",
                query=success_rate,
                evaluate=lambda f: _ratio(f.success, f.items),
                evidence=lambda f: (
                    f"{f.success} of {f.items} items succeeded, {f.failure} failed, "
                    f"{f.partial} partial"
                ),
                value_text="{{ {value} | humanizePercentage }}",
                threshold_text="{:.0%}",
                unit="percentunit",
            ),
            Signal(
                key="tokens_per_run",
                description="mean input + output tokens per run",
                record="operation:batch_tokens:per_run{window}",
                query=tokens_per_run,
                evaluate=lambda f: _ratio(f.tokens, f.runs),
                evidence=lambda f: f"{f.tokens:,} input + output tokens over {f.runs} runs",
                value_text="{{ {value} | humanize }} tokens",
                threshold_text="{:,.0f} tokens",
                unit="short",
            ),
            Signal(
                key="cost_usd_per_run",
                description="mean priced cost per run",
                record="operation:batch_cost_usd:per_run{window}",
                query=cost_usd_per_run,
                evaluate=lambda f: _ratio(f.cost_usd, f.runs),
                evidence=lambda f: f"${f.cost_usd:,.2f} priced over {f.runs} runs",
                value_text='${{ {value} | printf "%.2f" }}',
                threshold_text="${:.2f}",
                unit="currencyUSD",
            ),
        )
    }
)
