"""Counting many records at once (a cold start), on every core.

A first count of 100,000 records spends about 2 s in
:func:`~exporter.prometheus.series.contributions` and :meth:`Aggregates.apply_all`, pure Python
on one core. Records are independent and the totals are exact integers, so the records are
split in shares: forked children count theirs and send back their totals (a few hundred
series, as :meth:`Aggregates.state`), which the parent adds to its own. Children are forked
only for many records, and only by a process with a single thread (forking a threaded one,
such as a running ``serve``, is unsafe); a child that fails has its share counted by the parent.

A first start that counts every record is not counted by :func:`count`: the index's build
counts each chunk where it parses it (:func:`count_parsed`, passed as the build's fold: the
records grouped by their labels first, :mod:`exporter.prometheus.grouped`), and the chunks'
totals are added up (:func:`add_shares`). :func:`count` is the way for everything else, and
when a chunk's count failed.

Each process takes its share of the sequence itself, after the fork: a bulk load's summaries
(:class:`~exporter.index.readback.ReadBack`, not read yet on a cold start) are then read
from the index by the children in parallel, each only its own share, while the parent reads
and counts its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from exporter.index.summary import Projection, RecordSummary
from exporter.prometheus.aggregates import Aggregates
from exporter.prometheus.grouped import count_grouped
from exporter.prometheus.series import Contribution, contributions
from exporter.util.cpu import usable_cores
from exporter.util.forking import may_fork

__all__ = ["PARALLEL_FROM", "add_shares", "count", "count_parsed", "count_share"]

PARALLEL_FROM: Final = 20_000  # below this, a fork costs more than it saves


def count(summaries: Sequence[RecordSummary], into: Aggregates) -> dict[str, str]:
    """Add every countable record of ``summaries`` to ``into``; returns the others' file names
    and why each cannot be counted (a figure too large for any clock)."""
    shares = usable_cores() if len(summaries) >= PARALLEL_FROM and may_fork() else 1
    size = max(1, -(-len(summaries) // shares))
    children = {
        start: _fork(summaries, start, start + size) for start in range(size, len(summaries), size)
    }
    try:
        unusable = _count(summaries[:size], into)  # reading a share may fail (the index's)
        for start in list(children):
            counted = _collect(children.pop(start))
            if counted is None:  # the child failed: count its share here
                unusable.update(_count(summaries[start : start + size], into))
            else:
                into.add(counted[0])
                unusable.update(counted[1])
    finally:
        for child in children.values():  # not collected after a failure: reap them all the same
            _collect(child)
    return unusable


def _count(summaries: Sequence[RecordSummary], into: Aggregates) -> dict[str, str]:
    unusable: dict[str, str] = {}

    def countable() -> Iterator[Contribution]:
        for summary in summaries:
            try:
                yield contributions(summary)
            except ValueError as exc:
                unusable[summary.file] = str(exc)

    into.apply_all(countable())
    return unusable


_Child = tuple[int, int] | None  # (pid, read end of its pipe), or None: not forked


def _fork(summaries: Sequence[RecordSummary], start: int, stop: int) -> _Child:
    """A child counting ``summaries[start:stop]``, writing its totals to a pipe, then exiting
    at once (:func:`os._exit`: nothing of the parent's is cleaned up or closed)."""
    try:
        read, write = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid:
        os.close(write)
        return pid, read
    status = 1
    try:  # the child: no exception may leave this block, nor any cleanup of the parent's run
        os.close(read)
        payload = json.dumps(count_share(summaries[start:stop])).encode()
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        status = 0
    finally:
        os._exit(status)


def _collect(child: _Child) -> tuple[Aggregates, dict[str, str]] | None:
    """What ``child`` counted, once it exited; None if it failed."""
    if child is None:
        return None
    pid, read = child
    with os.fdopen(read, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    with contextlib.suppress(ValueError):
        return add_shares([json.loads(payload)])
    return None


def count_share(summaries: Sequence[RecordSummary]) -> dict[str, Any]:
    """The totals of a share of the records, and the records it could not count, as plain
    data: what a counting process sends back."""
    counted = Aggregates()
    unusable = _count(summaries, counted)
    return {"state": counted.state(), "unusable": unusable}


def count_parsed(projections: list[Projection]) -> dict[str, Any]:
    """:func:`count_share` of a chunk's records as a first build's workers parse them (the
    build's fold, :data:`exporter.index.parsing.Fold`): raises if one cannot be counted, and
    the chunk is then counted from the index, one record at a time."""
    return {"state": count_grouped(projections).state(), "unusable": {}}


def add_shares(shares: Iterable[Any]) -> tuple[Aggregates, dict[str, str]] | None:
    """The totals of :func:`count_share`'s results together, and every record they could not
    count; None if one is not such a result (its share must then be counted again)."""
    total, unusable = Aggregates(), {}
    for share in shares:
        try:
            counted = Aggregates.from_state(share["state"])
            unusable.update(share["unusable"])
        except (KeyError, TypeError, ValueError):
            return None
        if counted is None:
            return None
        total.add(counted)
    return total, unusable
