"""The archive's history as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

Prometheus computes ``increase()`` and ``rate()`` from samples, so a counter that appears with
its first record already counted loses that record, and one sampled only when it changes is
extrapolated across the gaps. The history is therefore written as a scrape would have seen it:
every series has a sample on every step of a regular grid (``step`` seconds, default 60) from
one step before the first record's completion, where every counter and histogram is 0, to the
first grid point at or after the last completion. A record counts from the first grid point at
or after its completion time. All counters and histograms share these timestamps, so the ratios
the rules compute (mean duration, success rate) are exact at any grid point. Timestamp gauges
(``batch_last_*_timestamp_seconds``) start at their first value.

The output holds, per metric family, ``# TYPE`` and ``# HELP``, then each series (sorted by
labels) with its samples in time order, timestamps in seconds, and ends with ``# EOF``. Its
size is steps x series: a year at 60 s is 525,600 samples per series; pick a coarser ``step``
for long histories (at most the lookback delta, 5 minutes by default, so that instant queries
at any past time find a sample).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TextIO

from exporter.index.store import RecordSummary
from exporter.prometheus.aggregates import Aggregates, SeriesKey, format_value
from exporter.prometheus.series import FAMILIES, Contribution, contributions

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_STEP",
    "BackfillStats",
    "BackfillTooLarge",
    "escape_label_value",
    "write_openmetrics",
]

DEFAULT_STEP: Final = 60
# About 5 GiB of text and a minute of promtool per 50 million samples: refuse more unless asked.
DEFAULT_MAX_SAMPLES: Final = 50_000_000


class BackfillTooLarge(ValueError):
    """The history would need more samples than allowed; ``str()`` suggests a step that fits."""


_Timeline = list[tuple[int, tuple[str, ...]]]  # (step index, formatted values of each sample)


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


def _series_text(name: str, label_names: Iterable[str], label_values: Iterable[str]) -> str:
    pairs = ",".join(
        f'{n}="{escape_label_value(v)}"' for n, v in zip(label_names, label_values, strict=True)
    )
    return f"{name}{{{pairs}}} " if pairs else f"{name} "


def _build_timelines(
    ordered: list[Contribution], start: int, step: int
) -> tuple[dict[SeriesKey, _Timeline], dict[SeriesKey, list[str]], int]:
    """Each series' formatted values at the steps where they changed, and the last step."""
    aggregates = Aggregates()
    timelines: dict[SeriesKey, _Timeline] = defaultdict(list)
    prefixes: dict[SeriesKey, list[str]] = {}
    last_step = 0
    i = 0
    while i < len(ordered):
        k = max(1, math.ceil((ordered[i].time - start) / step))
        touched: set[SeriesKey] = set()
        while i < len(ordered) and math.ceil((ordered[i].time - start) / step) <= k:
            touched |= aggregates.apply(ordered[i])
            i += 1
        for key in touched:
            samples = aggregates.samples(key)
            if key not in prefixes:
                prefixes[key] = [
                    _series_text(s.name, s.label_names, s.label_values) for s in samples
                ]
            timelines[key].append((k, tuple(format_value(s.value) + " " for s in samples)))
        last_step = k
    return timelines, prefixes, last_step


def write_openmetrics(
    summaries: Iterable[RecordSummary],
    out: TextIO,
    *,
    step: int = DEFAULT_STEP,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
) -> BackfillStats:
    """Write the history of ``summaries`` to ``out`` as OpenMetrics (see the module docstring).

    Raises BackfillTooLarge, before writing anything, when the output would hold more than
    ``max_samples`` samples (None: no limit).
    """
    if step < 1:
        raise ValueError("step must be at least 1 second")
    countable: list[Contribution] = []
    skipped = 0
    for summary in summaries:
        try:
            countable.append(contributions(summary))
        except ValueError:
            skipped += 1
    ordered = sorted(countable, key=lambda c: c.time)
    if not ordered:
        out.write("# EOF\n")
        return BackfillStats(0, 0, 0, None, None, skipped)
    start = (math.floor(ordered[0].time / step) - 1) * step  # everything is 0 here
    timelines, prefixes, last_step = _build_timelines(ordered, start, step)
    _check_size(prefixes, last_step, ordered[-1].time - ordered[0].time, step, max_samples)
    stamps = [f"{start + k * step}\n" for k in range(last_step + 1)]
    samples = 0
    by_family: dict[str, list[SeriesKey]] = defaultdict(list)
    for key in timelines:
        by_family[key[0].name].append(key)
    for family in FAMILIES:
        keys = sorted(by_family.get(family.name, ()), key=lambda key: key[1])
        if not keys:
            continue
        out.write(f"# TYPE {family.name} {family.kind}\n# HELP {family.name} {family.help}\n")
        for key in keys:
            timeline = timelines[key]
            series_prefixes = prefixes[key]
            first = 0 if family.kind != "gauge" else timeline[0][0]
            samples += _write_series(out, series_prefixes, timeline, stamps, first)
    out.write("# EOF\n")
    return BackfillStats(
        len(ordered),
        sum(len(p) for p in prefixes.values()),
        samples,
        start,
        start + last_step * step,
        skipped,
    )


def _check_size(
    prefixes: dict[SeriesKey, list[str]], last_step: int, span: float, step: int, limit: int | None
) -> None:
    per_step = sum(len(p) for p in prefixes.values())
    needed = per_step * (last_step + 1)  # at most: gauges start at their first value
    if limit is None or needed <= limit:
        return
    # A grid of step s over the span has at most span / s + 3 points.
    allowed_steps = limit // per_step
    advice = "raise the limit"
    if allowed_steps > 3:
        fitting = max(1, math.ceil(span / (allowed_steps - 3)))
        advice = f"use a step of at least {fitting} s or {advice}"
    raise BackfillTooLarge(
        f"the history needs {needed:,} samples ({per_step} series x {last_step + 1:,} steps of "
        f"{step} s), more than the limit of {limit:,}: {advice}"
    )


def _write_series(
    out: TextIO, series_prefixes: list[str], timeline: _Timeline, stamps: list[str], first: int
) -> int:
    """Write one series' samples at steps ``first`` .. last; before its first change it is 0."""
    zeros = tuple("0.0 " for _ in series_prefixes)
    current = zeros
    nxt = 0
    lines: list[str] = []
    for k in range(first, len(stamps)):
        if nxt < len(timeline) and timeline[nxt][0] == k:
            current = timeline[nxt][1]
            nxt += 1
        stamp = stamps[k]
        lines.extend(p + v + stamp for p, v in zip(series_prefixes, current, strict=True))
    out.write("".join(lines))
    return len(lines)
