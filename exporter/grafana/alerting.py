"""Grafana-managed alert rules, contact point and notification policy (file provisioning format).

Each rule is an alert of :mod:`exporter.signals.alerts` (the same as the Prometheus rule of that
name), in Grafana's three-step form:

* ``A``: the alert's PromQL (a signal over the thresholds' window, or a health query), as an
  instant query (one value per series);
* ``B``: reduce ``A`` to its last value per series, dropping non-numbers (an operation without
  runs in the window has 0/0);
* ``C``: threshold on ``B`` with the comparison and value of the alert.

``noDataState``: a query that returns nothing means a dead or missing exporter, never "all is
well": the health rules go to Alerting, the others to NoData (Grafana's DatasourceNoData alert).
Queries for which no series is normal (no task running) add a zero series while the exporter is
scraped, so that for them too no data means a dead exporter. A failing query is an Error.

Which engine notifies: these rules are for setups where Grafana evaluates the alerts (a
Prometheus without our rule files, Grafana Cloud). The compose stack does not load them (it does
not mount ``grafana/provisioning/alerting``): there Prometheus evaluates the same alerts and its
Alertmanager notifies, once (docs/monitoring-stack.md).
"""

from __future__ import annotations

from typing import Any, Final

from exporter.grafana.panels import DATASOURCE_UID
from exporter.signals.alerts import VALUE, AlertSpec, alert_specs
from exporter.signals.thresholds import Thresholds

__all__ = [
    "CONTACT_POINT",
    "EXPRESSION_DATASOURCE",
    "FOLDER",
    "RULE_GROUP",
    "AlertSpec",
    "alert_specs",
    "notification_provisioning",
    "rules_provisioning",
]

EXPRESSION_DATASOURCE: Final = "__expr__"  # Grafana's server-side expressions
FOLDER: Final = "Batch metrics"
RULE_GROUP: Final = "batch-metrics"
CONTACT_POINT: Final = "batch-metrics"
EVALUATION_INTERVAL: Final = "1m"
# Runbooks are sections of the stack guide (a repository path: prefix it with where you host it).
RUNBOOK: Final = "docs/monitoring-stack.md"
ORG_ID: Final = 1
# how long a health query looks back (a window-less query still needs a range for Grafana)
_HEALTH_RANGE_SECONDS: Final = 600

_EVALUATOR: Final = {">": "gt", "<": "lt"}


def _expression_step(ref_id: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "datasourceUid": EXPRESSION_DATASOURCE,
        "relativeTimeRange": {"from": 0, "to": 0},
        "model": model,
    }


def _rule(spec: AlertSpec, window_seconds: int) -> dict[str, Any]:
    query_model = {
        "refId": "A",
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "expr": spec.grafana_query,
        "instant": True,
        "range": False,
        "intervalMs": 60000,
        "maxDataPoints": 43200,
    }
    reduce_model = {
        "refId": "B",
        "datasource": {"type": EXPRESSION_DATASOURCE, "uid": EXPRESSION_DATASOURCE},
        "type": "reduce",
        "expression": "A",
        "reducer": "last",
        "settings": {"mode": "dropNN"},
    }
    threshold_model = {
        "refId": "C",
        "datasource": {"type": EXPRESSION_DATASOURCE, "uid": EXPRESSION_DATASOURCE},
        "type": "threshold",
        "expression": "B",
        "conditions": [
            {"evaluator": {"type": _EVALUATOR[spec.comparison], "params": [spec.threshold]}}
        ],
    }
    return {
        "uid": "batch-metrics-" + spec.anchor,
        "title": spec.name,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "datasourceUid": DATASOURCE_UID,
                "relativeTimeRange": {
                    "from": window_seconds if spec.recorded else _HEALTH_RANGE_SECONDS,
                    "to": 0,
                },
                "model": query_model,
            },
            _expression_step("B", reduce_model),
            _expression_step("C", threshold_model),
        ],
        "noDataState": spec.no_data,
        "execErrState": "Error",
        "for": spec.for_,
        "isPaused": False,
        "labels": {"severity": spec.severity, "rule": spec.key, "service": "batch-metrics"},
        "annotations": {
            "summary": spec.summary,
            "description": spec.description.replace(VALUE, "$values.B.Value"),
            "runbook_url": f"{RUNBOOK}#{spec.anchor}",
        },
    }


_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * _SECONDS[duration[-1]]


def rules_provisioning(thresholds: Thresholds) -> dict[str, Any]:
    """The alert rule group, as a Grafana alerting provisioning file."""
    window = _seconds(thresholds.window)
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": RULE_GROUP,
                "folder": FOLDER,
                "interval": EVALUATION_INTERVAL,
                "rules": [_rule(spec, window) for spec in alert_specs(thresholds)],
            }
        ],
    }


def notification_provisioning() -> dict[str, Any]:
    """Contact point and notification policy: every Grafana alert to an Alertmanager.

    For setups where Grafana evaluates the alerts: ``$GRAFANA_ALERTMANAGER_URL`` points at an
    Alertmanager configured like ``alertmanager/alertmanager.yml`` (quiet route for ``info``,
    inhibitions, the watchdog's dead man's switch). Grafana expands ``$VAR`` in provisioning
    files.
    """
    return {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": ORG_ID,
                "name": CONTACT_POINT,
                "receivers": [
                    {
                        "uid": "batch-metrics-alertmanager",
                        "type": "prometheus-alertmanager",
                        "disableResolveMessage": False,
                        "settings": {"url": "$GRAFANA_ALERTMANAGER_URL"},
                    }
                ],
            }
        ],
        "policies": [
            {
                "orgId": ORG_ID,
                "receiver": CONTACT_POINT,
                "group_by": ["alertname", "operation"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            }
        ],
    }
