"""The metric contract: every metric batch-metrics exposes, declared once.

Each :class:`MetricSpec` gives the OpenTelemetry instrument name (dotted, unit-free), its UCUM
unit, its kind, its help text and its labels with their bounded values. Everything else is
derived from it: the instruments of :mod:`instrumentation`, the Prometheus families that
``batch-metrics serve`` and ``backfill`` expose, the names the PromQL of the rules and the
dashboards reads. :attr:`MetricSpec.prometheus_name` applies the OpenTelemetry-to-Prometheus
mapping the SDK's Prometheus exporter uses: dots become underscores, unit ``s`` adds
``_seconds``, a unit in curly braces is an annotation and adds nothing, a counter gains
``_total``.

Only the standard library and :mod:`instrumentation.semconv` are imported here, so the
instrumentation stays light and the exporter can depend on the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from instrumentation import semconv as sc

__all__ = [
    "COST",
    "DURATION",
    "ERRORS",
    "EXPORTER_CORRECTIONS",
    "EXPORTER_INVALID_RECORDS",
    "EXPORTER_LAST_SCAN_DURATION",
    "EXPORTER_LAST_SCAN_TIMESTAMP",
    "EXPORTER_LATE_RECORDS",
    "EXPORTER_RECORDS",
    "EXPORTER_SCAN_ERRORS",
    "ITEMS",
    "ITEMS_RUNNING",
    "ITEM_WORK",
    "LAST_COMPLETION",
    "LAST_SUCCESS",
    "METRICS",
    "OPERATIONS",
    "OPERATIONS_RUNNING",
    "STAGE_DURATION",
    "TASKS_ABANDONED",
    "TASKS_RUNNING",
    "TASK_HEARTBEAT_AGE",
    "TASK_PROGRESS",
    "TOKENS",
    "UNKNOWN",
    "MetricKind",
    "MetricSpec",
]

MetricKind = Literal["counter", "histogram", "gauge", "updowncounter"]

# Label value for what a record does not say (items no count accounts for, a model not named).
UNKNOWN: Final = "unknown"

_UNIT_SUFFIX: Final[Mapping[str, str]] = MappingProxyType({"s": "seconds", "By": "bytes"})


@dataclass(frozen=True, slots=True, eq=False)
class MetricSpec:
    """One metric of the contract.

    ``values`` lists, for each enumerated label, every value it can take; labels missing from
    it are free text bounded by :data:`~instrumentation.semconv.MAX_LABEL_LENGTH` (model, error
    type) or small integers (stage), never an id or a message.
    """

    otel_name: str
    kind: MetricKind
    unit: str
    help: str
    labels: tuple[str, ...]
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def prometheus_base(self) -> str:
        """The exposed name without a counter's ``_total``: ``batch_cost_usd``."""
        name = self.otel_name.replace(".", "_")
        suffix = _UNIT_SUFFIX.get(self.unit)
        if suffix and not name.endswith(f"_{suffix}"):
            name = f"{name}_{suffix}"
        return name

    @property
    def prometheus_name(self) -> str:
        """The exposed name: ``batch_items_total``, ``batch_operation_duration_seconds``."""
        base = self.prometheus_base
        return f"{base}_total" if self.kind == "counter" else base

    def series(self, suffix: str = "") -> str:
        """A sample name of the family: ``DURATION.series("_sum")``."""
        return f"{self.prometheus_name}{suffix}"


_OP: Final = sc.LABEL_OPERATION
_OUTCOME: Final = sc.LABEL_OUTCOME
_OPERATIONS: Final = {_OP: tuple(sc.OPERATIONS)}
_RUN_OUTCOMES: Final = {**_OPERATIONS, _OUTCOME: ("success", "failure", "partial")}

# -- what every batch records (instrumentation and archive alike) ----------------------------

DURATION: Final = MetricSpec(
    "batch.operation.duration",
    "histogram",
    "s",
    "Wall time of one batch operation run.",
    (_OP, _OUTCOME),
    _RUN_OUTCOMES,
)
OPERATIONS: Final = MetricSpec(
    "batch.operations",
    "counter",
    "{operation}",
    "Batch operation runs finished, by outcome.",
    (_OP, _OUTCOME),
    _RUN_OUTCOMES,
)
ITEMS: Final = MetricSpec(
    "batch.items",
    "counter",
    "{item}",
    "Work items finished, by outcome (unknown: items of total_items no count accounts for).",
    (_OP, _OUTCOME),
    {**_OPERATIONS, _OUTCOME: (*sc.ITEM_OUTCOMES, UNKNOWN)},
)
STAGE_DURATION: Final = MetricSpec(
    "batch.stage.duration",
    "histogram",
    "s",
    "Wall time of one stage of a batch operation.",
    (_OP, sc.LABEL_STAGE),
    _OPERATIONS,
)
ITEM_WORK: Final = MetricSpec(
    "batch.item.work",
    "counter",
    "s",
    "Seconds of item work, summed over items (over the runs' wall time: parallel efficiency).",
    (_OP,),
    _OPERATIONS,
)
TOKENS: Final = MetricSpec(
    "batch.tokens",
    "counter",
    "{token}",
    "LLM tokens used, by type (input, output, cache_read) and model.",
    (_OP, sc.LABEL_TYPE, sc.LABEL_MODEL),
    {**_OPERATIONS, sc.LABEL_TYPE: ("input", "output", "cache_read")},
)
COST: Final = MetricSpec(
    "batch.cost.usd",
    "counter",
    "{USD}",
    "Cost in US dollars of priced models (unpriced models are not counted).",
    (_OP, sc.LABEL_MODEL),
    _OPERATIONS,
)
ERRORS: Final = MetricSpec(
    "batch.errors",
    "counter",
    "{error}",
    "Errors of items, stages and operation runs, by error type.",
    (_OP, sc.LABEL_ERROR_TYPE),
    _OPERATIONS,
)
LAST_COMPLETION: Final = MetricSpec(
    "batch.last_completion_timestamp",
    "gauge",
    "s",
    "Unix time at which an operation run last finished, by outcome.",
    (_OP, _OUTCOME),
    _RUN_OUTCOMES,
)
LAST_SUCCESS: Final = MetricSpec(
    "batch.last_success_timestamp",
    "gauge",
    "s",
    "Unix time at which an operation run last finished successfully.",
    (_OP,),
    _OPERATIONS,
)

