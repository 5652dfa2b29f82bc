"""What both dashboards share: identity, template variables, the dashboard envelope and the
panel shapes they are built from (bars, stats, trends, alerting signals with their threshold).
"""

from __future__ import annotations

from typing import Any, Final

from exporter.grafana import queries as q
from exporter.grafana.panels import DATASOURCE, Layout, Panel, Query, Threshold
from exporter.prometheus import promql
from exporter.signals.thresholds import Bottleneck, Thresholds, Trigger

__all__ = [
    "ALL_OPERATIONS",
    "DASHBOARD_TAG",
    "LIVE_UID",
    "OVERVIEW_UID",
    "SCHEMA_VERSION",
    "VARIABLES",
    "WINDOW_OPTIONS",
    "above",
    "bars",
    "dashboard",
    "signal_panel",
    "stat",
    "trend",
]

SCHEMA_VERSION: Final = 41  # Grafana 12.1's dashboard model
OVERVIEW_UID: Final = "batch-metrics-overview"
LIVE_UID: Final = "batch-metrics-live"
DASHBOARD_TAG: Final = "batch-metrics"
VARIABLES: Final = ("operation", "window")
WINDOW_OPTIONS: Final = ("1h", "6h", "1d", "7d", "30d")
ALL_OPERATIONS: Final = ".*"

# signal -> (panel title, unit)
_SIGNAL_PANELS: Final[dict[str, tuple[str, str]]] = {
    "mean_duration_seconds": ("Mean duration per operation", "s"),
    "success_rate": ("Item success rate per operation", "percentunit"),
    "tokens_per_run": ("Tokens per run (input + output)", "short"),
    "cost_usd_per_run": ("Cost per run", "currencyUSD"),
}


def above(limit: float, below: str = "green", over: str = "red") -> tuple[Threshold, ...]:
    """Threshold steps: ``below`` under ``limit``, ``over`` from it."""
    return (Threshold(None, below), Threshold(limit, over))


def signal_panel(rule: Bottleneck | Trigger, thresholds: Thresholds) -> Panel:
    """The time series of an alerting signal with its threshold drawn as a red area."""
    expr = q.only_selected(promql.SIGNALS[rule.signal]("$window"))
    steps = (
        above(rule.threshold) if rule.comparison == ">" else above(rule.threshold, "red", "green")
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


def bars(title: str, description: str, query: Query, unit: str = "short", **extra: Any) -> Panel:
    """Horizontal bars of an instant query, one per series."""
    return Panel(
        "bargauge",
        title,
        description,
        (query,),
        unit=unit,
        options={
            "displayMode": extra.pop("display", "basic"),
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
        },
        **extra,
    )


def stat(title: str, description: str, query: Query, unit: str, **extra: Any) -> Panel:
    """A big number per series, coloured by its thresholds."""
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


def trend(
    title: str, description: str, *queries: Query, unit: str = "short", **extra: Any
) -> Panel:
    """A time series panel (lines; ``draw="bars"`` with an ``interval`` for per-period bars)."""
    return Panel(
        "timeseries",
        title,
        description,
        queries,
        unit=unit,
        **{"min": 0, **extra},
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
            "query": f"label_values({q.OPERATIONS}, operation)",
            "definition": f"label_values({q.OPERATIONS}, operation)",
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


def dashboard(
    uid: str, title: str, description: str, layout: Layout, *, thresholds: Thresholds, refresh: str
) -> dict[str, Any]:
    """The dashboard around ``layout``'s panels: variables, links to the other one, time."""
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
