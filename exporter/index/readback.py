"""The summaries a bulk load added, read back from the index when used (internal to
:mod:`exporter.index`; see :class:`ReadBack`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from exporter.index.summary import END_SQL, RecordFilter, RecordSummary

__all__ = ["ChangedMeanwhileError", "ReadBack", "added_ends", "added_names"]

_ENDS = f"SELECT f.name, {END_SQL} FROM files f WHERE {{where}} AND f.id BETWEEN ? AND ?"  # noqa: S608


class Index(Protocol):
    """What is read back from: :class:`~exporter.index.store.ArchiveIndex`."""

    def select(
        self, sql: str, params: Sequence[object] = (), where: RecordFilter | None = None
    ) -> list[tuple[Any, ...]]: ...

    def read(self, condition: str, params: Sequence[object]) -> list[RecordSummary]: ...


class ReadBack(Sequence[RecordSummary]):
    """The summaries a bulk load added, read back from the index when first used.

    A bulk load writes rows made in worker processes and keeps no summaries: most callers
    (``trends``) never look at them. The ids of one load are a range; its valid rows, in id
    order, are the sequence, and the load gives their ids and names (``listed``).
    :meth:`names` lists them without reading the summaries, and a slice taken before the whole
    is read reads only its own rows: a forked child can read its share of a cold start's count
    (the index gives a child a connection of its own). Such a slice is the rows of the names
    listed at its positions, or :class:`ChangedMeanwhileError` (a later refresh replaced some
    of them): the names a caller learnt and the summaries it gets never disagree.
    """

    def __init__(self, index: Index, ids: range, listed: tuple[list[int], list[str]]) -> None:
        self._index = index
        self._ids = (ids.start, ids.stop - 1)
        self._listed = listed  # the valid rows' ids and names, in id order
        self._summaries: list[RecordSummary] | None = None

    def names(self) -> list[str]:
        """The file names, in order, without reading the summaries back."""
        if self._summaries is not None:
            return [s.file for s in self._summaries]
        return self._listed[1]

    def ends(self) -> dict[str, float]:
        """Each file's end time (:attr:`RecordSummary.end_timestamp`), without reading the
        summaries back: one query."""
        if self._summaries is not None:
            return {s.file: s.end_timestamp for s in self._summaries}
        return dict(self._index.select(_ENDS, self._ids))

    def _read(self, first: int, last: int) -> list[RecordSummary]:
        return self._index.read("f.id BETWEEN ? AND ?", (first, last))

    def _loaded(self) -> list[RecordSummary]:
        if self._summaries is None:
            self._summaries = self._read(*self._ids)
        return self._summaries

    def __len__(self) -> int:
        if self._summaries is not None:
            return len(self._summaries)
        return len(self._listed[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice) and i.step in (None, 1) and self._summaries is None:
            ids, names = self._listed
            at = ids[i]  # the ids at those positions: the rows between them
            found = self._read(at[0], at[-1]) if at else []
            if [s.file for s in found] != names[i]:
                raise ChangedMeanwhileError
            return found
        return self._loaded()[i]

    def __iter__(self) -> Iterator[RecordSummary]:
        return iter(self._loaded())


class ChangedMeanwhileError(RuntimeError):
    """Rows of a bulk load were replaced after its names were listed (by another process)."""

    def __init__(self) -> None:
        super().__init__("another process changed the index while its records were read back")


def added_names(added: Sequence[RecordSummary]) -> list[str]:
    """The file names of a refresh's ``added``, without reading a bulk load's summaries back."""
    return added.names() if isinstance(added, ReadBack) else [s.file for s in added]


def added_ends(added: Sequence[RecordSummary]) -> dict[str, float]:
    """The end time of each of a refresh's ``added``, without reading a bulk load's back."""
    return added.ends() if isinstance(added, ReadBack) else {s.file: s.end_timestamp for s in added}