# -- in-process only: what is running now (the instrumentation's up-down counters) ------------

OPERATIONS_RUNNING: Final = MetricSpec(
    "batch.operations.running",
    "updowncounter",
    "{operation}",
    "Batch operation runs in progress.",
    (_OP,),
    _OPERATIONS,
)
ITEMS_RUNNING: Final = MetricSpec(
    "batch.items.running",
    "updowncounter",
    "{item}",
    "Work items in progress.",
    (_OP,),
    _OPERATIONS,
)

# -- serve only: running tasks from the orchestrator's heartbeat files ------------------------
# A batch id is a label here, and only here: these gauges exist while a batch runs.

TASKS_RUNNING: Final = MetricSpec(
    "batch.tasks.running",
    "gauge",
    "{task}",
    "Tasks of a batch whose heartbeat says they are running.",
    ("batch_id",),
)
TASK_HEARTBEAT_AGE: Final = MetricSpec(
    "batch.task.heartbeat_age",
    "gauge",
    "s",
    "Seconds since a running task's last heartbeat.",
    ("batch_id", "task"),
)
TASKS_ABANDONED: Final = MetricSpec(
    "batch.tasks.abandoned",
    "gauge",
    "{task}",
    "Tasks of a batch whose heartbeat says running but is older than the abandon age.",
    ("batch_id",),
)
TASK_PROGRESS: Final = MetricSpec(
    "batch.task.progress",
    "gauge",
    "1",
    "Progress a running task reported in its heartbeat, as written.",
    ("batch_id", "task"),
)

# -- serve only: the exporter's own health ----------------------------------------------------

EXPORTER_RECORDS: Final = MetricSpec(
    "batch_metrics.exporter.records",
    "gauge",
    "{record}",
    "Valid archive records the exporter's figures are derived from.",
    (),
)
EXPORTER_INVALID_RECORDS: Final = MetricSpec(
    "batch_metrics.exporter.invalid_records",
    "gauge",
    "{record}",
    "Files in the archive that are not valid records (skipped; see the log).",
    (),
)
EXPORTER_LAST_SCAN_DURATION: Final = MetricSpec(
    "batch_metrics.exporter.last_scan_duration",
    "gauge",
    "s",
    "Time the last look at the archive took.",
    (),
)
EXPORTER_LAST_SCAN_TIMESTAMP: Final = MetricSpec(
    "batch_metrics.exporter.last_scan_timestamp",
    "gauge",
    "s",
    "Unix time of the last successful look at the archive (the figures served are from then).",
    (),
)
EXPORTER_SCAN_ERRORS: Final = MetricSpec(
    "batch_metrics.exporter.scan_errors",
    "counter",
    "{error}",
    "Looks at the archive that failed (the last good figures were served).",
    (),
)
EXPORTER_CORRECTIONS: Final = MetricSpec(
    "batch_metrics.exporter.corrections",
    "counter",
    "{record}",
    "Records counted before that were then removed or rewritten (their counts stay: counters "
    "never go down; the archive and trends have the corrected figures).",
    ("kind",),
    {"kind": ("removed", "rewritten")},
)
EXPORTER_LATE_RECORDS: Final = MetricSpec(
    "batch_metrics.exporter.late_records",
    "counter",
    "{record}",
    "Records first seen after the live cut-over that the live counters leave to backfilled "
    "history (ended before the cut-over or arrived late).",
    (),
)

METRICS: Final[tuple[MetricSpec, ...]] = (
    DURATION,
    OPERATIONS,
    ITEMS,
    STAGE_DURATION,
    ITEM_WORK,
    TOKENS,
    COST,
    ERRORS,
    LAST_COMPLETION,
    LAST_SUCCESS,
    OPERATIONS_RUNNING,
    ITEMS_RUNNING,
    TASKS_RUNNING,
    TASKS_ABANDONED,
    TASK_HEARTBEAT_AGE,
    TASK_PROGRESS,
    EXPORTER_RECORDS,
    EXPORTER_INVALID_RECORDS,
    EXPORTER_LAST_SCAN_DURATION,
    EXPORTER_LAST_SCAN_TIMESTAMP,
    EXPORTER_SCAN_ERRORS,
    EXPORTER_CORRECTIONS,
    EXPORTER_LATE_RECORDS,
)
