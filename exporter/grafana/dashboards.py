"""The two provisioned dashboards, built from code: *overview* (history) and *live* (progress).

The bottleneck panels take their PromQL from :mod:`exporter.prometheus.promql` and their
threshold lines from ``exporter/data/thresholds.yaml``, the same sources as the Prometheus and
Grafana alert rules. Every query uses two template variables only: ``$operation`` (a regex,
``.*`` for All) and ``$window`` (a PromQL range such as ``7d``).
"""

from __future__ import annotations

from typing import Any, Final

from exporter.grafana.panels import DATASOURCE, FULL_WIDTH, Layout, Panel, Query, Threshold
from exporter.prometheus import promql, series
from exporter.signals.thresholds import Bottleneck, Thresholds, Trigger
from instrumentation import contract

__all__ = [
    "DASHBOARD_TAG",
    "LIVE_UID",
    "OVERVIEW_UID",
    "SCHEMA_VERSION",
    "VARIABLES",
    "WINDOW_OPTIONS",
    "live_dashboard",
    "overview_dashboard",
]

SCHEMA_VERSION: Final = 41  # Grafana 12.1's dashboard model
OVERVIEW_UID: Final = "batch-metrics-overview"
LIVE_UID: Final = "batch-metrics-live"
DASHBOARD_TAG: Final = "batch-metrics"
VARIABLES: Final = ("operation", "window")
WINDOW_OPTIONS: Final = ("1h", "6h", "1d", "7d", "30d")
ALL_OPERATIONS: Final = ".*"


def _counter(family: series.Family) -> str:
    return family.name + "_total"


# Metric names of the Prometheus contract, as `batch-metrics serve` exposes them.
_OPERATIONS: Final = _counter(series.OPERATIONS)
_ITEMS: Final = _counter(series.ITEMS)
_DURATION: Final = series.DURATION.name
_STAGE_DURATION: Final = series.STAGE_DURATION.name
_TOKENS: Final = _counter(series.TOKENS)
_COST: Final = _counter(series.COST)
_ERRORS: Final = _counter(series.ERRORS)
_LAST_COMPLETION: Final = series.LAST_COMPLETION.name
_LAST_SUCCESS: Final = series.LAST_SUCCESS.name
# Live gauges: heartbeat files (exporter/prometheus/live.py) and instrumented orchestrators
# (exporter/prometheus/inprocess.py, from contract.OPERATIONS_RUNNING).
_TASKS_RUNNING: Final = contract.TASKS_RUNNING.prometheus_name
_OPERATIONS_RUNNING: Final = contract.OPERATIONS_RUNNING.prometheus_name

_SELECTED: Final = 'operation=~"$operation"'


def _increase(metric: str, by: str, matchers: str = "") -> str:
    selector = f"{metric}{{{_SELECTED}{', ' + matchers if matchers else ''}}}"
    return f"sum by ({by}) (increase({selector}[$window]))"


def _only_selected(expr: str) -> str:
    """Restrict a per-operation signal from promql (which has no matchers) to ``$operation``."""
    return f"({expr}) and on (operation) group by (operation) ({_OPERATIONS}{{{_SELECTED}}})"


# signal -> (panel title, unit)
_SIGNAL_PANELS: Final[dict[str, tuple[str, str]]] = {
    "mean_duration_seconds": ("Mean duration per operation", "s"),
    "success_rate": ("Item success rate per operation", "percentunit"),
    "tokens_per_run": ("Tokens per run (input + output)", "short"),
    "cost_usd_per_run": ("Cost per run", "currencyUSD"),
}


def _signal_panel(rule: Bottleneck | Trigger, thresholds: Thresholds) -> Panel:
    """The time series of an alerting signal with its threshold drawn as a red area."""
    expr = _only_selected(promql.SIGNALS[rule.signal]("$window"))
    steps = (
        (Threshold(None, "green"), Threshold(rule.threshold, "red"))
        if rule.comparison == ">"
        else (Threshold(None, "red"), Threshold(rule.threshold, "green"))
    )
    title, unit = _SIGNAL_PANELS[rule.signal]
    return Panel(
        "timeseries",
        title,
        f"{title} over the trailing $window. The red area is '{rule.name}' ({rule.signal} "
        f"{rule.comparison} {rule.threshold:g}, exporter/data/thresholds.yaml); the alert "
        f"of that name fires after {rule.for_} there, computed over {thresholds.window}. "
        + rule.recommendation.format(operation="the operation")
        + ".",
        (Query(expr, "{{operation}}"),),
        unit=unit,
        thresholds=steps,
        threshold_line=True,
        min=0,
        max=1 if unit == "percentunit" else None,
    )


