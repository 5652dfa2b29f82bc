"""A prometheus_client collector over the archive, kept up to date incrementally.

:class:`ArchiveCollector` loads every record summary from the archive index once (cold start),
then on each scrape asks the index what changed (cheap while the archive directory's mtime is
unchanged) and applies only the added and removed records to its running totals. A scrape
therefore costs the number of series, not the number of records, and a new record shows at the
next scrape. :meth:`ArchiveCollector.rescan` stats every file to catch records rewritten in
place; ``serve`` calls it from a background thread.

Invalid files are skipped: the index logs each once, and ``batch_metrics_exporter_invalid_records``
counts them, together with valid records whose figures cannot be counted (a duration too large
for any clock). A failing scan (archive unreadable, say) keeps the last complete figures, logs,
and increments ``batch_metrics_exporter_scan_errors_total``: a scrape never fails because of the
archive. An update is all or nothing: one that fails half-way applies none of its changes, and
the next one recounts from scratch. ``batch_metrics_exporter_last_scan_timestamp_seconds`` is
the time of the last successful scan, the time of the figures served.

Every bounded series (operation x outcome, :data:`~exporter.prometheus.series.ZERO_SERIES`) is
exposed from the start, at zero until a record adds to it, so that ``increase()`` in the alert
rules sees the first runs of an operation and an all-failed operation has a success series.
The counters are derived from the archive alone, so a restart yields the same values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.index.store import ArchiveIndex, RecordSummary, RefreshResult
from exporter.prometheus.aggregates import LE_VALUES, Aggregates
from exporter.prometheus.series import ZERO_SERIES, Contribution, contributions
from instrumentation import contract

__all__ = ["ArchiveCollector", "ScanStatus"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """The outcome of the collector's last look at the archive."""

    ok: bool
    records: int
    invalid: int
    seconds: float
    finished_at: float  # epoch seconds
    error: str | None = None


class ArchiveCollector(Collector):
    """The design contract's metrics, derived from the records of one archive index."""

    def __init__(self, index: ArchiveIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        # None: to be counted from scratch at the next update (cold start, or an update that
        # failed half-way: the index has moved on, so the deltas it gave are lost)
        self._aggregates: Aggregates | None = None
        self._families: list[Metric] | None = None  # the last complete figures, served as is
        self._invalid = 0
        self._unusable: dict[str, str] = {}  # valid records whose figures cannot be counted
        self._scan_errors = 0
        self.status = ScanStatus(False, 0, 0, 0.0, 0.0, "not scanned yet")

    # -- updating ------------------------------------------------------------------------

    def update(self, *, full: bool = False) -> ScanStatus:
        """Bring the totals up to date with the archive; never raises for archive problems.

        Single flight: a scrape that arrives while another update runs waits for it and shares
        its result instead of looking at the archive again, so concurrent scrapes during a
        burst of new records cost one refresh, not one each.
        """
        if not full and not self._lock.acquire(blocking=False):
            with self._lock:
                return self.status
        if full:
            self._lock.acquire()
        try:
            return self._update_locked(full=full)
        finally:
            self._lock.release()

    def _update_locked(self, *, full: bool) -> ScanStatus:
        started = time.perf_counter()
        try:
            if self._aggregates is None:
                self._load_cold()
            else:
                self._apply(self.index.refresh(full=full))
        except Exception as exc:  # keep serving the last complete figures
            self._scan_errors += 1
            reason = f"{type(exc).__name__}: {exc}"
            repeated = reason == self.status.error
            _log.log(
                logging.DEBUG if repeated else logging.WARNING,
                "scanning archive %s failed: %s",
                self.index.archive,
                reason,
            )
            # finished_at stays the last successful scan's: the time of the figures served
            last = self.status
            self.status = ScanStatus(
                False, last.records, last.invalid, 0.0, last.finished_at, reason
            )
            return self.status
        assert self._aggregates is not None
        self.status = ScanStatus(
            True,
            self._aggregates.records,
            self._invalid,
            time.perf_counter() - started,
            time.time(),
        )
        return self.status

    def rescan(self) -> ScanStatus:
        """Like :meth:`update`, but also re-read files rewritten in place (stats every file)."""
        return self.update(full=True)

    def _contribution(self, s: RecordSummary, unusable: dict[str, str]) -> Contribution | None:
        try:
            return contributions(s)
        except ValueError as exc:
            _log.warning("not counting %s: %s", self.index.archive / s.file, exc)
            unusable[s.file] = str(exc)
            return None

    def _load_cold(self) -> None:
        """Count every record from scratch; the collector's state changes only at the end."""
        self._aggregates = None  # until this succeeds, the next update starts over
        result = self.index.refresh()
        unusable: dict[str, str] = {}
        built = Aggregates()
        for summary in self.index.summaries():
            c = self._contribution(summary, unusable)
            if c is not None:
                built.apply(c)
        families = _render(built)
        self._aggregates, self._families, self._unusable = built, families, unusable
        self._invalid = len(result.invalid) + len(unusable)

    def _apply(self, result: RefreshResult) -> None:
        """Apply the records added and removed since the last update, all or nothing."""
        if result.reset:  # the index changed under us: the deltas cannot be trusted
            _log.info("index of %s changed by another process: recounting", self.index.archive)
            self._load_cold()
            return
        aggregates = self._aggregates
        assert aggregates is not None
        unusable = dict(self._unusable)
        if result.added or result.removed:
            # The index has already moved past these changes: should anything below fail, the
            # totals are recounted at the next update, and until then the last complete
            # figures (rendered before anything is touched) are served.
            self._aggregates = None
            if self._families is None:
                self._families = _render(aggregates)
            pending: list[tuple[Contribution, int]] = []
            for gone in result.removed:
                if unusable.pop(gone.file, None) is None:
                    pending.append((contributions(gone), -1))  # counted before, so countable
            for new in result.added:
                c = self._contribution(new, unusable)
                if c is not None:
                    pending.append((c, 1))
            for c, sign in pending:
                aggregates.apply(c, sign)
            families = _render(aggregates)
            self._aggregates, self._families = aggregates, families
        self._unusable = unusable
        self._invalid = len(result.invalid) + len(unusable)

    # -- exposing ------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Update from the archive, then yield the contract's families and self-metrics."""
        status = self.update()
        with self._lock:
            families = list(self._families or ())
            scan_errors = self._scan_errors
        yield from families
        yield from _self_metrics(status, scan_errors)


def _render(aggregates: Aggregates) -> list[Metric]:
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


def _self_metrics(status: ScanStatus, scan_errors: int) -> Iterator[Metric]:
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
