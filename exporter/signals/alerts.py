"""Every alert, engine-neutral: the signals' bottlenecks and triggers, the exporter's health,
the live heartbeats and the watchdog.

An :class:`AlertSpec` says what to watch (``query``, one value per series), when it is a problem
(``comparison`` ``threshold``, for ``for_``), how bad it is and what to tell whoever is paged.
:mod:`exporter.prometheus.rules` renders each as a Prometheus alerting rule (a per-operation
signal reads its recording rule), :mod:`exporter.grafana.alerting` as a Grafana rule (query,
reduce, threshold). Texts use ``{{ $labels.x }}``, which both engines read, and the marker
:data:`VALUE` where the engine's value expression goes.

Which engine notifies where is decided in docs/monitoring-stack.md: Prometheus in the compose
and native stacks, Grafana only where Grafana is the one that evaluates (never both into one
Alertmanager).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from exporter.signals.catalog import EXPORTER_JOB, SIGNALS
from exporter.signals.thresholds import Bottleneck, Thresholds, Trigger
from instrumentation import contract

__all__ = [
    "ABANDON_ALERT_WINDOW",
    "VALUE",
    "AlertSpec",
    "alert_name",
    "alert_specs",
    "signal_alert_specs",
    "trends_command",
]

VALUE: Final = "{value}"
Severity = Literal["none", "info", "warning", "critical"]
NoData = Literal["NoData", "Alerting"]

# A task whose heartbeat passed the abandon age alerts once, while the number of abandoned
# tasks is higher than it was this long ago.
ABANDON_ALERT_WINDOW: Final = "1h"

_SELECTOR: Final = re.compile(r'[A-Za-z_:][\w:]*(\{[^{}"]*("[^"]*"[^{}"]*)*\})?')
_UP: Final = f'up{{job="{EXPORTER_JOB}"}}'
_JOB: Final = f'{{job="{EXPORTER_JOB}"}}'


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """One alert, independent of Prometheus's or Grafana's syntax."""

    name: str  # BatchLongDuration
    key: str  # the thresholds file's rule name (long_duration), the runbook section's anchor
    query: str  # PromQL returning the watched value per series
    comparison: Literal[">", "<"]
    threshold: float
    for_: str
    severity: Severity
    summary: str
    description: str  # with VALUE where the value goes
    no_data: NoData = "NoData"  # Grafana's state when the query returns nothing
    recorded: str | None = None  # recording rule holding ``query`` (Prometheus reads it)
    health: bool = False  # about the monitoring itself (the exporter, the watchdog)
    # Grafana: "no series" is normal for this query (no task running), so Grafana's query adds
    # a zero series while the exporter is scraped; no data then means a dead exporter.
    empty_is_normal: bool = False

    @property
    def condition(self) -> str:
        """The alert as one PromQL expression on the raw query."""
        query = self.query if _SELECTOR.fullmatch(self.query) else f"({self.query})"
        return f"{query} {self.comparison} {self.threshold:g}"

    @property
    def prometheus_expr(self) -> str:
        """The Prometheus rule's expression: the recorded signal or the query, compared."""
        if self.recorded is not None:
            return f"{self.recorded} {self.comparison} {self.threshold:g}"
        return self.condition

    @property
    def grafana_query(self) -> str:
        """The query Grafana runs: with a zero while the exporter is up if empty is normal."""
        if not self.empty_is_normal:
            return self.query
        return f"({self.query}) or on () (0 * max({_UP} == 1))"

    @property
    def anchor(self) -> str:
        return self.key.replace("_", "-")


def alert_name(rule_name: str) -> str:
    """``long_duration`` -> ``BatchLongDuration``."""
    return "Batch" + "".join(part.capitalize() for part in rule_name.split("_"))


def trends_command(window: str, operation: str = "{{ $labels.operation }}") -> str:
    """The command whose report shows the figure an alert over ``window`` is about."""
    return f"batch-metrics trends --operation {operation} --since {window}"


def _signal_spec(rule: Bottleneck | Trigger, thresholds: Thresholds) -> AlertSpec:
    signal = SIGNALS[rule.signal]
    window = thresholds.window
    op = "{{ $labels.operation }}"
    threshold = signal.threshold_text.format(rule.threshold)
    return AlertSpec(
        name=alert_name(rule.name),
        key=rule.name,
        query=signal.query(window),
        comparison=rule.comparison,
        threshold=rule.threshold,
        for_=rule.for_,
        severity=rule.severity,
        summary=rule.summary.replace("{operation}", op),
        description=(
            f"The {signal.description} of {op} over the last {window} is "
            f"{signal.value_template(VALUE)} (threshold: {rule.comparison} {threshold}). "
            f"{rule.recommendation.replace('{operation}', op)}. The same figure, with the runs "
            f"behind it: `{trends_command(window)}`."
        ),
        recorded=signal.recorded(window),
    )


def signal_alert_specs(thresholds: Thresholds) -> list[AlertSpec]:
    """The bottleneck and decision-framework trigger alerts, one per rule of the file."""
    rules: list[Bottleneck | Trigger] = [*thresholds.bottlenecks, *thresholds.triggers]
    return [_signal_spec(rule, thresholds) for rule in rules]