def _parallel_efficiency_panel() -> Panel:
    """Item-seconds per wall-second; the 1.0 line is "no speed-up", drawn as a threshold."""
    return Panel(
        "timeseries",
        "Parallel efficiency",
        "Seconds of item work per second of wall time in the trailing $window, per operation: "
        "summed item durations over summed run durations (`overall_efficiency` in `batch-metrics "
        "trends --format json`). At the 1.0 line the items gained nothing from running in "
        "parallel stages; N means N items' worth of work per second. Runs that recorded no item "
        "time add wall time but no work; an operation none of whose runs did shows no line.",
        (Query(_only_selected(promql.parallel_efficiency("$window")), "{{operation}}"),),
        unit="suffix:x",
        width=FULL_WIDTH,
        thresholds=(Threshold(None, "orange"), Threshold(1.0, "green")),
        threshold_line=True,
        min=0,
    )


def _bars(title: str, description: str, query: Query, unit: str = "short") -> Panel:
    return Panel(
        "bargauge",
        title,
        description,
        (query,),
        unit=unit,
        options={
            "displayMode": "basic",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
        },
    )


def _stat(title: str, description: str, query: Query, unit: str, **extra: Any) -> Panel:
    return Panel(
        "stat",
        title,
        description,
        (query,),
        unit=unit,
        width=extra.pop("width", 6),
        height=extra.pop("height", 5),
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
            "colorMode": "value",
            "graphMode": "none",
        },
        **extra,
    )


def _variables(thresholds: Thresholds) -> list[dict[str, Any]]:
    windows = list(dict.fromkeys((*WINDOW_OPTIONS, thresholds.window)))
    return [
        {
            "type": "query",
            "name": "operation",
            "label": "Operation",
            "description": "Batch operations to show (regex; All = every operation).",
            "datasource": dict(DATASOURCE),
            "query": f"label_values({_OPERATIONS}, operation)",
            "definition": f"label_values({_OPERATIONS}, operation)",
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ALL_OPERATIONS,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
        },
        {
            "type": "custom",
            "name": "window",
            "label": "Window",
            "description": "Trailing window of every mean, rate and total (the alerts use "
            f"{thresholds.window}).",
            "query": ",".join(windows),
            "current": {"selected": True, "text": thresholds.window, "value": thresholds.window},
            "options": [
                {"selected": w == thresholds.window, "text": w, "value": w} for w in windows
            ],
            "multi": False,
            "includeAll": False,
        },
    ]


def _dashboard(
    uid: str, title: str, description: str, layout: Layout, *, thresholds: Thresholds, refresh: str
) -> dict[str, Any]:
    other = LIVE_UID if uid == OVERVIEW_UID else OVERVIEW_UID
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [DASHBOARD_TAG],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": "now-30d" if uid == OVERVIEW_UID else "now-1h", "to": "now"},
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [
            {
                "title": "Batch metrics dashboards",
                "type": "dashboards",
                "icon": "external link",
                "tooltip": f"Other batch-metrics dashboards ({other})",
                "tags": [DASHBOARD_TAG],
                "asDropdown": False,
                "targetBlank": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "name": "Annotations & Alerts",
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables(thresholds)},
        "panels": layout.panels,
    }


