"""Small typed builders for Grafana's dashboard JSON model (schemaVersion 41, Grafana 12).

Only what the batch-metrics dashboards use: Prometheus targets, time series / stat / bar gauge /
table / alert list panels, rows and template variables. Time series never bridge a gap
(``spanNulls: false``): a period without runs shows as a gap, not as a line across it. Every
builder returns plain JSON-ready dicts; the result is checked against the published dashboard
schema in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "FULL_WIDTH",
    "Layout",
    "Panel",
    "Query",
    "Threshold",
    "row",
]

# The provisioned Prometheus datasource (grafana/provisioning/datasources/). Dashboards and alert
# rules refer to it by this uid only, so they work unchanged in any Grafana that provisions it.
DATASOURCE_UID: Final = "batch-metrics-prometheus"
DATASOURCE: Final[dict[str, str]] = {"type": "prometheus", "uid": DATASOURCE_UID}

PanelType = Literal["timeseries", "stat", "bargauge", "table", "barchart", "alertlist"]
FULL_WIDTH: Final = 24


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target; ``legend`` names the labels every result series must carry."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # one row per series (a table panel's format), else a time series

    def target(self, ref_id: str) -> dict[str, Any]:
        target = {
            "refId": ref_id,
            "datasource": dict(DATASOURCE),
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "instant": self.instant,
            "range": not self.instant,
            "editorMode": "code",
        }
        if self.table:
            target["format"] = "table"
        return target


@dataclass(frozen=True, slots=True)
class Threshold:
    """A threshold step: from ``value`` upward the field is ``color`` (``None`` = base step)."""

    value: float | None
    color: str


@dataclass(slots=True)
class Panel:
    """A panel of one of the supported visualisations."""

    type: PanelType
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    thresholds: tuple[Threshold, ...] = (Threshold(None, "green"),)
    threshold_line: bool = False  # draw the thresholds as lines (time series only)
    min: float | None = None
    max: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # time series: "bars" draws one bar per step; stacked adds the series up
    draw: Literal["line", "bars"] = "line"
    stacked: bool = False
    interval: str | None = None  # the shortest query step ("1h": one point per hour)
    transformations: tuple[dict[str, Any], ...] = ()

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {
                "mode": "absolute",
                "steps": [{"value": t.value, "color": t.color} for t in self.thresholds],
            },
            "color": {"mode": "palette-classic" if self.type == "timeseries" else "thresholds"},
        }
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.type == "timeseries":
            defaults["custom"] = {
                "drawStyle": self.draw,
                "lineWidth": 2 if self.draw == "line" else 1,
                "fillOpacity": 10 if self.draw == "line" else 80,
                "showPoints": "auto",  # a lone point between gaps stays visible
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stacked else "none", "group": "A"},
                "thresholdsStyle": {
                    "mode": ("line+area" if self.draw == "line" else "line")
                    if self.threshold_line
                    else "off"
                },
            }
        panel: dict[str, Any] = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": self.options,
        }
        if self.queries:
            panel["datasource"] = dict(DATASOURCE)
        if self.interval:
            panel["interval"] = self.interval
        if self.transformations:
            panel["transformations"] = list(self.transformations)
        return panel


def row(title: str, panel_id: int, y: int) -> dict[str, Any]:
    """An expanded row header."""
    return {
        "type": "row",
        "id": panel_id,
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": FULL_WIDTH, "x": 0, "y": y},
    }


@dataclass(slots=True)
class Layout:
    """Places rows and panels left to right, top to bottom, numbering them from 1."""

    panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def _new_line(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def add_row(self, title: str, *panels: Panel) -> None:
        if self._x:
            self._new_line()
        self.panels.append(row(title, self._next_id(), self._y))
        self._y += 1
        for panel in panels:
            if self._x + panel.width > FULL_WIDTH:
                self._new_line()
            self.panels.append(panel.to_json(self._next_id(), self._x, self._y))
            self._x += panel.width
            self._row_height = max(self._row_height, panel.height)
        self._new_line()