def _task_specs(thresholds: Thresholds) -> list[AlertSpec]:
    stalled = thresholds.stalled_heartbeat_seconds
    abandoned = thresholds.abandoned_heartbeat_seconds
    age = contract.TASK_HEARTBEAT_AGE.prometheus_name
    count = contract.TASKS_ABANDONED.prometheus_name
    task = "task {{ $labels.task }} of batch {{ $labels.batch_id }}"
    return [
        AlertSpec(
            name="BatchTaskStalled",
            key="stalled_task",
            query=age,
            comparison=">",
            threshold=stalled,
            for_="1m",
            severity="warning",
            empty_is_normal=True,
            summary="Task {{ $labels.task }} of batch {{ $labels.batch_id }} is stalled",
            description=(
                f"No heartbeat from {task} for {{{{ {VALUE} | humanizeDuration }}}} (stalled "
                f"after {stalled:g} s; abandoned, and no longer alerted as stalled, after "
                f"{abandoned:g} s). Check the subagent running it; its heartbeat file is "
                ".ce/orchestration/tasks/batch-{{ $labels.batch_id }}/{{ $labels.task }}.hb."
            ),
        ),
        AlertSpec(
            name="BatchTaskAbandoned",
            key="abandoned_task",
            query=(f"{count} - ({count} offset {ABANDON_ALERT_WINDOW} or {count} * 0)"),
            comparison=">",
            threshold=0,
            for_="0s",
            severity="warning",
            empty_is_normal=True,
            summary="Tasks of batch {{ $labels.batch_id }} were abandoned",
            description=(
                f"{{{{ {VALUE} }}}} more running task(s) of batch {{{{ $labels.batch_id }}}} "
                f"have written no heartbeat for over {abandoned:g} s: they are taken as "
                "abandoned (this alert fires once, when they pass that age, and resolves after "
                f"{ABANDON_ALERT_WINDOW}). Record them as failed (`batch-metrics recover`, or "
                "the orchestrator's own timeout) or remove their heartbeat files."
            ),
        ),
    ]


def _health_specs(thresholds: Thresholds) -> list[AlertSpec]:
    stale = thresholds.stale_scan_seconds
    return [
        AlertSpec(
            name="BatchMetricsExporterDown",
            key="exporter_down",
            query=_UP,
            comparison="<",
            threshold=1,
            for_="5m",
            severity="critical",
            summary="Prometheus cannot scrape batch-metrics serve ({{ $labels.instance }})",
            description=(
                f"The scrape of job {EXPORTER_JOB} at {{{{ $labels.instance }}}} fails: no "
                "batch alert can fire while it does. Check the exporter's process or "
                "container (`docker compose ps exporter`) and its log."
            ),
            no_data="Alerting",
            health=True,
        ),
        AlertSpec(
            name="BatchMetricsExporterAbsent",
            key="exporter_absent",
            query=f"absent({_UP}) or vector(0)",
            comparison=">",
            threshold=0,
            for_="5m",
            severity="critical",
            summary=f"Prometheus has no target for job {EXPORTER_JOB}",
            description=(
                f"No target of job {EXPORTER_JOB} is being scraped (absent(up)): the scrape "
                "configuration lost it, or service discovery finds nothing. No batch alert "
                "can fire. Check prometheus/prometheus.yml."
            ),
            no_data="Alerting",
            health=True,
        ),
        AlertSpec(
            name="BatchMetricsScanErrors",
            key="scan_errors",
            query=f"increase({contract.EXPORTER_SCAN_ERRORS.prometheus_name}{_JOB}[15m])",
            comparison=">",
            threshold=0,
            for_="5m",
            severity="warning",
            summary="batch-metrics serve cannot read its archive",
            description=(
                f"{{{{ {VALUE} | humanize }}}} failed looks at the archive in 15 minutes; the "
                "figures served are those of the last successful scan. /health on the "
                "exporter gives the reason (a permission, a missing mount)."
            ),
            no_data="Alerting",
            health=True,
        ),
        AlertSpec(
            name="BatchMetricsInvalidRecords",
            key="invalid_records",
            query=f"{contract.EXPORTER_INVALID_RECORDS.prometheus_name}{_JOB}",
            comparison=">",
            threshold=0,
            for_="15m",
            severity="warning",
            summary="Archive files that are not valid records are left out of every figure",
            description=(
                f"{{{{ {VALUE} }}}} file(s) in the archive are skipped as invalid. "
                "`batch-metrics validate` names each with its reason."
            ),
            no_data="Alerting",
            health=True,
        ),
        AlertSpec(
            name="BatchMetricsScanStale",
            key="stale_scan",
            query=(f"time() - {contract.EXPORTER_LAST_SCAN_TIMESTAMP.prometheus_name}{_JOB}"),
            comparison=">",
            threshold=stale,
            for_="5m",
            severity="warning",
            summary="The figures batch-metrics serve exposes are old",
            description=(
                f"The last successful scan of the archive was {{{{ {VALUE} | humanizeDuration }}}} "
                f"ago (limit: {stale:g} s): new records do not reach the alerts. Check the "
                "exporter's log and /health."
            ),
            no_data="Alerting",
            health=True,
        ),
        AlertSpec(
            name="Watchdog",
            key="watchdog",
            query="vector(1)",
            comparison=">",
            threshold=0,
            for_="0s",
            severity="none",
            summary="The alerting pipeline is alive (always firing)",
            description=(
                "Always firing, on purpose: route it to a dead man's switch, which pages when "
                "this alert stops arriving (the rules engine or the route to you is broken)."
            ),
            no_data="Alerting",
            health=True,
        ),
    ]


def alert_specs(thresholds: Thresholds) -> list[AlertSpec]:
    """Every alert: signals first, then tasks, then the exporter's health and the watchdog."""
    return [*signal_alert_specs(thresholds), *_task_specs(thresholds), *_health_specs(thresholds)]
