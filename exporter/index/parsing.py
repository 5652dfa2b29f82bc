"""Reading and parsing record files for the index, across every core when there are many.

Parsing is what a first index build spends its time on (the read, the validation and the
projection onto the index's fields, together ~25 us a record), and each file is independent.
A record as our writers write it is validated by the fast path
(:func:`exporter.archive.quick.read_quick`, msgspec: ~7 us against pydantic's ~25); any other
document by the model, which accepts it, reads it leniently or refuses it, as always. Two ways:

* :func:`parse_files` parses in this process and gives each file's :class:`Parsed` outcome
  (its projection): what an incremental refresh of a few files needs;
* :func:`parse_rows` is for bulk loads: above :data:`PARALLEL_FROM` files the names are split
  into chunks that worker processes (one per core) turn into the index's rows, ready to insert
  and packed (:class:`~exporter.index.writes.Chunk`). Rows are plain tuples, which cross the
  process boundary about six times cheaper than named tuples, and the parent only inserts them,
  as they come or later.
  Workers are forked when the process has a single thread (cheapest), else started with
  ``forkserver`` (forking a threaded process, such as ``serve``, is unsafe).

Both pause the cyclic garbage collector (:func:`exporter.util.cpu.gc_paused`); a worker runs
without it for its whole life. Collection resumed after each chunk would traverse every object
the chunk made (~8 us a record, a sixth of the parse), and a worker keeps nothing between
chunks: what it drops, reference counting frees.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Final, NamedTuple

from exporter.index.rollups import partials
from exporter.index.summary import Projection, project, project_quick
from exporter.index.writes import Chunk, FileIdentity, pack, rows_of
from exporter.util.cpu import gc_paused, usable_cores
from exporter.util.forking import may_fork

__all__ = [
    "PARALLEL_FROM",
    "Fold",
    "Parsed",
    "parse_files",
    "parse_rows",
    "read_projected",
    "signed_inode",
    "validator_built_meanwhile",
]

_log = logging.getLogger(__name__)

# What a bulk load may make of the valid records of each chunk it parses (their projections),
# where it parses them (a module-level function: it crosses to the worker processes by name).
# The caller combines the chunks' results: a first count made beside the parse instead of from
# the index afterwards. One that raises gives None for its chunk.
Fold = Callable[[list[Projection]], object]

PARALLEL_FROM: Final = 4000  # below this, starting workers costs more than it saves
_CHUNKS_PER_WORKER: Final = 8
_LAST_CHUNK: Final = 250  # the least the chunks shrink to at the end


class Parsed(NamedTuple):
    """One file's outcome: its identity (size, mtime_ns, inode; None if it vanished), and
    either what the index stores of the record or the reason it is not a valid record."""

    name: str
    identity: FileIdentity | None
    projected: Projection | None
    reason: str | None


def signed_inode(inode: int) -> int:
    """An inode number as SQLite can store it: unsigned 64-bit numbers past 2**63 wrap."""
    return inode - 2**64 if inode >= 2**63 else inode


def read_projected(path: str) -> tuple[Projection, os.stat_result]:
    """The record in file ``path`` as the index stores it, and the stat of the file read;
    :class:`~exporter.archive.files.InvalidRecordFile` if it holds none. A record as our
    writers write it takes the fast path (:func:`~exporter.archive.quick.read_quick`), any
    other document the model."""
    # loaded only to parse (pydantic, msgspec)
    from exporter.archive import files  # noqa: PLC0415
    from exporter.archive.quick import read_quick  # noqa: PLC0415

    data, st = files.read_bounded(path)
    quick = read_quick(data)
    if quick is None:
        return project(files.parse_record_bytes(path, data)), st
    return project_quick(*quick), st


def _parse(archive: str, names: Sequence[str]) -> list[Parsed]:
    from exporter.archive.files import InvalidRecordFile  # noqa: PLC0415 (pydantic)

    out: list[Parsed] = []
    base = archive + os.sep
    for name in names:
        path = base + name
        try:
            projected, st = read_projected(path)
        except InvalidRecordFile as exc:
            try:
                lst = os.lstat(path)
            except OSError:  # vanished between listing and reading
                out.append(Parsed(name, None, None, exc.reason))
                continue
            identity = (lst.st_size, lst.st_mtime_ns, signed_inode(lst.st_ino))
            out.append(Parsed(name, identity, None, exc.reason))
            continue
        identity = (st.st_size, st.st_mtime_ns, signed_inode(st.st_ino))
        out.append(Parsed(name, identity, projected, None))
    return out


def _parse_chunk(archive: str, names: Sequence[str], first_id: int, fold: Fold | None) -> Chunk:
    """A bulk load's chunk: its rows and their rollups' sums, packed, and ``fold``'s result."""
    with gc_paused():
        outcomes = _parse(archive, names)
        rows = rows_of(outcomes, first_id)
        valid = [o.projected for o in outcomes if o.projected is not None]
        try:
            totals = partials(valid)
        except OverflowError:  # absurd sums: SQL adds these rows, and flags them
            totals = None
        except Exception:  # the same, but a bug
            _log.warning("summing %d records failed", len(valid), exc_info=True)
            totals = None
        folded = None
        if fold is not None:
            try:
                folded = fold(valid)
            except Exception:  # the caller does without (see Fold)
                _log.warning("folding %d records failed", len(valid), exc_info=True)
        return pack(rows._replace(totals=totals), folded)


