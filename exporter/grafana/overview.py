"""The *overview* dashboard: the history of batch operations, for the engineer on call.

From the top: is the exporter healthy (else every other panel may be stale), are the alerting
signals over their thresholds, what happened over time (runs by outcome, failures, p95
duration against the 600 s line), what it cost (spend per day, per run, by model, cache
reads), which errors dominate and how they move, which stages are slow, and the alerts firing.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.grafana import queries as q
from exporter.grafana.board import (
    OVERVIEW_UID,
    above,
    bars,
    dashboard,
    signal_panel,
    stat,
    trend,
)
from exporter.grafana.panels import FULL_WIDTH, Layout, Panel, Query, Threshold
from exporter.prometheus import promql
from exporter.signals.thresholds import Thresholds

__all__ = ["overview_dashboard"]

_DAY: Final = 86_400
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": _DAY, "w": 7 * _DAY}
# The exporter looks at the archive on every scrape (15 s in prometheus.yml) and rescans it
# periodically; a last look older than this means scrapes stopped reaching it.
_STALE_SCAN_SECONDS: Final = 300


def _window_seconds(window: str) -> int:
    return int(window[:-1]) * _SECONDS[window[-1]]


def _health_row(layout: Layout) -> None:
    health = q.exporter_health()
    layout.add_row(
        "Exporter health: if these are red, every other panel may be stale",
        stat(
            "Exporter scraped",
            "1 when Prometheus' last scrape of `batch-metrics serve` (job "
            f"{q.SCRAPE_JOB}) succeeded, 0 when it failed; no value when no such target.",
            Query(health["up"], "{{instance}}"),
            "short",
            width=5,
            thresholds=above(1, "red", "green"),
        ),
        stat(
            "Archive records",
            "Valid records the figures come from.",
            Query(health["records"], "records"),
            "short",
            width=5,
        ),
        stat(
            "Invalid records",
            "Archive files that are not valid records and were skipped: run `batch-metrics "
            "validate` to name them and say why.",
            Query(health["invalid"], "invalid"),
            "short",
            width=4,
            thresholds=above(1, "green", "orange"),
        ),
        stat(
            "Scan errors",
            "Looks at the archive that failed in the trailing $window (the last good figures "
            "were served meanwhile; see the exporter's log).",
            Query(health["scan_errors"], "errors"),
            "short",
            width=5,
            thresholds=above(1),
        ),
        stat(
            "Last archive scan",
            f"Seconds since the exporter last looked at the archive; red from "
            f"{_STALE_SCAN_SECONDS} s (it looks on every scrape).",
            Query(health["scan_age"], "age"),
            "s",
            width=5,
            thresholds=above(_STALE_SCAN_SECONDS),
        ),
    )


def _runs_row(layout: Layout, thresholds: Thresholds) -> None:
    long_duration = next(
        (b for b in thresholds.bottlenecks if b.signal == "mean_duration_seconds"), None
    )
    limit = long_duration.threshold if long_duration else None
    window = _window_seconds(thresholds.window)
    layout.add_row(
        "Runs over time",
        trend(
            "Runs per hour by outcome",
            "Operation runs finished in each hour, stacked by outcome (success, partial, "
            "failure). A gap is an hour without runs.",
            Query(q.increase(q.OPERATIONS, "outcome", window="1h"), "{{outcome}}"),
            draw="bars",
            stacked=True,
            interval="1h",
        ),
        trend(
            "Failed items per hour",
            "Work items that failed in each hour, per operation. See 'Top error types' for why.",
            Query(
                q.increase(q.ITEMS, "operation", 'outcome="failure"', window="1h"), "{{operation}}"
            ),
            draw="bars",
            stacked=True,
            interval="1h",
        ),
        trend(
            "p95 operation duration",
            "95th percentile of operation durations in the trailing $window, estimated from the "
            "histogram buckets (which include 600 s exactly). The red line is the mean-duration "
            "threshold of exporter/data/thresholds.yaml: a p95 above it means the slowest runs "
            "are past it even when the mean is not.",
            Query(q.quantile(0.95, q.DURATION, "operation"), "{{operation}}"),
            unit="s",
            thresholds=above(limit) if limit is not None else (Threshold(None, "green"),),
            threshold_line=limit is not None,
        ),
        bars(
            "Operation runs by outcome",
            "Runs finished in the trailing $window, per operation and outcome.",
            Query(
                q.increase(q.OPERATIONS, "operation, outcome"), "{{operation}} {{outcome}}", True
            ),
        ),
        bars(
            "Items by outcome",
            "PRPs / work items finished in the trailing $window, per operation and outcome "
            "(success, failure, partial).",
            Query(q.increase(q.ITEMS, "operation, outcome"), "{{operation}} {{outcome}}", True),
        ),
        stat(
            "Last completion",
            "When each operation last finished, whatever its outcome.",
            Query(
                f"max by (operation) ({q.LAST_COMPLETION}{{{q.SELECTED}}}) * 1000", "{{operation}}"
            ),
            "dateTimeFromNow",
        ),
        stat(
            "Time since last success",
            f"Seconds since each operation last finished successfully: orange after a day, red "
            f"after the alert window ({thresholds.window}) without one.",
            Query(
                f"time() - max by (operation) ({q.LAST_SUCCESS}{{{q.SELECTED}}})", "{{operation}}"
            ),
            "s",
            thresholds=(
                Threshold(None, "green"),
                Threshold(_DAY, "orange"),
                Threshold(max(window, _DAY + 1), "red"),
            ),
        ),
    )


def _cost_row(layout: Layout, thresholds: Thresholds) -> None:
    layout.add_row(
        "Tokens and cost",
        trend(
            "Spend per day by model",
            "USD spent each day, per model (priced models only: unpriced ones are listed by "
            "`batch-metrics trends`, never counted as $0).",
            Query(q.increase(q.COST, "model", window="1d"), "{{model}}"),
            unit="currencyUSD",
            draw="bars",
            stacked=True,
            interval="1d",
        ),
        trend(
            "Cost per run by model",
            "USD per run of each operation in the trailing $window, split by model: an "
            "operation's models add up to its cost per run.",
            Query(q.per_run_by_model(q.COST), "{{operation}} {{model}}"),
            unit="currencyUSD",
        ),
        trend(
            "Tokens per run by model",
            "Input + output tokens per run of each operation in the trailing $window, by model.",
            Query(q.per_run_by_model(q.TOKENS, 'type=~"input|output"'), "{{operation}} {{model}}"),
        ),
        trend(
            "Cache-read share of input tokens",
            "Share of input tokens read from the prompt cache in the trailing $window, per "
            "operation and model. Low shares on repeated prompts are what LLM caching (Phase-2 "
            "candidate 1) would raise. No line: no cache reads reported.",
            Query(q.cache_read_share(), "{{operation}} {{model}}"),
            unit="percentunit",
            max=1,
        ),
        *(signal_panel(t, thresholds) for t in thresholds.triggers),
        bars(
            "Tokens by operation, model and type",
            "Tokens used in the trailing $window (input, output, cache reads).",
            Query(
                q.increase(q.TOKENS, "operation, model, type"),
                "{{operation}} {{model}} {{type}}",
                True,
            ),
        ),
        bars(
            "Cost by operation and model",
            "Cost in USD in the trailing $window, priced models only (unpriced models are "
            "listed by `batch-metrics trends`, never counted as $0).",
            Query(q.increase(q.COST, "operation, model"), "{{operation}} {{model}}", True),
            unit="currencyUSD",
        ),
    )


def _errors_and_stages_row(layout: Layout) -> None:
    stage_mean = (
        f"{q.increase(q.STAGE_DURATION + '_sum', 'operation, stage')}"
        f" / {q.increase(q.STAGE_DURATION + '_count', 'operation, stage')}"
    )
    stage_p95 = q.quantile(0.95, q.STAGE_DURATION, "operation, stage")
    layout.add_row(
        "Errors and stages",
        bars(
            "Top error types",
            f"The {q.TOP_ERROR_TYPES} most frequent item error types in the trailing $window, "
            "most frequent first (class names, never messages: `batch-metrics analyze` has "
            "the messages).",
            Query(q.top_errors(), "{{error_type}}", True),
            display="gradient",
            thresholds=(Threshold(None, "orange"),),
        ),
        trend(
            "Error trend",
            f"Errors per hour of the {q.TRENDED_ERROR_TYPES} types most frequent in the "
            "trailing $window.",
            Query(q.error_trend(), "{{error_type}}"),
            draw="bars",
            stacked=True,
            interval="1h",
        ),
        bars(
            "Stage p95 duration",
            "95th percentile of each stage's wall time in the trailing $window. A stage's p95 "
            "far above its mean is a stage with stragglers.",
            Query(stage_p95, "{{operation}} stage {{stage}}", True),
            unit="s",
        ),
        trend(
            "Stage p95 duration over time",
            "The same p95 over the trailing $window, at each point in time.",
            Query(stage_p95, "{{operation}} stage {{stage}}"),
            unit="s",
        ),
        bars(
            "Mean stage duration",
            "Mean wall time of each stage in the trailing $window. A stage as long as its "
            "slowest item means parallel execution worked; compare with the item count.",
            Query(stage_mean, "{{operation}} stage {{stage}}", True),
            unit="s",
        ),
        trend(
            "Parallel efficiency",
            "Seconds of item work per second of wall time in the trailing $window, per "
            "operation: summed item durations over summed run durations (`overall_efficiency` "
            "in `batch-metrics trends --format json`). At the 1.0 line the items gained nothing "
            "from running in parallel stages; N means N items' worth of work per second. Runs "
            "that recorded no item time add wall time but no work; an operation none of whose "
            "runs did shows no line.",
            Query(q.only_selected(promql.parallel_efficiency("$window")), "{{operation}}"),
            unit="suffix:x",
            thresholds=(Threshold(None, "orange"), Threshold(1.0, "green")),
            threshold_line=True,
        ),
    )


def _alerts_row(layout: Layout) -> None:
    layout.add_row(
        "Alerts",
        Panel(
            "alertlist",
            "Batch alerts firing or pending",
            "The provisioned batch-metrics alert rules that are firing or pending now; each "
            "links to its runbook (docs/monitoring-stack.md).",
            (),
            width=FULL_WIDTH,
            height=7,
            options={
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 20,
                "sortOrder": 1,
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": "",
                "folder": None,
                "showInstances": True,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            },
        ),
    )


def overview_dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """History of batch operations: health, signals, runs, cost, errors, stages, alerts."""
    layout = Layout()
    _health_row(layout)
    layout.add_row(
        "Bottlenecks: duration and success rate against the alert thresholds",
        *(signal_panel(b, thresholds) for b in thresholds.bottlenecks),
    )
    _runs_row(layout, thresholds)
    _cost_row(layout, thresholds)
    _errors_and_stages_row(layout)
    _alerts_row(layout)
    return dashboard(
        OVERVIEW_UID,
        "Batch operations: overview",
        "Exporter health; duration, success rate, runs and failures over time; spend, tokens "
        "and cache reads by model; top error types; stage durations; parallel efficiency and "
        "the alerts firing, for batch operations (generate, execute, review, update-context) "
        "from the batch-metrics archive.",
        layout,
        thresholds=thresholds,
        refresh="5m",
    )
