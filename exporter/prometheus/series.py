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
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from exporter.index.stats import run_total
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
    "LATEST_TIME",
    "NANO",
    "OPERATIONS",
    "STAGE_DURATION",
    "TOKENS",
    "UNKNOWN",
    "ZERO_SERIES",
    "Contribution",
    "Family",
    "SeriesKey",
    "bucket_index",
    "contributions",
    "operation_outcome",
    "outcome_of",
    "scaled",
]

Kind = Literal["counter", "histogram", "gauge"]
LabelValues = tuple[str, ...]
UNKNOWN: Final = contract.UNKNOWN
# Sums of seconds and dollars are kept as integer nanos: exact, so that adding and removing
# records in any order, or rebuilding after a restart, gives bit-identical counters.
NANO: Final = 1_000_000_000
BUCKETS: Final = sc.DURATION_BUCKETS
LATEST_TIME: Final = 253402300800.0  # 10000-01-01T00:00:00Z: no clock counts past it
_MAX_LABEL: Final = sc.MAX_LABEL_LENGTH  # characters kept of a model or error type


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
    return outcome_of(s.status, s.total_items, s.success_count, s.failure_count, s.partial_count)


def outcome_of(
    status: str | None,
    total_items: int | None,
    success: int | None,
    failure: int | None,
    partial: int | None,
) -> sc.OperationOutcome:
    """:func:`operation_outcome` of a run's status and item counts, as a record holds them."""
    if status is not None:
        return _STATUS_OUTCOME[status]
    total = run_total(total_items, success, failure, partial)
    return sc.run_outcome(total, success or 0, partial or 0, body_failed=False)


def bucket_index(value: float) -> int:
    """Index of the first bucket whose upper bound ``le`` holds ``value`` (len(BUCKETS): +Inf)."""
    return bisect_left(BUCKETS, value)


# One series: its family and label values.
SeriesKey = tuple[Family, LabelValues]


class Contribution(NamedTuple):
    """What one record adds: counter increments, histogram observations, gauge candidates.

    Each entry starts with its series key, built once here: counting a large archive adds
    millions of entries, and the key is what the totals are looked up by. Counter increments
    are integers in the family's ``scale``; an observation carries its value and that value in
    the family's scale; gauge values are the completion time, of which each series keeps the
    maximum.
    """

    time: float
    counters: tuple[tuple[SeriesKey, int], ...]
    observations: tuple[tuple[SeriesKey, float, int], ...]
    gauges: tuple[tuple[SeriesKey, float], ...]


def scaled(value: float, scale: int) -> int:
    """``value`` in integer units of ``1 / scale``; ValueError when it cannot be represented."""
    product = value * scale
    if not math.isfinite(product):
        raise ValueError(f"value {value!r} is too large to count")
    return round(product)


def _items(s: RecordSummary, out: list[tuple[SeriesKey, int]]) -> None:
    op = s.operation
    success = s.success_count or 0
    failure = s.failure_count or 0
    partial = s.partial_count or 0
    if success:
        out.append(((ITEMS, (op, "success")), success))
    if failure:
        out.append(((ITEMS, (op, "failure")), failure))
    if partial:
        out.append(((ITEMS, (op, "partial")), partial))
    unaccounted = (s.total_items or 0) - success - failure - partial
    if unaccounted > 0:
        out.append(((ITEMS, (op, UNKNOWN)), unaccounted))


def _usage(s: RecordSummary, out: list[tuple[SeriesKey, int]]) -> None:
    op = s.operation
    if not s.models:  # totals only: the model is not known
        if s.input_tokens:
            out.append(((TOKENS, (op, "input", UNKNOWN)), s.input_tokens))
        if s.output_tokens:
            out.append(((TOKENS, (op, "output", UNKNOWN)), s.output_tokens))
        if s.estimated_cost:
            out.append(((COST, (op, UNKNOWN)), scaled(s.estimated_cost, COST.scale)))
        return
    for m in s.models:
        model = m.model[:_MAX_LABEL]
        if m.input_tokens:
            out.append(((TOKENS, (op, "input", model)), m.input_tokens))
        if m.output_tokens:
            out.append(((TOKENS, (op, "output", model)), m.output_tokens))
        if m.cache_read_tokens:
            out.append(((TOKENS, (op, "cache_read", model)), m.cache_read_tokens))
        if m.cost_usd:
            out.append(((COST, (op, model)), round(m.cost_usd * COST.scale)))


def contributions(s: RecordSummary) -> Contribution:
    """Everything record ``s`` adds to the metrics, at its completion time.

    Raises ValueError for a record whose figures cannot be counted (a duration, item work or cost
    so large that it has no finite value in nano-units, a completion time past any clock).
    ``serve`` calls this once per record when it first counts an archive, so it appends to
    lists rather than chaining generators.
    """
    outcome = operation_outcome(s)
    op = s.operation
    run = (op, outcome)
    observations: list[tuple[SeriesKey, float, int]] = []
    d = s.duration_seconds
    if d is not None:
        observations.append(((DURATION, run), d, scaled(d, DURATION.scale)))
    for st in s.stage_durations:
        sd = st.duration_seconds
        if sd is not None:
            stage = UNKNOWN if st.stage is None else str(st.stage)
            observations.append(
                ((STAGE_DURATION, (op, stage)), sd, scaled(sd, STAGE_DURATION.scale))
            )
    end = s.end_timestamp
    if not end < LATEST_TIME:
        raise ValueError(f"completion time {end!r} is past the year 9999")
    counters: list[tuple[SeriesKey, int]] = [((OPERATIONS, run), 1)]
    _items(s, counters)
    efficiency = s.parallel_efficiency
    if d is not None and efficiency is not None:
        counters.append(((ITEM_WORK, (op,)), scaled(d * efficiency, ITEM_WORK.scale)))
    _usage(s, counters)
    for error_type in s.error_types:
        counters.append(((ERRORS, (op, error_type[:_MAX_LABEL])), 1))
    gauges: tuple[tuple[SeriesKey, float], ...] = (
        (((LAST_COMPLETION, run), end), ((LAST_SUCCESS, (op,)), end))
        if outcome == "success"
        else (((LAST_COMPLETION, run), end),)
    )
    return Contribution(end, tuple(counters), tuple(observations), gauges)
