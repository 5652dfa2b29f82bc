"""Grafana provisioning generated from code: datasource, dashboards, alert rules, notifications.

Following the monitoring-mixin convention, the files under ``grafana/`` are committed and
regenerated with ``python -m exporter.grafana``; ``python -m exporter.grafana --check`` (and
the test suite) fails when they are stale. Queries come from :mod:`exporter.prometheus.promql`
and thresholds from ``exporter/data/thresholds.yaml``, so the dashboards, the Grafana alert
rules and the Prometheus rules always say the same thing.

May import :mod:`exporter.prometheus` (its PromQL), :mod:`exporter.signals` and
:mod:`exporter.util`.
"""

from __future__ import annotations

from exporter.grafana.panels import DATASOURCE_UID
from exporter.grafana.provisioning import render, stale, write

__all__ = ["DATASOURCE_UID", "render", "stale", "write"]
