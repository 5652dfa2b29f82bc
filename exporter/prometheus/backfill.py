"""The archive's history as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

A record counts at its end time (start plus duration; the start when the duration is unknown),
the rule ``serve`` and ``trends --since`` follow too (docs/architecture.md, "Windows: when a
record counts"). The output holds samples only where something happened, so its size grows
with the number of records, not with the span they cover:

* a series gets a sample at each time ``t`` its value changes, and one a millisecond before,
  holding the value it had until then (0 before its first increment). ``increase()`` over any
  window then sees every record that ended inside it, including the first of a series, and
  none that ended outside it;
* the counters that the per-operation ratios combine (duration ``_sum`` and ``_count`` of every
  outcome, items, runs, item work, tokens, cost) are sampled together at every end time of
  their operation, from one millisecond before its first run. All series of one ratio then
  share their timestamps, so Prometheus extrapolates numerator and denominator by the same
  factor and the ratio (mean duration, success rate, tokens and cost per run, efficiency) is
  exact. Only a series whose first increment falls inside the window is extrapolated
  differently (Prometheus does not extrapolate a counter below zero): see docs/prometheus.md
  for the size of that difference;
* histogram buckets and stage histograms are sampled only where they change; timestamp gauges
  (``batch_last_*_timestamp_seconds``) get one sample at each change.

Timestamps are written in seconds with millisecond precision (what the TSDB keeps); records
ending within the same millisecond are counted together. Extra labels (``labels``) go on every
series: history loaded more than once must not share series with earlier loads or with the
live scrape (which adds ``job`` and ``instance``), or Prometheus would see one counter jump.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TextIO

from exporter.index.summary import RecordSummary
from exporter.prometheus.aggregates import LE_VALUES
from exporter.prometheus.series import (
    BUCKETS,
    COST,
    DURATION,
    FAMILIES,
    ITEM_WORK,
    ITEMS,
    OPERATIONS,
    TOKENS,
    Contribution,
    Family,
    LabelValues,
    bucket_index,
    contributions,
)

__all__ = [
    "BackfillStats",
    "escape_label_value",
    "write_openmetrics",
]

_EPSILON_MS: Final = 1  # the "just before" sample: one TSDB tick
# Counter families whose per-operation sums the rules and panels divide by one another.
_RATIO_FAMILIES: Final = frozenset({OPERATIONS, ITEMS, ITEM_WORK, TOKENS, COST})
_BUCKET_COUNT: Final = len(BUCKETS) + 1


@dataclass(frozen=True, slots=True)
class BackfillStats:
    """What a backfill wrote: records counted, series and samples written, first and last time,
    and the records skipped because their figures cannot be counted."""

    records: int
    series: int
    samples: int
    start: float | None
    end: float | None
    skipped: int = 0


def escape_label_value(value: str) -> str:
    """A label value as OpenMetrics and the Prometheus text format quote it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Line:
    """One sample line's history: times (ms) and exposed values, and its running value.

    Counters and histogram parts run in the family's integer units (exact, as in ``serve``);
    gauges hold a time in seconds.
    """

    __slots__ = ("scale", "times", "value", "values")

    def __init__(self, scale: int) -> None:
        self.times = array("q")
        self.values = array("d")
        self.value: float = 0
        self.scale = scale

    def sample(self, t: int, new: float, *, hold: bool) -> None:
        """Record ``new`` at ``t``; with ``hold``, also the value until then just before ``t``."""
        times = self.times
        if hold and (not times or times[-1] < t - _EPSILON_MS):
            times.append(t - _EPSILON_MS)
            self.values.append(self.value / self.scale)
        if times and times[-1] == t:
            self.values[-1] = new / self.scale
        else:
            times.append(t)
            self.values.append(new / self.scale)
        self.value = new


# A sample line: (family, label values, part) where part is a bucket index, "count", "sum",
# or "" for a counter or gauge.
_LineKey = tuple[Family, LabelValues, int | str]
Observed = tuple[float, int]  # an observation's value, and that value in the family's scale


