"""The two provisioned dashboards, built from code: *overview* (history) and *live* (progress).

The alerting panels take their PromQL from :mod:`exporter.prometheus.promql` and their
threshold lines from ``exporter/data/thresholds.yaml``, the same sources as the Prometheus and
Grafana alert rules; dashboard-only PromQL is in :mod:`exporter.grafana.queries`. Every query
uses two template variables only: ``$operation`` (a regex, ``.*`` for All) and ``$window`` (a
PromQL range such as ``7d``). The dashboards themselves are in :mod:`exporter.grafana.overview`
and :mod:`exporter.grafana.live`, built on :mod:`exporter.grafana.board`.
"""

from __future__ import annotations

from exporter.grafana.board import (
    DASHBOARD_TAG,
    LIVE_UID,
    OVERVIEW_UID,
    SCHEMA_VERSION,
    VARIABLES,
    WINDOW_OPTIONS,
)
from exporter.grafana.live import live_dashboard
from exporter.grafana.overview import overview_dashboard

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
