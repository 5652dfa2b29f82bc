"""Running totals of the contract's metrics over the records counted so far.

:class:`Aggregates` adds one record's :class:`~exporter.prometheus.series.Contribution` in time
proportional to the series it touches, never to the archive's size, and renders its state as
metric families. Nothing is ever subtracted: ``serve``'s counters never go down
(docs/prometheus.md). Values are integers (counts, nanoseconds, nano-dollars), so any order of
additions gives exactly the same totals, and :meth:`Aggregates.state` /
:meth:`Aggregates.from_state` carry them exactly across a restart (the ledger keeps them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString as _untyped_float_to_go

from exporter.prometheus.series import (
    BUCKETS,
    FAMILIES,
    Contribution,
    Family,
    LabelValues,
    SeriesKey,
    bucket_index,
)

__all__ = ["LE_VALUES", "STATE_FORMAT", "Aggregates", "Histogram", "SeriesKey"]

# How prometheus_client writes a float (Go's formatting: ``600.0``, ``+Inf``, ``1e+06``).
_format_value: Final = cast(Callable[[float], str], _untyped_float_to_go)

# The ``le`` label values as prometheus_client writes them (``600.0``, ``+Inf``); the archive
# path, the in-process path and backfill all carry these exact strings.
LE_VALUES: Final[tuple[str, ...]] = (*(_format_value(b) for b in BUCKETS), "+Inf")

# What a saved state must have been written with to be loaded: this layout's version and the
# families it refers to (names, kinds, labels, scales) and the buckets. Anything else is a
# stale state, and the totals are counted again from the records.
_STATE_VERSION: Final = 1
STATE_FORMAT: Final = (
    f"{_STATE_VERSION}-"
    + hashlib.sha256(
        repr(([(f.name, f.kind, f.labels, f.scale) for f in FAMILIES], tuple(BUCKETS))).encode()
    ).hexdigest()[:16]
)
_BY_NAME: Final = {f.name: f for f in FAMILIES}
_V = TypeVar("_V")


@dataclass(slots=True)
class Histogram:
    """The observations of one histogram series: per bucket (not cumulative, the last one
    +Inf), their count and their sum in the family's scale."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    count: int = 0
    total: int = 0  # in the family's scale

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for n in self.buckets:
            running += n
            out.append(running)
        return out


