"""How one archived run becomes Prometheus samples: the metric families and their contributions.

Every archived record is one finished operation run, counted at its completion time (start plus
duration). :func:`contributions` maps a :class:`~exporter.index.store.RecordSummary` onto
increments of
the design contract's counters, observations of its histograms and values of its timestamp
gauges. The archive collector (``serve``), the Pushgateway path and ``backfill`` all use it, so
they cannot disagree about what a record adds.

Choices where the record leaves room (documented in docs/prometheus.md):

* ``outcome`` of a run comes from its ``status`` (completed -> success, partial -> partial,
  failed/crashed -> failure); a record without status gets the instrumentation's rule: success
  when every item succeeded (also with no items), partial when some did, failure otherwise.
* ``batch_items_total`` counts success, failure and partial items, plus ``outcome="unknown"``
  for items of ``total_items`` that no count accounts for, so that the success rate in PromQL,
  success over all items, has the same denominator as ``trends`` (``total_items``).
* A run without ``duration_seconds`` is counted but not observed in the duration histogram (as
  ``trends`` leaves it out of the mean); its completion time is its start.
* ``batch_item_work_seconds_total`` gains ``duration_seconds x parallel_efficiency`` (the run's
  summed item seconds) when the record has both, else nothing: a run that recorded no item time
  counts as no work, as the instrumentation counts it, so that item work over the duration
  histogram's sum is the parallel efficiency ``trends`` reports as its overall figure.
* Token counts come per model (``by_model``); a record with totals only is counted under
  ``model="unknown"``. Cost is counted for priced models only (unpriced is not $0).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from exporter.index.store import RecordSummary
from instrumentation import contract
from instrumentation import semconv as sc

__all__ = [
    "BUCKETS",
    "COST",
    "DURATION",
    "ERRORS",
    "FAMILIES",
    "ITEMS",
    "ITEM_WORK",
    "LAST_COMPLETION",
    "LAST_SUCCESS",
    "NANO",
    "OPERATIONS",
    "STAGE_DURATION",
    "TOKENS",
    "UNKNOWN",
    "ZERO_SERIES",
    "Contribution",
    "Family",
    "bucket_index",
    "contributions",
    "operation_outcome",
    "scaled",
]

Kind = Literal["counter", "histogram", "gauge"]
LabelValues = tuple[str, ...]
UNKNOWN: Final = contract.UNKNOWN
# Sums of seconds and dollars are kept as integer nanos: exact, so that adding and removing
# records in any order, or rebuilding after a restart, gives bit-identical counters.
NANO: Final = 1_000_000_000
BUCKETS: Final = sc.DURATION_BUCKETS
_LATEST_TIME: Final = 253402300800.0  # 10000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True, eq=False)
class Family:
    """One metric family of the contract. ``name`` is the exposed name without ``_total``.

    Compared and hashed by identity: the families are the module's constants, and series keys
    (family, labels) are hashed millions of times when the archive is first counted.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    scale: int = 1  # stored integer units per exposed unit (NANO for seconds and dollars)

    @classmethod
    def of(cls, spec: contract.MetricSpec, scale: int = 1) -> Family:
        """The family of a contract metric, its values kept in integer units of 1/``scale``."""
        if spec.kind not in ("counter", "histogram", "gauge"):
            raise ValueError(f"{spec.otel_name} ({spec.kind}) has no archive family")
        kind: Kind = spec.kind
        return cls(spec.prometheus_base, kind, spec.help, spec.labels, scale)


DURATION: Final = Family.of(contract.DURATION, NANO)
OPERATIONS: Final = Family.of(contract.OPERATIONS)
ITEMS: Final = Family.of(contract.ITEMS)
STAGE_DURATION: Final = Family.of(contract.STAGE_DURATION, NANO)
ITEM_WORK: Final = Family.of(contract.ITEM_WORK, NANO)
TOKENS: Final = Family.of(contract.TOKENS)
COST: Final = Family.of(contract.COST, NANO)
ERRORS: Final = Family.of(contract.ERRORS)
LAST_COMPLETION: Final = Family.of(contract.LAST_COMPLETION)
LAST_SUCCESS: Final = Family.of(contract.LAST_SUCCESS)
FAMILIES: Final[tuple[Family, ...]] = (
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
)


def _bounded(family: Family, spec: contract.MetricSpec) -> tuple[LabelValues, ...]:
    """Every label set of a counter or histogram whose labels all have enumerated values."""
    if family.kind == "gauge" or any(label not in spec.values for label in spec.labels):
        return ()
    return tuple(itertools.product(*(spec.values[label] for label in spec.labels)))


# Series exposed at zero before any record adds to them: every combination of bounded label
# values (operation x outcome, ...) of the counters and histograms. Prometheus's increase()
# ignores a series' first sample, so a series that first appeared at its current value would
# hide the runs that created it (the very first, all-failed runs of an operation would never
# alert); and an operation whose items all failed still has a success series, at 0. Labels with
# open values (model, error type, stage) are not pre-created, nor are the timestamp gauges (a
# zero there would read as "last succeeded in 1970").
ZERO_SERIES: Final[tuple[tuple[Family, LabelValues], ...]] = tuple(
    (family, labels)
    for family, spec in (
        (DURATION, contract.DURATION),
        (OPERATIONS, contract.OPERATIONS),
        (ITEMS, contract.ITEMS),
        (ITEM_WORK, contract.ITEM_WORK),
    )
    for labels in _bounded(family, spec)
)