class _History:
    """Every line's samples, built by applying contributions in time order."""

    def __init__(self) -> None:
        self.lines: dict[_LineKey, _Line] = {}
        self._ratio_lines: dict[str, list[_LineKey]] = defaultdict(list)  # per operation

    def _line(self, key: _LineKey) -> _Line:
        line = self.lines.get(key)
        if line is None:
            family, _, part = key
            scale = family.scale if part in ("", "sum") and family.kind != "gauge" else 1
            line = self.lines[key] = _Line(scale)
        return line

    def declare(self, c: Contribution) -> None:
        """First pass: note the ratio lines of ``c``'s operation, so all start together."""
        for (family, labels), _ in c.counters:
            if family in _RATIO_FAMILIES:
                self._ratio_key(labels[0], (family, labels, ""))
        for (family, labels), _, _ in c.observations:
            if family is DURATION:
                self._ratio_key(labels[0], (family, labels, "count"))
                self._ratio_key(labels[0], (family, labels, "sum"))

    def _ratio_key(self, operation: str, key: _LineKey) -> None:
        if key not in self.lines:
            self._line(key)
            self._ratio_lines[operation].append(key)

    def _add(self, changed: dict[_LineKey, float], key: _LineKey, n: float) -> None:
        value = changed.get(key)
        changed[key] = (self._line(key).value if value is None else value) + n

    def _observe(
        self, changed: dict[_LineKey, float], family: Family, labels: LabelValues, c: Observed
    ) -> None:
        observed, in_scale = c
        first = bucket_index(observed)
        for i in range(first):  # a new histogram shows all its buckets, from 0
            key = (family, labels, i)
            if key not in self.lines and key not in changed:
                changed[key] = self._line(key).value
        for i in range(first, _BUCKET_COUNT):
            self._add(changed, (family, labels, i), 1)
        self._add(changed, (family, labels, "count"), 1)
        self._add(changed, (family, labels, "sum"), in_scale)

    def apply(self, t: int, batch: list[Contribution]) -> None:
        """Count every contribution of ``batch`` (all ending at ``t`` ms)."""
        changed: dict[_LineKey, float] = {}
        for c in batch:
            for (family, labels), n in c.counters:
                self._add(changed, (family, labels, ""), n)
            for (family, labels), observed, in_scale in c.observations:
                self._observe(changed, family, labels, (observed, in_scale))
            for (family, labels), when in c.gauges:
                gauge: _LineKey = (family, labels, "")
                line = self._line(gauge)
                if when > changed.get(gauge, line.value if line.times else -math.inf):
                    changed[gauge] = when
        lines = self.lines
        for key, value in changed.items():
            lines[key].sample(t, value, hold=key[0].kind != "gauge")
        # every contribution's first counter is its run (OPERATIONS), labelled operation first
        for operation in {c.counters[0][0][1][0] for c in batch}:
            for key in self._ratio_lines[operation]:
                if key not in changed:
                    line = lines[key]
                    line.sample(t, line.value, hold=True)


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def _prefix(family: Family, labels: LabelValues, part: int | str, extra: str) -> str:
    pairs = [f'{n}="{escape_label_value(v)}"' for n, v in zip(family.labels, labels, strict=True)]
    if isinstance(part, int):
        name = family.name + "_bucket"
        pairs.append(f'le="{LE_VALUES[part]}"')
    elif part:
        name = f"{family.name}_{part}"
    else:
        name = family.name + ("_total" if family.kind == "counter" else "")
    if extra:
        pairs.insert(0, extra)
    return f"{name}{{{','.join(pairs)}}} "


def _part_order(part: int | str) -> tuple[int, int]:
    if isinstance(part, int):
        return (0, part)
    return (1, 0) if part == "count" else (2, 0) if part == "sum" else (0, 0)


def _value_text(value: float) -> str:
    return repr(value) if value != int(value) or abs(value) >= 1e15 else f"{int(value)}.0"


def write_openmetrics(
    summaries: Iterable[RecordSummary],
    out: TextIO,
    *,
    labels: Mapping[str, str] | None = None,
) -> BackfillStats:
    """Write the history of ``summaries`` to ``out`` as OpenMetrics (see the module docstring).

    ``labels`` are added to every series (label names are not checked here: the CLI does).
    """
    countable: list[Contribution] = []
    skipped = 0
    for summary in summaries:
        try:
            countable.append(contributions(summary))
        except ValueError:
            skipped += 1
    if not countable:
        out.write("# EOF\n")
        return BackfillStats(0, 0, 0, None, None, skipped)
    countable.sort(key=lambda c: c.time)
    history = _History()
    for c in countable:
        history.declare(c)
    i = 0
    while i < len(countable):
        t = _ms(countable[i].time)
        j = i
        while j < len(countable) and _ms(countable[j].time) == t:
            j += 1
        history.apply(t, countable[i:j])
        i = j
    extra = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted((labels or {}).items()))
    by_family: dict[Family, list[_LineKey]] = defaultdict(list)
    for key in history.lines:
        by_family[key[0]].append(key)
    samples = 0
    for family in FAMILIES:
        keys = by_family.get(family)
        if not keys:
            continue
        keys.sort(key=lambda k: (k[1], _part_order(k[2])))
        out.write(f"# TYPE {family.name} {family.kind}\n# HELP {family.name} {family.help}\n")
        for key in keys:
            line = history.lines[key]
            prefix = _prefix(*key, extra)
            out.write(
                "".join(
                    f"{prefix}{_value_text(v)} {t // 1000}.{t % 1000:03d}\n"
                    for t, v in zip(line.times, line.values, strict=True)
                )
            )
            samples += len(line.times)
    out.write("# EOF\n")
    first = min(line.times[0] for line in history.lines.values())
    last = max(line.times[-1] for line in history.lines.values())
    return BackfillStats(
        len(countable), len(history.lines), samples, first / 1000, last / 1000, skipped
    )
