"""A prometheus_client collector over the archive, kept up to date incrementally.

:class:`ArchiveCollector` loads every record summary from the archive index once (cold start),
then on each scrape asks the index what changed (cheap while the archive directory's mtime is
unchanged) and applies only the added and removed records to its running totals. A scrape
therefore costs the number of series, not the number of records, and a new record shows at the
next scrape. :meth:`ArchiveCollector.rescan` stats every file to catch records rewritten in
place; ``serve`` calls it from a background thread. :meth:`ArchiveCollector.collect_parts`
tells the exposition (:mod:`exporter.prometheus.exposition`) when the families changed, so that
``/metrics`` renders them once per change rather than at every scrape.

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

Counters never go down (docs/prometheus.md, "Counters never go down"): a record is counted
once, when first seen, and stays counted when its file is removed or rewritten; such records
are counted in ``batch_metrics_exporter_corrections_total{kind}``, and the archive (``trends``)
has the corrected figures. The archive's :class:`~exporter.index.ledger.Ledger` keeps which
records were counted (and, for removed or rewritten ones, what they counted), so a restart
gives the same counters. With ``live_only`` (the stacks) only records that end after the
ledger's cut-over and arrive on time are counted: the rest is history, for ``backfill
--missing``, counted in ``batch_metrics_exporter_late_records_total`` when first seen after
the cut-over. After the first load, a record that creates a series beyond the bounded ones is
held back one scrape while that series is exposed at 0 (``increase()`` ignores a first sample).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.index.ledger import Decision, Ledger, counts_live
from exporter.index.store import ArchiveIndex, RecordSummary, RefreshResult
from exporter.prometheus.aggregates import LE_VALUES, Aggregates, SeriesKey
from exporter.prometheus.exposition import Parts
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

    def __init__(
        self, index: ArchiveIndex, ledger: Ledger | None = None, *, live_only: bool = False
    ) -> None:
        self.index = index
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.live_only = live_only
        self._decided: dict[str, bool] = {}  # record name -> counted live (else history)
        self._cutover = float("-inf")
        self._corrections = {
            kind: self.ledger.counter(f"corrections_{kind}") for kind in ("removed", "rewritten")
        }
        self._late = self.ledger.counter("late_records")
        self._archive_records = 0
        self._loaded = False
        self._fresh: set[SeriesKey] = set()  # created at 0, not scraped yet
        self._pending: list[Contribution] = []  # waiting for their zero series to be scraped
        self._ripe: list[Contribution] = []  # their zero series were scraped: count them now
        self._lock = threading.Lock()
        # None: to be counted from scratch at the next update (cold start, or an update that
        # failed half-way: the index has moved on, so the deltas it gave are lost)
        self._aggregates: Aggregates | None = None
        self._families: Sequence[Metric] = ()  # the last complete figures, served as is
        self._version = 0  # changes whenever _families does
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
                if self._ripe:
                    for c in self._ripe:
                        self._aggregates.apply(c)
                    self._ripe.clear()
                    self._publish(self._aggregates)
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
            self._archive_records,
            self._invalid,
            time.perf_counter() - started,
            time.time(),
        )
        return self.status

    def rescan(self) -> ScanStatus:
        """Like :meth:`update`, but also re-read files rewritten in place (stats every file)."""
        return self.update(full=True)

    def _publish(self, aggregates: Aggregates) -> None:
        self._families = _render(aggregates)
        self._version += 1

    def _contribution(self, s: RecordSummary, unusable: dict[str, str]) -> Contribution | None:
        try:
            return contributions(s)
        except ValueError as exc:
            _log.warning("not counting %s: %s", self.index.archive / s.file, exc)
            unusable[s.file] = str(exc)
            return None

    def _load_cold(self) -> None:
        """Count from scratch; the collector's state changes only at the end.

        serve's own index still holds what was counted last time: a record removed or
        rewritten since comes back in ``removed`` with the figures it was counted with.
        """
        self._aggregates = None  # until this succeeds, the next update starts over
        self._loaded = False  # a count from scratch holds nothing back, as a restart
        self._pending.clear()
        self._ripe.clear()
        self._fresh.clear()
        result = self.index.refresh()
        now = time.time()
        if self.live_only:
            self._cutover = self.ledger.cutover(now)
        self._decided = self.ledger.decided()
        self._correct(result)
        tombstones = self.ledger.tombstones()
        unusable: dict[str, str] = {}
        built = Aggregates()
        counted = list(tombstones.values())
        live = {n for n, is_live in self._decided.items() if is_live and n not in tombstones}
        if live:
            counted += [s for s in self.index.summaries() if s.file in live]
        for summary in counted:
            c = self._contribution(summary, unusable)
            if c is not None:
                built.apply(c)
        self._decide_undecided(built, unusable, now)
        self._aggregates, self._unusable = built, unusable
        self._publish(built)
        self._invalid = len(result.invalid) + len(unusable)
        self._loaded = True

    def _correct(self, result: RefreshResult) -> None:
        """Keep what removed or rewritten live records were counted as; count the corrections."""
        re_added = {s.file for s in result.added}
        buried = [gone for gone in result.removed if self._decided.get(gone.file)]
        for gone in buried:
            kind = "rewritten" if gone.file in re_added else "removed"
            self._corrections[kind] = self.ledger.add(f"corrections_{kind}", 1)
        if buried:
            self.ledger.bury(buried)

    def _decide_undecided(self, built: Aggregates, unusable: dict[str, str], now: float) -> None:
        """Decide, and count if live, every valid record the ledger has not seen yet."""
        self._archive_records = len(self.index)
        if not self.live_only:
            new = [s for s in self.index.summaries() if s.file not in self._decided]
            self._count(built, unusable, new, [], now)
            return
        ends = {n: e for n, e in self.index.end_times().items() if n not in self._decided}
        live = {name for name, end in ends.items() if counts_live(end, now, self._cutover)}
        summaries = [s for s in self.index.summaries() if s.file in live] if live else []
        self._count(built, unusable, summaries, [n for n in ends if n not in live], now)

    def _count(
        self,
        aggregates: Aggregates,
        unusable: dict[str, str],
        live: list[RecordSummary],
        history: list[str],
        now: float,
    ) -> None:
        """Count ``live`` records; note ``history`` as left to backfill."""
        decisions = [Decision(n, False, now, None) for n in history]
        for summary in live:
            c = self._contribution(summary, unusable)
            if c is None:
                continue
            decisions.append(Decision(summary.file, True, now, None))
            keys = list(aggregates.series_keys(c))
            if self._loaded and any(k in self._fresh or not aggregates.has(k) for k in keys):
                aggregates.touch(c)  # a new series: exposed at 0 first, counted a scrape later
                self._fresh.update(keys)
                self._pending.append(c)
            else:
                aggregates.apply(c)
        self.ledger.decide(decisions)
        self._decided.update((d.name, d.live) for d in decisions)
        if history and now > self._cutover:  # first seen after the cut-over: late
            self._late = self.ledger.add("late_records", len(history))

    def _apply(self, result: RefreshResult) -> None:
        """Count the records first seen since the last update (nothing is ever subtracted)."""
        now = time.time()
        aggregates = self._aggregates
        assert aggregates is not None
        unusable = dict(self._unusable)
        for gone in result.removed:
            unusable.pop(gone.file, None)
        self._correct(result)
        if result.reset:  # the index changed under us: look for what is new
            _log.info("index of %s changed by another process: rechecking", self.index.archive)
        new = [s for s in result.added if s.file not in self._decided]
        if new or result.reset:
            # Should anything below fail, the totals are recounted from the ledger at the next
            # update, and until then the last complete figures are served.
            self._aggregates = None
            if result.reset:
                self._decide_undecided(aggregates, unusable, now)
            else:
                live = [s for s in new if self._counts_live(s.end_timestamp, now)]
                names = {s.file for s in live}
                history = [s.file for s in new if s.file not in names]
                self._count(aggregates, unusable, live, history, now)
            self._aggregates = aggregates
            self._publish(aggregates)
        if not result.reset:
            self._archive_records += len(result.added) - len(result.removed)
        self._unusable = unusable
        self._invalid = len(result.invalid) + len(unusable)

    def _counts_live(self, end: float, now: float) -> bool:
        return not self.live_only or counts_live(end, now, self._cutover)

    # -- exposing ------------------------------------------------------------------------

    def collect_parts(self) -> Parts:
        """Update from the archive; the contract's families (which change only when records
        are counted, with :attr:`Parts.version`) and this scrape's self-metrics."""
        status = self.update()
        with self._lock:
            families, version = self._families, self._version
            scan_errors = self._scan_errors
            corrections = dict(self._corrections)
            late = self._late
            self._ripe.extend(self._pending)  # their zero series are in this scrape
            self._pending.clear()
            self._fresh.clear()
        current = list(_self_metrics(status, scan_errors, corrections, late))
        return Parts(version, families, current)

    def collect(self) -> Iterator[Metric]:
        """Update from the archive, then yield the contract's families and self-metrics."""
        parts = self.collect_parts()
        yield from parts.stable
        yield from parts.current

    def describe(self) -> Iterator[Metric]:
        """The families :meth:`collect` yields, without looking at the archive (a registry
        learns the names from this, for ``name[]`` filtering and duplicate checks)."""
        yield from _render(Aggregates())
        yield from _self_metrics(self.status, 0, {}, 0)


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


def _self_metrics(
    status: ScanStatus, scan_errors: int, corrections: dict[str, int], late: int
) -> Iterator[Metric]:
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
