"""A prometheus_client collector over the archive, kept up to date incrementally.

:class:`ArchiveCollector` starts from the totals the ledger saved (a restart) or counts the
records once (a cold start: the summaries the index's first build returned, with cyclic garbage
collection paused), then on each scrape asks the index what changed (cheap while the archive
directory's mtime is unchanged) and adds only the records first seen. A scrape therefore costs
the number of series, not the number of records, and a new record shows at the next scrape.
:meth:`ArchiveCollector.rescan` stats every file to catch records rewritten in place; ``serve``
calls it from a background thread. :meth:`ArchiveCollector.collect_parts` tells the exposition
(:mod:`exporter.prometheus.exposition`) when the families changed, so that ``/metrics``
renders them once per change rather than at every scrape.

Invalid files are skipped: the index logs each once, and ``batch_metrics_exporter_invalid_records``
counts them, together with valid records whose figures cannot be counted (a duration too large
for any clock). A failing scan (archive unreadable, say) keeps the last complete figures, logs,
and increments ``batch_metrics_exporter_scan_errors_total``: a scrape never fails because of the
archive. An update is all or nothing: its ledger transaction (decisions, corrections, totals)
is rolled back if it fails half-way, and the next update starts again from the ledger.
``batch_metrics_exporter_last_scan_timestamp_seconds`` is the time of the last successful
scan, the time of the figures served.

Every bounded series (operation x outcome, :data:`~exporter.prometheus.series.ZERO_SERIES`) is
exposed from the start, at zero until a record adds to it, so that ``increase()`` in the alert
rules sees the first runs of an operation and an all-failed operation has a success series.

Counters never go down (docs/prometheus.md, "Counters never go down"): a record is counted
once, when first seen, and stays counted when its file is removed or rewritten; such records
are counted in ``batch_metrics_exporter_corrections_total{kind}``, and the archive (``trends``)
has the corrected figures. The archive's :class:`~exporter.index.ledger.Ledger` keeps which
records were counted (and, for removed or rewritten ones, what they counted) and the totals
they add up to, written in the same transaction, so a restart gives the same counters without
counting again: it counts only the live records the totals lack (decided by ``backfill
--missing`` meanwhile) and the records the ledger never decided (a crash between the index's
commit and the ledger's). Without saved totals (an older ledger, another layout of the
families) every live record is counted again. With ``live_only`` (the stacks) only records
that end after the ledger's cut-over and arrive on time are counted: the rest is history, for
``backfill --missing``, counted in ``batch_metrics_exporter_late_records_total`` when first
seen after the cut-over. After the first load, a record that creates a series beyond the
bounded ones is held back one scrape while that series is exposed at 0 (``increase()``
ignores a first sample).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.index.ledger import Ledger, LedgerWrite, counts_live
from exporter.index.store import ArchiveIndex, Fold, RecordSummary, RefreshResult
from exporter.prometheus.aggregates import Aggregates, SeriesKey
from exporter.prometheus.counting import add_shares, count, count_parsed
from exporter.prometheus.exposition import Parts
from exporter.prometheus.families import archive_families, exporter_families
from exporter.prometheus.found import Found
from exporter.prometheus.saved_totals import dump_totals, load_totals
from exporter.prometheus.series import Contribution, contributions
from exporter.util.cpu import gc_paused

__all__ = ["ArchiveCollector", "ScanStatus"]

_log = logging.getLogger(__name__)

_CORRECTIONS = ("removed", "rewritten")


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
        self._cutover = float("-inf")
        self._corrections = {
            kind: self.ledger.counter(f"corrections_{kind}") for kind in _CORRECTIONS
        }
        self._late = self.ledger.counter("late_records")
        self._archive_records = 0
        self._loaded = False
        self._fresh: set[SeriesKey] = set()  # created at 0, not scraped yet
        self._pending: list[Contribution] = []  # waiting for their zero series to be scraped
        self._ripe: list[Contribution] = []  # their zero series were scraped: count them now
        self._lock = threading.Lock()
        # None: to be loaded from the ledger at the next update (start, or an update that
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
                # the first scrape is answered from the fold: the index's rows follow
                fold = self._fold()
                self._load(self.index.refresh(full=full, fold=fold, write_later=fold is not None))
            else:
                if self._ripe:
                    self._aggregates.apply_all(self._ripe)
                    self._ripe.clear()
                    self._publish(self._aggregates)
                result = self.index.refresh(full=full)
                if result.reset:  # the index changed under us: the ledger says what was counted
                    _log.info(
                        "index of %s changed by another process: rechecking", self.index.archive
                    )
                    self._load(result)
                else:
                    self._apply(result)
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
        self._families = archive_families(aggregates)
        self._version += 1

    def _contribution(self, s: RecordSummary, unusable: dict[str, str]) -> Contribution | None:
        try:
            return contributions(s)
        except ValueError as exc:
            _log.warning("not counting %s: %s", self.index.archive / s.file, exc)
            unusable[s.file] = str(exc)
            return None

    def _load(self, result: RefreshResult) -> None:
        """Start from the totals saved in the ledger (or count every live record when there
        are none), then count what they lack; the collector's state changes only at the end.

        serve's own index still holds what was counted last time: a record removed or
        rewritten since comes back in ``removed`` with the figures it was counted with.
        """
        self._aggregates = None  # until this succeeds, the next update starts over
        self._loaded = False  # a load holds nothing back, as a restart
        self._pending.clear()
        self._ripe.clear()
        self._fresh.clear()
        now = time.time()
        with gc_paused(), self.ledger.write() as tx:
            found = Found(self.index, result.added)  # a bulk load's are not read back here
            cutover = tx.cutover(now) if self.live_only else self._cutover
            corrections = self._correct(tx, result.removed, found.names)
            saved = load_totals(tx.totals())
            unusable: dict[str, str]
            if saved is None:  # none, or of another layout: count every live record again
                built, unusable = Aggregates(), {}
                recount = tx.live_names()
            else:
                built, unusable = saved
                recount = tx.live_names(uncounted=True)  # decided live by another process
            tombstones = tx.tombstones() if recount else {}
            decided = tx.names()
            if not decided and (result.complete or len(found.names) == len(self.index)):
                in_index = found.names  # a first start: this refresh brought every record
            else:
                in_index = self._index_names()
            live, history = self._decide(in_index - decided, found, now, cutover)
            wanted = (set(recount) & in_index | live) - tombstones.keys()
            buried = [tombstones[n] for n in recount if n in tombstones]
            counting = found.summaries(wanted)  # a first start's: read back while counted
            every = saved is None and not buried and wanted == found.names
            uncounted = _count_loaded(
                result, every, [*buried, *counting] if buried else counting, built
            )
            for name, why in uncounted.items():
                _log.warning("not counting %s: %s", self.index.archive / name, why)
                unusable[name] = why
            del counting  # gone before collections resume: they would walk all of it
            tx.decide(live, history, first_seen=now, counted=True)
            tx.mark_counted(None if saved is None else recount)
            late = self._late_after(tx, history, now, cutover)
            unusable = {n: why for n, why in unusable.items() if n in in_index}
            tx.save_totals(dump_totals(built, unusable))
        self._cutover, self._corrections, self._late = cutover, corrections, late
        self._aggregates, self._unusable = built, unusable
        self._publish(built)
        self._archive_records = len(in_index)
        self._invalid = len(result.invalid) + len(unusable)
        self._loaded = True

    def _fold(self) -> Fold | None:
        """What a bulk load is to make of its records for a load: a first start that counts
        every record counts them where the build parses them (a live-only one counts few)."""
        return None if self.live_only else count_parsed

    def _index_names(self) -> set[str]:
        """The names of every valid record in the index."""
        names = {name for (name,) in self.index.select("SELECT name FROM files")}
        return names - self.index.invalid_files().keys()  # a covering scan, minus a few

    def _decide(
        self, names: set[str], found: Found, now: float, cutover: float
    ) -> tuple[set[str], list[str]]:
        """Which of the undecided ``names`` the live scrape counts, and which are history."""
        if not self.live_only or not names:
            return names, []
        ends = found.ends(names)
        live = {n for n, end in ends.items() if counts_live(end, now, cutover)}
        return live, [n for n in ends if n not in live]

    def _late_after(
        self, tx: LedgerWrite, history: Sequence[str], now: float, cutover: float
    ) -> int:
        """The late-records counter, with ``history`` added if first seen after the cut-over."""
        if history and now > cutover:
            return tx.add("late_records", len(history))
        return self._late

    def _correct(
        self, tx: LedgerWrite, removed: Sequence[RecordSummary], re_added: AbstractSet[str]
    ) -> dict[str, int]:
        """Keep what removed or rewritten live records were counted as; count the corrections."""
        corrections = dict(self._corrections)
        if not removed:
            return corrections
        known = tx.decisions([gone.file for gone in removed])
        buried = [gone for gone in removed if gone.file in known and known[gone.file].live]
        for kind in _CORRECTIONS:
            n = sum((gone.file in re_added) == (kind == "rewritten") for gone in buried)
            if n:
                corrections[kind] = tx.add(f"corrections_{kind}", n)
        if buried:
            tx.bury(buried)
        return corrections

    def _apply(self, result: RefreshResult) -> None:
        """Count the records first seen since the last update (nothing is ever subtracted)."""
        aggregates = self._aggregates
        assert aggregates is not None
        unusable = dict(self._unusable)
        for gone in result.removed:
            unusable.pop(gone.file, None)
        if result.added or result.removed:
            now = time.time()
            # Should anything below fail, the totals are loaded from the ledger at the next
            # update (where the failed transaction left nothing), and until then the last
            # complete figures are served.
            self._aggregates = None
            with self.ledger.write() as tx:
                corrections = self._correct(tx, result.removed, {s.file for s in result.added})
                known = tx.decisions([s.file for s in result.added])
                new = [s for s in result.added if s.file not in known]
                # decided live by another process (backfill --missing) but not counted here yet
                adopted = [
                    s
                    for s in result.added
                    if (d := known.get(s.file)) is not None and d.live and not d.counted
                ]
                live = [s for s in new if self._counts_live(s.end_timestamp, now)]
                names = {s.file for s in live}
                history = [s.file for s in new if s.file not in names]
                counted = self._count(aggregates, unusable, [*adopted, *live])
                tx.decide([s.file for s in live], history, first_seen=now, counted=True)
                if adopted:
                    tx.mark_counted([s.file for s in adopted])
                late = self._late_after(tx, history, now, self._cutover)
                if live or adopted:
                    tx.save_totals(dump_totals(aggregates, unusable, self._pending))
            self._corrections, self._late, self._aggregates = corrections, late, aggregates
            if counted:
                self._publish(aggregates)
            self._archive_records += len(result.added) - len(result.removed)
        self._unusable = unusable
        self._invalid = len(result.invalid) + len(unusable)

    def _count(
        self, aggregates: Aggregates, unusable: dict[str, str], live: list[RecordSummary]
    ) -> bool:
        """Count ``live`` records, holding back those that make a new series; returns whether
        the exposed figures changed."""
        changed = False
        for summary in live:
            c = self._contribution(summary, unusable)
            if c is None:
                continue
            changed = True
            keys = list(aggregates.series_keys(c))
            if self._loaded and any(k in self._fresh or not aggregates.has(k) for k in keys):
                aggregates.touch(c)  # a new series: exposed at 0 first, counted a scrape later
                self._fresh.update(keys)
                self._pending.append(c)
            else:
                aggregates.apply(c)
        return changed

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
        current = list(exporter_families(status, scan_errors, corrections, late))
        return Parts(version, families, current)

    def collect(self) -> Iterator[Metric]:
        """Update from the archive, then yield the contract's families and self-metrics."""
        parts = self.collect_parts()
        yield from parts.stable
        yield from parts.current

    def describe(self) -> Iterator[Metric]:
        """The families :meth:`collect` yields, without looking at the archive (a registry
        learns the names from this, for ``name[]`` filtering and duplicate checks)."""
        yield from archive_families(Aggregates())
        yield from exporter_families(self.status, 0, {}, 0)


def _count_loaded(
    result: RefreshResult, every: bool, summaries: Sequence[RecordSummary], into: Aggregates
) -> dict[str, str]:
    """Count ``summaries`` into ``into``; returns the records that cannot be counted.

    When they are ``every`` record the refresh added, a bulk load has counted them already,
    where its workers parsed them (``result.folded``, :func:`count_parsed` per chunk): nothing is
    read back.
    """
    folded = add_shares(result.folded) if every and result.folded else None
    if folded is None:
        return count(summaries, into)
    into.add(folded[0])
    return folded[1]