_STATUS_OUTCOME: Final[dict[str, sc.OperationOutcome]] = {
    "completed": "success",
    "partial": "partial",
    "failed": "failure",
    "crashed": "failure",
}


def operation_outcome(s: RecordSummary) -> sc.OperationOutcome:
    """The ``outcome`` label of a run: from its status, else from its item counts."""
    if s.status is not None:
        return _STATUS_OUTCOME[s.status]
    success = s.success_count or 0
    partial = s.partial_count or 0
    total = max(s.total_items or 0, success + (s.failure_count or 0) + partial)
    return sc.run_outcome(total, success, partial, body_failed=False)


def bucket_index(value: float) -> int:
    """Index of the first bucket whose upper bound ``le`` holds ``value`` (len(BUCKETS): +Inf)."""
    return bisect_left(BUCKETS, value)


def _label(value: str) -> str:
    return value[: sc.MAX_LABEL_LENGTH]


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one record adds: counter increments, histogram observations, gauge candidates.

    Counter increments are integers in the family's ``scale``; an observation carries its value
    and that value in the family's scale; gauge values are the completion time, of which each
    series keeps the maximum.
    """

    time: float
    counters: tuple[tuple[Family, LabelValues, int], ...]
    observations: tuple[tuple[Family, LabelValues, float, int], ...]
    gauges: tuple[tuple[Family, LabelValues, float], ...]


def scaled(value: float, scale: int) -> int:
    """``value`` in integer units of ``1 / scale``; ValueError when it cannot be represented."""
    product = value * scale
    if not math.isfinite(product):
        raise ValueError(f"value {value!r} is too large to count")
    return round(product)


def _items(s: RecordSummary) -> Iterator[tuple[Family, LabelValues, int]]:
    counts = (
        ("success", s.success_count or 0),
        ("failure", s.failure_count or 0),
        ("partial", s.partial_count or 0),
    )
    for item_outcome, n in counts:
        if n:
            yield ITEMS, (s.operation, item_outcome), n
    unaccounted = (s.total_items or 0) - sum(n for _, n in counts)
    if unaccounted > 0:
        yield ITEMS, (s.operation, UNKNOWN), unaccounted


def _usage(s: RecordSummary) -> Iterator[tuple[Family, LabelValues, int]]:
    op = s.operation
    if not s.models:  # totals only: the model is not known
        for token_type, maybe in (("input", s.input_tokens), ("output", s.output_tokens)):
            if maybe:
                yield TOKENS, (op, token_type, UNKNOWN), maybe
        if s.estimated_cost:
            yield COST, (op, UNKNOWN), scaled(s.estimated_cost, NANO)
        return
    for m in s.models:
        model = _label(m.model)
        for token_type, n in (
            ("input", m.input_tokens),
            ("output", m.output_tokens),
            ("cache_read", m.cache_read_tokens),
        ):
            if n:
                yield TOKENS, (op, token_type, model), n
        if m.cost_usd:
            yield COST, (op, model), round(m.cost_usd * NANO)


def _counters(s: RecordSummary, outcome: str) -> Iterator[tuple[Family, LabelValues, int]]:
    yield OPERATIONS, (s.operation, outcome), 1
    yield from _items(s)
    if s.duration_seconds is not None and s.parallel_efficiency is not None:
        work = s.duration_seconds * s.parallel_efficiency
        yield ITEM_WORK, (s.operation,), scaled(work, ITEM_WORK.scale)
    yield from _usage(s)
    for error_type in s.error_types:
        yield ERRORS, (s.operation, _label(error_type)), 1


def contributions(s: RecordSummary) -> Contribution:
    """Everything record ``s`` adds to the metrics, at its completion time.

    Raises ValueError for a record whose figures cannot be counted (a duration, item work or cost
    so large that it has no finite value in nano-units, a completion time past any clock).
    """
    outcome = operation_outcome(s)
    op = s.operation
    observations: list[tuple[Family, LabelValues, float, int]] = []
    if s.duration_seconds is not None:
        d = s.duration_seconds
        observations.append((DURATION, (op, outcome), d, scaled(d, DURATION.scale)))
    for st in s.stage_durations:
        if st.duration_seconds is not None:
            stage = UNKNOWN if st.stage is None else str(st.stage)
            d = st.duration_seconds
            observations.append((STAGE_DURATION, (op, stage), d, scaled(d, STAGE_DURATION.scale)))
    end = s.end_timestamp
    if not end < _LATEST_TIME:
        raise ValueError(f"completion time {end!r} is past the year 9999")
    gauges: list[tuple[Family, LabelValues, float]] = [(LAST_COMPLETION, (op, outcome), end)]
    if outcome == "success":
        gauges.append((LAST_SUCCESS, (op,), end))
    return Contribution(end, tuple(_counters(s, outcome)), tuple(observations), tuple(gauges))