@contextlib.contextmanager
def validator_built_meanwhile() -> Iterator[None]:
    """Build the record validator in a thread while the body runs (listing a directory: system
    calls, which let it run), so that a bulk load's forked workers inherit it rather than each
    build its own (0.2-0.3 s of CPU each). Joined when the body ends: a process must not fork
    while it has threads."""
    thread = threading.Thread(target=_build_validator, name="build-validator", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _build_validator() -> None:
    from exporter.archive.model import build_validator  # noqa: PLC0415 (pydantic: loaded late)

    try:
        build_validator()
    except Exception:  # each worker builds its own, as without this
        _log.debug("building the record validator ahead failed", exc_info=True)


def parse_files(archive: Path, names: Sequence[str]) -> list[Parsed]:
    """Parse ``names`` in ``archive`` in this process; outcomes in the order of ``names``."""
    with gc_paused():
        return _parse(str(archive), names)


def parse_rows(
    archive: Path, names: Sequence[str], first_id: int, fold: Fold | None = None
) -> Iterator[Chunk]:
    """The rows of ``names``, chunk by chunk in the order of ``names``.

    The file ``names[i]`` gets id ``first_id + i`` (a file that vanished leaves its id unused),
    so that chunks parsed apart never collide. With ``fold``, each chunk's
    :attr:`~exporter.index.writes.Chunk.folded` is what it made of the chunk's valid records
    (None if it raised), made where they were parsed.
    """
    workers = usable_cores()
    if len(names) < PARALLEL_FROM or workers < 2:
        yield _parse_chunk(str(archive), names, first_id, fold)
        return
    method = "fork" if may_fork() else "forkserver"
    starts = _chunk_starts(len(names), workers)
    ends = [*starts[1:], len(names)]
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=gc.disable) as pool:
        yield from pool.map(
            _parse_chunk,
            [str(archive)] * len(starts),
            [names[i:j] for i, j in zip(starts, ends, strict=True)],
            [first_id + i for i in starts],
            [fold] * len(starts),
        )


def _chunk_starts(count: int, workers: int) -> list[int]:
    """Where the chunks of ``count`` names start: even chunks, then smaller and smaller ones.

    The parent writes each chunk after a worker has parsed it, and nothing overlaps the
    writing of the last one: the less is left to parse, the smaller the chunks.
    """
    size = -(-count // (workers * _CHUNKS_PER_WORKER))
    starts: list[int] = []
    start = 0
    while start < count:
        starts.append(start)
        left = count - start
        shrunk = min(size, max(_LAST_CHUNK, -(-left // (2 * workers))))
        start += size if left > size * workers else shrunk
    return starts
