"""Counting many parsed records at once: grouped by their labels first, then spread over series.

Counting one record at a time (:func:`~exporter.prometheus.series.contributions`, then
:meth:`~exporter.prometheus.aggregates.Aggregates.apply_all`) builds and hashes about fifteen
series keys a record: ~12 us, ~16 us with the summary it reads. That is what a first start's
parse workers spent beside the parse (:data:`exporter.index.parsing.Fold`). Most of a
record's series share their labels: its operation and outcome (runs, items, item work,
duration, completion times), its operation and model (tokens, cost), its operation and stage,
its operation and error type. :func:`count_grouped` sums the records per such group in one
pass over their projections (what the index stores, read by position), then adds each group's
sums to its series: ~5 us a record.

It is the bulk twin of counting one record at a time and gives exactly the same totals, which
``tests/prometheus/test_grouped.py`` proves over generated records. The rules stay
:mod:`~exporter.prometheus.series`' (:func:`~exporter.prometheus.series.outcome_of`,
:func:`~exporter.prometheus.series.scaled`, the buckets, the label limits); what this module
adds is where each sum goes. A counter exists once a record added to it, even 0 (a cost that
rounds to 0 nano-dollars, item work of 0 s), so a group also counts the records behind such
sums. A record that cannot be counted raises (the model's limits keep a parsed record's
figures finite, so this is a bug or an index of an older layout): the caller then counts
those records one at a time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from exporter.index.summary import ModelTokens, Projection, RecordSummary, StageSummary
from exporter.prometheus.aggregates import Aggregates, Histogram
from exporter.prometheus.series import (
    BUCKETS,
    COST,
    DURATION,
    ERRORS,
    ITEM_WORK,
    ITEMS,
    LAST_COMPLETION,
    LAST_SUCCESS,
    LATEST_TIME,
    OPERATIONS,
    STAGE_DURATION,
    TOKENS,
    UNKNOWN,
    outcome_of,
    scaled,
)
from instrumentation import semconv as sc

__all__ = ["count_grouped"]

_MAX_LABEL: Final = sc.MAX_LABEL_LENGTH
# Where a projection holds each field (exporter.index.summary.project).
_AT: Final = {name: i for i, name in enumerate(RecordSummary._fields[1:-3])}
_MODEL_AT: Final = {name: i for i, name in enumerate(ModelTokens._fields)}
_STAGE_AT: Final = {name: i for i, name in enumerate(StageSummary._fields)}


@dataclass(slots=True)
class _Runs:
    """The runs of one operation and outcome."""

    last_end: float
    runs: int = 0
    items: dict[str, int] = field(default_factory=dict)  # by item outcome, as counted
    work: int = 0  # item seconds, in nanos
    worked: int = 0  # runs that recorded item seconds (their sum may be 0)
    durations: Histogram = field(default_factory=Histogram)


@dataclass(slots=True)
class _Usage:
    """The tokens and cost of one operation and model."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cost: int = 0  # nano-dollars
    priced: int = 0  # records that priced it (their sum may be 0)


def count_grouped(projections: Iterable[Projection]) -> Aggregates:
    """The totals of ``projections`` (valid records as the index stores them), equal to
    counting each with :func:`~exporter.prometheus.series.contributions`; raises for a record
    that cannot be counted (see the module docstring)."""
    groups = _Groups()
    add = groups.add
    for f, models, stage_rows, error_types in cast(Iterable[_Read], projections):
        add(f, models, stage_rows, error_types)
    return groups.spread()


# A projection as read here: its fields' types are the summary's (see _AT)
_Read = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]

_OPERATION: Final = _AT["operation"]
_START: Final = _AT["timestamp"]
_DURATION: Final = _AT["duration_seconds"]
_STATUS: Final = _AT["status"]
_TOTAL: Final = _AT["total_items"]
_SUCCESS: Final = _AT["success_count"]
_FAILURE: Final = _AT["failure_count"]
_PARTIAL: Final = _AT["partial_count"]
_EFFICIENCY: Final = _AT["parallel_efficiency"]
_INPUT: Final = _AT["input_tokens"]
_OUTPUT: Final = _AT["output_tokens"]
_COST: Final = _AT["estimated_cost"]
_MODEL: Final = _MODEL_AT["model"]
_MODEL_INPUT: Final = _MODEL_AT["input_tokens"]
_MODEL_OUTPUT: Final = _MODEL_AT["output_tokens"]
_MODEL_CACHE_READ: Final = _MODEL_AT["cache_read_tokens"]
_MODEL_COST: Final = _MODEL_AT["cost_usd"]
_STAGE: Final = _STAGE_AT["stage"]
_STAGE_DURATION: Final = _STAGE_AT["duration_seconds"]


