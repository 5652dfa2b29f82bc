"""What a refresh found, for :class:`~exporter.prometheus.collector.ArchiveCollector`'s load."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.index.store import ArchiveIndex, RecordSummary, added_ends, added_names

__all__ = ["Found"]


class Found:
    """The summaries a refresh returned, by name; for others, the index is read (only after a
    failed update or a change by another process: then the ledger lacks what the index has).

    A bulk load's summaries (a cold start's) are not read back to learn their names, and when
    all of them are wanted they are passed on as they are, for the counting processes to read
    in parallel, each its own share (:mod:`exporter.prometheus.counting`).
    """

    def __init__(self, index: ArchiveIndex, added: Sequence[RecordSummary]) -> None:
        self.index = index
        self.added = added
        self.names = set(added_names(added))

    def summaries(self, names: set[str]) -> Sequence[RecordSummary]:
        """The summaries of ``names``: all the refresh's, as they are, if those are all."""
        if not names:  # a live-only first start: every record is history
            return []
        if names == self.names:
            return self.added
        if names <= self.names:
            return [s for s in self.added if s.file in names]
        return [s for s in self.index.summaries() if s.file in names]

    def ends(self, names: set[str]) -> dict[str, float]:
        """The end time of each of ``names`` (the window rule's time)."""
        if names <= self.names:
            return {n: end for n, end in added_ends(self.added).items() if n in names}
        return {n: end for n, end in self.index.end_times().items() if n in names}
