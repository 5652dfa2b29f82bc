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
    yield GaugeMetricFamily(
        contract.EXPORTER_RECORDS.prometheus_base,
        contract.EXPORTER_RECORDS.help,
        value=status.records,
    )
    yield GaugeMetricFamily(
        contract.EXPORTER_INVALID_RECORDS.prometheus_base,
        contract.EXPORTER_INVALID_RECORDS.help,
        value=status.invalid,
    )
    yield GaugeMetricFamily(
        contract.EXPORTER_LAST_SCAN_DURATION.prometheus_base,
        contract.EXPORTER_LAST_SCAN_DURATION.help,
        value=status.seconds,
    )
    yield GaugeMetricFamily(
        contract.EXPORTER_LAST_SCAN_TIMESTAMP.prometheus_base,
        contract.EXPORTER_LAST_SCAN_TIMESTAMP.help,
        value=status.finished_at,
    )
    yield CounterMetricFamily(
        contract.EXPORTER_SCAN_ERRORS.prometheus_base,
        contract.EXPORTER_SCAN_ERRORS.help,
        value=scan_errors,
    )
    corrected = CounterMetricFamily(
        contract.EXPORTER_CORRECTIONS.prometheus_base,
        contract.EXPORTER_CORRECTIONS.help,
        labels=contract.EXPORTER_CORRECTIONS.labels,
    )
    for kind, n in sorted(corrections.items()):
        corrected.add_metric([kind], n)
    yield corrected
    yield CounterMetricFamily(
        contract.EXPORTER_LATE_RECORDS.prometheus_base,
        contract.EXPORTER_LATE_RECORDS.help,
        value=late,
    )
