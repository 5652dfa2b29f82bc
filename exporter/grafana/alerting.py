"""Grafana-managed alert rules, contact point and notification policy (file provisioning format).

Each rule is the Prometheus alert of the same name (exporter/prometheus/rules.py), in
Grafana's three-step form:

* ``A``: the signal's PromQL from :mod:`exporter.prometheus.promql`, over the thresholds'
  window, as an instant query (one value per operation);
* ``B``: reduce ``A`` to its last value per series;
* ``C``: threshold on ``B`` with the comparison and value from ``thresholds.yaml``.

So ``(A) <comparison> <threshold>`` is exactly ``promql.alert_expr(..., recorded=False)`` and
the stalled-task rule is ``promql.stalled_task_expr``; ``tests/test_stack_grafana.py`` checks
both against the generated Prometheus rule file. Notifications go to the stack's Alertmanager
(one place to route every alert, Prometheus's and Grafana's), or wherever
``$GRAFANA_ALERTMANAGER_URL`` points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from exporter.grafana.panels import DATASOURCE_UID
from exporter.prometheus import promql
from exporter.prometheus.rules import STALLED_ALERT, alert_name
from exporter.signals.thresholds import Bottleneck, Thresholds, Trigger

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

GrafanaEvaluator = Literal["gt", "lt"]
_EVALUATOR: Final[dict[str, GrafanaEvaluator]] = {">": "gt", "<": "lt"}


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What one alert rule says, independent of Grafana's or Prometheus's syntax."""

    name: str
    query: str  # PromQL returning the signal per series
    comparison: Literal[">", "<"]
    threshold: float
    for_: str
    severity: str
    summary: str
    description: str
    anchor: str  # section of the runbook

    @property
    def condition(self) -> str:
        """The same alert as one PromQL expression."""
        return f"({self.query}) {self.comparison} {self.threshold:g}"


def alert_specs(thresholds: Thresholds) -> list[AlertSpec]:
    """The bottleneck and trigger alerts from ``thresholds`` plus the stalled-task alert."""
    rules: list[Bottleneck | Trigger] = [*thresholds.bottlenecks, *thresholds.triggers]
    specs = [
        AlertSpec(
            name=alert_name(b.name),
            query=promql.SIGNALS[b.signal](thresholds.window),
            comparison=b.comparison,
            threshold=b.threshold,
            for_=b.for_,
            severity=b.severity,
            summary=b.summary.format(operation="{{ $labels.operation }}"),
            description=(
                f"{b.signal} of {{{{ $labels.operation }}}} over the last {thresholds.window} "
                f"is {{{{ $values.B }}}} ({b.comparison} {b.threshold:g}). "
                + b.recommendation.format(operation="{{ $labels.operation }}")
                + ": run `batch-metrics trends` and `batch-metrics prioritize`."
            ),
            anchor=b.name.replace("_", "-"),
        )
        for b in rules
    ]
    stalled = thresholds.stalled_heartbeat_seconds
    specs.append(
        AlertSpec(
            name=STALLED_ALERT,
            query=promql.HEARTBEAT_AGE_METRIC,
            comparison=">",
            threshold=stalled,
            for_="0s",
            severity="warning",
            summary="A running batch task has not written a heartbeat for over "
            f"{stalled:g} seconds",
            description=(
                "Task {{ $labels.task }} of batch {{ $labels.batch_id }} last wrote its "
                "heartbeat {{ $values.B }} s ago. Check the subagent's process and its "
                ".ce/orchestration/tasks/ files."
            ),
            anchor="stalled-task",
        )
    )
    return specs


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
        "expr": spec.query,
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
                "relativeTimeRange": {"from": window_seconds, "to": 0},
                "model": query_model,
            },
            _expression_step("B", reduce_model),
            _expression_step("C", threshold_model),
        ],
        "noDataState": "OK",  # no runs in the window is not a bottleneck
        "execErrState": "Error",
        "for": spec.for_,
        "isPaused": False,
        "labels": {"severity": spec.severity, "service": "batch-metrics"},
        "annotations": {
            "summary": spec.summary,
            "description": spec.description,
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
    """Contact point and notification policy: every alert to the stack's Alertmanager.

    ``alertmanager/alertmanager.yml`` then routes Grafana's and Prometheus's alerts alike to the
    user's channel. ``$GRAFANA_ALERTMANAGER_URL`` (compose default: the stack's Alertmanager)
    points Grafana elsewhere; Grafana expands ``$VAR`` in provisioning files.
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
