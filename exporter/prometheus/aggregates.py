"""Running totals of the contract's metrics over a set of records, updatable by deltas.

:class:`Aggregates` adds or removes one record's :class:`~exporter.prometheus.series.Contribution`
in time proportional to the series it touches, never to the archive's size, and renders its
state as samples. Values are integers (counts, nanoseconds, nano-dollars), so any order of
additions and removals gives exactly the same totals as a rebuild from scratch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, NamedTuple, cast

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
    bucket_index,
)

__all__ = ["LE_VALUES", "Aggregates", "Sample", "SeriesKey", "format_value"]

# How prometheus_client writes a float (Go's formatting: ``600.0``, ``+Inf``, ``1e+06``).
format_value: Final = cast(Callable[[float], str], _untyped_float_to_go)

# The ``le`` label values as prometheus_client writes them (``600.0``, ``+Inf``); the archive
# path, the in-process path and backfill all carry these exact strings.
LE_VALUES: Final[tuple[str, ...]] = (*(format_value(b) for b in BUCKETS), "+Inf")

SeriesKey = tuple[Family, LabelValues]


class Sample(NamedTuple):
    """One exposed sample: full name, label names and values (``le`` last if any), value."""

    name: str
    label_names: tuple[str, ...]
    label_values: tuple[str, ...]
    value: float


@dataclass(slots=True)
class _Histogram:
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
    """The contract's metrics summed over the records added (and not removed) so far."""

    def __init__(self) -> None:
        self.counters: dict[SeriesKey, int] = {}
        self.histograms: dict[SeriesKey, _Histogram] = {}
        self._gauge_times: dict[SeriesKey, Counter[float]] = {}
        self._gauge_max: dict[SeriesKey, float] = {}
        self.records = 0

    def apply(self, c: Contribution, sign: int = 1) -> set[SeriesKey]:
        """Add (``sign=1``) or remove (``-1``) one record; returns the series it touched."""
        touched: set[SeriesKey] = set()
        self.records += sign
        for family, labels, n in c.counters:
            key = (family, labels)
            value = self.counters.get(key, 0) + sign * n
            if value:
                self.counters[key] = value
            else:
                self.counters.pop(key, None)
            touched.add(key)
        for family, labels, observed, in_scale in c.observations:
            key = (family, labels)
            hist = self.histograms.get(key)
            if hist is None:
                hist = self.histograms[key] = _Histogram()
            hist.buckets[bucket_index(observed)] += sign
            hist.count += sign
            hist.total += sign * in_scale
            if hist.count == 0:
                del self.histograms[key]
            touched.add(key)
        for family, labels, time in c.gauges:
            key = (family, labels)
            self._apply_gauge(key, time, sign)
            touched.add(key)
        return touched

    def touch(self, c: Contribution) -> None:
        """Create the counter and histogram series ``c`` would change, at 0, without counting
        it: a series first exposed at 0 lets ``increase()`` see its first increment."""
        for family, labels, _ in c.counters:
            self.counters.setdefault((family, labels), 0)
        for family, labels, _, _ in c.observations:
            if (family, labels) not in self.histograms:
                self.histograms[(family, labels)] = _Histogram()

    def has(self, key: SeriesKey) -> bool:
        """Whether the counter or histogram series ``key`` exists (maybe at 0)."""
        return key in self.counters or key in self.histograms

    def series_keys(self, c: Contribution) -> Iterator[SeriesKey]:
        """The counter and histogram series ``c`` changes."""
        for family, labels, _ in c.counters:
            yield family, labels
        for family, labels, _, _ in c.observations:
            yield family, labels

    def _apply_gauge(self, key: SeriesKey, time: float, sign: int) -> None:
        times = self._gauge_times.setdefault(key, Counter())
        times[time] += sign
        if sign > 0:
            if time > self._gauge_max.get(key, float("-inf")):
                self._gauge_max[key] = time
            return
        if times[time] <= 0:
            del times[time]
        if not times:
            del self._gauge_times[key]
            self._gauge_max.pop(key, None)
        elif self._gauge_max.get(key) == time and time not in times:
            self._gauge_max[key] = max(times)  # only when the latest one was removed

    def gauge(self, key: SeriesKey) -> float | None:
        return self._gauge_max.get(key)

    def keys(self) -> Iterator[SeriesKey]:
        """Every series that currently has a value."""
        yield from self.counters
        yield from self.histograms
        yield from self._gauge_max

    def samples(self, key: SeriesKey) -> list[Sample]:
        """The samples of one series now: one for a counter or gauge, all parts of a histogram.

        Empty when the series has no value (every record that made it was removed).
        """
        family, labels = key
        names = family.labels
        if family.kind == "counter":
            n = self.counters.get(key)
            if n is None:
                return []
            return [Sample(family.name + "_total", names, labels, _scaled(n, family.scale))]
        if family.kind == "gauge":
            latest = self._gauge_max.get(key)
            return [] if latest is None else [Sample(family.name, names, labels, latest)]
        hist = self.histograms.get(key)
        if hist is None:
            return []
        with_le = (*names, "le")
        out = [
            Sample(family.name + "_bucket", with_le, (*labels, le), float(n))
            for le, n in zip(LE_VALUES, hist.cumulative(), strict=True)
        ]
        out.append(Sample(family.name + "_count", names, labels, float(hist.count)))
        out.append(Sample(family.name + "_sum", names, labels, _scaled(hist.total, family.scale)))
        return out

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
                metric.add_metric(list(labels), self._gauge_max[(family, labels)])
        return list(built.values())

    @classmethod
    def of(cls, contributions: Iterable[Contribution]) -> Aggregates:
        built = cls()
        for c in contributions:
            built.apply(c)
        return built


def _scaled(n: int, scale: int) -> float:
    return float(n) if scale == 1 else n / scale


def _sort_key(key: SeriesKey) -> tuple[str, LabelValues]:
    return key[0].name, key[1]
