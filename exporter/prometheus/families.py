"""The families ``serve`` exposes: the archive's totals, with a zero for every bounded series
no record made yet, and the exporter's own (scans, corrections, late records)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.prometheus.aggregates import LE_VALUES, Aggregates
from exporter.prometheus.series import ZERO_SERIES
from instrumentation import contract

if TYPE_CHECKING:
    from exporter.prometheus.collector import ScanStatus

__all__ = ["archive_families", "exporter_families"]


def archive_families(aggregates: Aggregates) -> list[Metric]:
    """The aggregates' families, plus a zero for every bounded series no record made yet."""
    families = aggregates.metric_families()
    by_name = {metric.name: metric for metric in families}
    for family, labels in ZERO_SERIES:
        key = (family, labels)
        metric = by_name[family.name]
        if family.kind == "histogram":
            if key in aggregates.histograms:
                continue
            assert isinstance(metric, HistogramMetricFamily)
            metric.add_metric(list(labels), buckets=[(le, 0.0) for le in LE_VALUES], sum_value=0)
        elif key not in aggregates.counters:
            assert isinstance(metric, CounterMetricFamily)
            metric.add_metric(list(labels), 0.0)
    return families


def exporter_families(
    status: ScanStatus, scan_errors: int, corrections: dict[str, int], late: int
) -> Iterator[Metric]:
    """The exporter's own families: what its last scan found, and what it could not count."""
    for gauge, value in (
        (contract.EXPORTER_RECORDS, status.records),
        (contract.EXPORTER_INVALID_RECORDS, status.invalid),
        (contract.EXPORTER_LAST_SCAN_DURATION, status.seconds),
        (contract.EXPORTER_LAST_SCAN_TIMESTAMP, status.finished_at),
    ):
        yield GaugeMetricFamily(gauge.prometheus_base, gauge.help, value=value)
    errors = contract.EXPORTER_SCAN_ERRORS
    yield CounterMetricFamily(errors.prometheus_base, errors.help, value=scan_errors)
    kinds = contract.EXPORTER_CORRECTIONS
    corrected = CounterMetricFamily(kinds.prometheus_base, kinds.help, labels=kinds.labels)
    for kind, n in sorted(corrections.items()):
        corrected.add_metric([kind], n)
    yield corrected
    late_records = contract.EXPORTER_LATE_RECORDS
    yield CounterMetricFamily(late_records.prometheus_base, late_records.help, value=late)