def overview_dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """History of batch operations: bottleneck signals, outcomes, cost, errors, stages."""
    layout = Layout()
    layout.add_row(
        "Bottlenecks: duration and success rate against the alert thresholds",
        *(_signal_panel(b, thresholds) for b in thresholds.bottlenecks),
    )
    p95 = (
        f"histogram_quantile(0.95, sum by (operation, le) "
        f"(increase({_DURATION}_bucket{{{_SELECTED}}}[$window])))"
    )
    layout.add_row(
        "Runs and items",
        _bars(
            "Operation runs by outcome",
            "Runs finished in the trailing $window, per operation and outcome.",
            Query(_increase(_OPERATIONS, "operation, outcome"), "{{operation}} {{outcome}}", True),
        ),
        _bars(
            "Items by outcome",
            "PRPs / work items finished in the trailing $window, per operation and outcome "
            "(success, failure, partial).",
            Query(_increase(_ITEMS, "operation, outcome"), "{{operation}} {{outcome}}", True),
        ),
        Panel(
            "timeseries",
            "p95 operation duration",
            "95th percentile of operation durations in the trailing $window, estimated from "
            "the histogram buckets (which include 600 s exactly).",
            (Query(p95, "{{operation}}"),),
            unit="s",
        ),
        _stat(
            "Last completion",
            "When each operation last finished, whatever its outcome.",
            Query(
                f"max by (operation) ({_LAST_COMPLETION}{{{_SELECTED}}}) * 1000", "{{operation}}"
            ),
            "dateTimeFromNow",
        ),
        _stat(
            "Time since last success",
            "Seconds since each operation last finished successfully.",
            Query(f"time() - max by (operation) ({_LAST_SUCCESS}{{{_SELECTED}}})", "{{operation}}"),
            "s",
        ),
    )
    layout.add_row(
        "Tokens and cost",
        _bars(
            "Tokens by operation, model and type",
            "Tokens used in the trailing $window (input, output, cache reads).",
            Query(
                _increase(_TOKENS, "operation, model, type"),
                "{{operation}} {{model}} {{type}}",
                True,
            ),
        ),
        _bars(
            "Cost by operation and model",
            "Cost in USD in the trailing $window, priced models only (unpriced models are "
            "listed by `batch-metrics trends`, never counted as $0).",
            Query(_increase(_COST, "operation, model"), "{{operation}} {{model}}", True),
            unit="currencyUSD",
        ),
        *(_signal_panel(t, thresholds) for t in thresholds.triggers),
    )
    stage_mean = (
        f"{_increase(_STAGE_DURATION + '_sum', 'operation, stage')}"
        f" / {_increase(_STAGE_DURATION + '_count', 'operation, stage')}"
    )
    layout.add_row(
        "Errors, stages and parallel efficiency",
        _bars(
            "Errors by type",
            "Item errors in the trailing $window, per operation and error type (class names, "
            "never messages: see `batch-metrics analyze` for the messages).",
            Query(
                _increase(_ERRORS, "operation, error_type"), "{{operation}} {{error_type}}", True
            ),
        ),
        _bars(
            "Mean stage duration",
            "Mean wall time of each stage in the trailing $window. A stage as long as its "
            "slowest item means parallel execution worked; compare with the item count.",
            Query(stage_mean, "{{operation}} stage {{stage}}", True),
            unit="s",
        ),
        _parallel_efficiency_panel(),
    )
    return _dashboard(
        OVERVIEW_UID,
        "Batch operations: overview",
        "Duration, success rate, outcomes, tokens, cost, errors, stage durations and parallel "
        "efficiency of batch operations (generate, execute, review, update-context), from the "
        "batch-metrics archive.",
        layout,
        thresholds=thresholds,
        refresh="5m",
    )


def live_dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """Batches running now: running tasks and operations, heartbeat ages, stalled tasks."""
    stalled = thresholds.stalled_heartbeat_seconds
    layout = Layout()
    layout.add_row(
        "Running now",
        _stat(
            "Running tasks",
            "Orchestrator tasks whose heartbeat file says they are running.",
            Query(f"sum({_TASKS_RUNNING}) or vector(0)", "tasks"),
            "short",
            width=8,
        ),
        _stat(
            "Stalled tasks",
            f"Running tasks whose last heartbeat is older than {stalled:g} s "
            "(stalled_heartbeat_seconds in thresholds.yaml; the BatchTaskStalled alert).",
            Query(f"count({promql.stalled_task_expr(thresholds)}) or vector(0)", "stalled"),
            "short",
            width=8,
            thresholds=(Threshold(None, "green"), Threshold(1, "red")),
        ),
        _stat(
            "Running operations",
            "Batch operations in progress in instrumented (Python) orchestrators.",
            Query(f"sum by (operation) ({_OPERATIONS_RUNNING}{{{_SELECTED}}})", "{{operation}}"),
            "short",
            width=8,
        ),
    )
    layout.add_row(
        "Heartbeats",
        Panel(
            "bargauge",
            "Heartbeat age per running task",
            f"Seconds since each running task last wrote its heartbeat; red from {stalled:g} s.",
            (Query(promql.HEARTBEAT_AGE_METRIC, "{{batch_id}} {{task}}", True),),
            unit="s",
            width=24,
            thresholds=(Threshold(None, "green"), Threshold(stalled, "red")),
            options={
                "displayMode": "gradient",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
        ),
        Panel(
            "timeseries",
            "Heartbeat age over time",
            "A line that keeps rising is a task that stopped reporting.",
            (Query(promql.HEARTBEAT_AGE_METRIC, "{{batch_id}} {{task}}"),),
            unit="s",
            width=24,
            thresholds=(Threshold(None, "green"), Threshold(stalled, "red")),
            threshold_line=True,
        ),
    )
    return _dashboard(
        LIVE_UID,
        "Batch operations: live",
        "Batches running now: running tasks, heartbeat ages and stalled tasks, from the "
        "orchestrator's heartbeat files and instrumented orchestrators.",
        layout,
        thresholds=thresholds,
        refresh="10s",
    )