class Aggregates:
    """The contract's metrics summed over the records added so far."""

    def __init__(self) -> None:
        self.counters: dict[SeriesKey, int] = {}
        self.histograms: dict[SeriesKey, Histogram] = {}
        self.gauges: dict[SeriesKey, float] = {}  # the latest time of each timestamp gauge
        self.records = 0

    def apply(self, c: Contribution) -> None:
        """Add one record."""
        self.apply_all((c,))

    def apply_all(self, contributions: Iterable[Contribution]) -> None:
        """Add many records (the loop of :meth:`apply`, with its lookups bound once)."""
        counters, histograms, gauges = self.counters, self.histograms, self.gauges
        get_counter, get_histogram, get_gauge = counters.get, histograms.get, gauges.get
        n = 0
        for c in contributions:
            n += 1
            for key, amount in c.counters:
                counters[key] = get_counter(key, 0) + amount
            for key, observed, in_scale in c.observations:
                hist = get_histogram(key)
                if hist is None:
                    hist = histograms[key] = Histogram()
                hist.buckets[bucket_index(observed)] += 1
                hist.count += 1
                hist.total += in_scale
            for key, time in c.gauges:
                latest = get_gauge(key)
                if latest is None or time > latest:
                    gauges[key] = time
        self.records += n

    def add(self, other: Aggregates) -> None:
        """Add totals counted apart (another share of the same records' contributions)."""
        for key, n in other.counters.items():
            self.add_count(key, n)
        for key, theirs in other.histograms.items():
            self.add_observations(key, theirs)
        for key, time in other.gauges.items():
            self.raise_gauge(key, time)
        self.records += other.records

    def add_count(self, key: SeriesKey, n: int) -> None:
        """Add ``n`` to the counter ``key``, which exists from then on (also at 0)."""
        self.counters[key] = self.counters.get(key, 0) + n

    def add_observations(self, key: SeriesKey, observed: Histogram) -> None:
        """Add the observations ``observed`` holds to the histogram ``key``."""
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram()
        hist.buckets = [a + b for a, b in zip(hist.buckets, observed.buckets, strict=True)]
        hist.count += observed.count
        hist.total += observed.total

    def raise_gauge(self, key: SeriesKey, time: float) -> None:
        """Set the timestamp gauge ``key`` to ``time`` unless it holds a later one."""
        latest = self.gauges.get(key)
        if latest is None or time > latest:
            self.gauges[key] = time

    def touch(self, c: Contribution) -> None:
        """Create the counter and histogram series ``c`` would change, at 0, without counting
        it: a series first exposed at 0 lets ``increase()`` see its first increment."""
        for key, _ in c.counters:
            self.counters.setdefault(key, 0)
        for key, _, _ in c.observations:
            if key not in self.histograms:
                self.histograms[key] = Histogram()

    def has(self, key: SeriesKey) -> bool:
        """Whether the counter or histogram series ``key`` exists (maybe at 0)."""
        return key in self.counters or key in self.histograms

    def series_keys(self, c: Contribution) -> Iterator[SeriesKey]:
        """The counter and histogram series ``c`` changes."""
        for key, _ in c.counters:
            yield key
        for key, _, _ in c.observations:
            yield key

    def keys(self) -> Iterator[SeriesKey]:
        """Every series that currently has a value."""
        yield from self.counters
        yield from self.histograms
        yield from self.gauges

    def copy(self) -> Aggregates:
        """An independent copy (the totals are a few hundred series)."""
        other = Aggregates()
        other.counters = dict(self.counters)
        other.histograms = {
            k: Histogram(list(h.buckets), h.count, h.total) for k, h in self.histograms.items()
        }
        other.gauges = dict(self.gauges)
        other.records = self.records
        return other

    def metric_families(self) -> list[Metric]:
        """The current state as prometheus_client metric families, series sorted by labels."""
        built: dict[Family, Metric] = {}
        for family in FAMILIES:
            maker = {
                "counter": CounterMetricFamily,
                "gauge": GaugeMetricFamily,
                "histogram": HistogramMetricFamily,
            }[family.kind]
            built[family] = maker(family.name, family.help, labels=family.labels)
        for family, labels in sorted(self.keys(), key=_sort_key):
            metric = built[family]
            if family.kind == "histogram":
                hist = self.histograms[(family, labels)]
                cumulative = hist.cumulative()
                assert isinstance(metric, HistogramMetricFamily)
                metric.add_metric(
                    list(labels),
                    buckets=list(zip(LE_VALUES, cumulative, strict=True)),
                    sum_value=_scaled(hist.total, family.scale),
                )
            elif family.kind == "counter":
                assert isinstance(metric, CounterMetricFamily)
                value = _scaled(self.counters[(family, labels)], family.scale)
                metric.add_metric(list(labels), value)
            else:
                assert isinstance(metric, GaugeMetricFamily)
                metric.add_metric(list(labels), self.gauges[(family, labels)])
        return list(built.values())

    # -- persistence -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The totals as plain JSON data (exact: integers, and gauge times as floats), series
        in order: the same totals give the same data, however they were counted."""
        return {
            "format": STATE_FORMAT,
            "records": self.records,
            "counters": [[f.name, list(labels), n] for (f, labels), n in _in_order(self.counters)],
            "histograms": [
                [f.name, list(labels), h.buckets, h.count, h.total]
                for (f, labels), h in _in_order(self.histograms)
            ],
            "gauges": [[f.name, list(labels), t] for (f, labels), t in _in_order(self.gauges)],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Aggregates | None:
        """The totals :meth:`state` returned; None if ``state`` is of another format."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            return None
        built = cls()
        try:
            built.records = int(state["records"])
            for name, labels, n in state["counters"]:
                built.counters[(_BY_NAME[name], tuple(labels))] = int(n)
            for name, labels, buckets, count, total in state["histograms"]:
                if len(buckets) != len(BUCKETS) + 1:
                    return None
                hist = Histogram([int(b) for b in buckets], int(count), int(total))
                built.histograms[(_BY_NAME[name], tuple(labels))] = hist
            for name, labels, time in state["gauges"]:
                built.gauges[(_BY_NAME[name], tuple(labels))] = float(time)
        except (KeyError, TypeError, ValueError):
            return None
        return built


def _scaled(n: int, scale: int) -> float:
    return float(n) if scale == 1 else n / scale


def _sort_key(key: SeriesKey) -> tuple[str, LabelValues]:
    return key[0].name, key[1]


def _in_order(series: dict[SeriesKey, _V]) -> list[tuple[SeriesKey, _V]]:
    return sorted(series.items(), key=lambda item: _sort_key(item[0]))