class _Groups:
    """The sums of the records added so far, per group (see the module docstring)."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], _Runs] = {}
        self.usage: dict[tuple[str, str], _Usage] = {}
        self.stages: dict[tuple[str, str], Histogram] = {}
        self.errors: dict[tuple[str, str], int] = {}

    def add(
        self,
        f: tuple[Any, ...],
        models: list[tuple[Any, ...]],
        stage_rows: list[tuple[Any, ...]],
        error_types: list[str],
    ) -> None:
        """Add one record: its scalars ``f`` and its child rows, as projected."""
        op: str = f[_OPERATION]
        success, failure, partial = f[_SUCCESS] or 0, f[_FAILURE] or 0, f[_PARTIAL] or 0
        outcome = outcome_of(f[_STATUS], f[_TOTAL], success, failure, partial)
        d: float | None = f[_DURATION]
        end = f[_START] + (d or 0.0)
        if not end < LATEST_TIME:
            raise ValueError(f"completion time {end!r} is past the year 9999")
        run = self.runs.get((op, outcome))
        if run is None:
            run = self.runs[(op, outcome)] = _Runs(end)
        elif end > run.last_end:
            run.last_end = end
        run.runs += 1
        items = run.items
        for label, n in (("success", success), ("failure", failure), ("partial", partial)):
            if n:
                items[label] = items.get(label, 0) + n
        unknown = (f[_TOTAL] or 0) - success - failure - partial
        if unknown > 0:
            items[UNKNOWN] = items.get(UNKNOWN, 0) + unknown
        if d is not None:
            _observe(run.durations, d, DURATION.scale)
            efficiency = f[_EFFICIENCY]
            if efficiency is not None:
                run.work += scaled(d * efficiency, ITEM_WORK.scale)
                run.worked += 1
        self._usage(op, f, models)
        for st in stage_rows:
            seconds = st[_STAGE_DURATION]
            if seconds is not None:
                number = st[_STAGE]
                key = (op, UNKNOWN if number is None else str(number))
                observed = self.stages.get(key) or self.stages.setdefault(key, Histogram())
                _observe(observed, seconds, STAGE_DURATION.scale)
        errors = self.errors
        for error_type in error_types:
            key = (op, error_type[:_MAX_LABEL])
            errors[key] = errors.get(key, 0) + 1

    def _usage(self, op: str, f: tuple[Any, ...], models: list[tuple[Any, ...]]) -> None:
        if not models:  # totals only: the model is not known
            used = self._used(op, UNKNOWN)
            used.input += f[_INPUT] or 0
            used.output += f[_OUTPUT] or 0
            cost = f[_COST]
            if cost:
                used.cost += scaled(cost, COST.scale)
                used.priced += 1
            return
        for m in models:
            used = self._used(op, m[_MODEL][:_MAX_LABEL])
            used.input += m[_MODEL_INPUT]
            used.output += m[_MODEL_OUTPUT]
            used.cache_read += m[_MODEL_CACHE_READ]
            cost = m[_MODEL_COST]
            if cost:
                used.cost += round(cost * COST.scale)
                used.priced += 1

    def _used(self, op: str, model: str) -> _Usage:
        used = self.usage.get((op, model))
        if used is None:
            used = self.usage[(op, model)] = _Usage()
        return used

    def spread(self) -> Aggregates:
        """Each group's sums, added to the series they belong to."""
        into = Aggregates()
        for (op, outcome), run in self.runs.items():
            into.records += run.runs
            into.add_count((OPERATIONS, (op, outcome)), run.runs)
            for label, n in run.items.items():
                into.add_count((ITEMS, (op, label)), n)
            if run.worked:
                into.add_count((ITEM_WORK, (op,)), run.work)
            if run.durations.count:
                into.add_observations((DURATION, (op, outcome)), run.durations)
            into.raise_gauge((LAST_COMPLETION, (op, outcome)), run.last_end)
            if outcome == "success":
                into.raise_gauge((LAST_SUCCESS, (op,)), run.last_end)
        for (op, model), used in self.usage.items():
            for token_type, n in (
                ("input", used.input),
                ("output", used.output),
                ("cache_read", used.cache_read),
            ):
                if n:
                    into.add_count((TOKENS, (op, token_type, model)), n)
            if used.priced:
                into.add_count((COST, (op, model)), used.cost)
        for (op, stage), observed in self.stages.items():
            into.add_observations((STAGE_DURATION, (op, stage)), observed)
        for key, n in self.errors.items():
            into.add_count((ERRORS, key), n)
        return into


def _observe(into: Histogram, value: float, scale: int) -> None:
    into.buckets[bisect_left(BUCKETS, value)] += 1
    into.count += 1
    into.total += scaled(value, scale)
