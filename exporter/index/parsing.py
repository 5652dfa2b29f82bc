"""Reading and parsing record files for the index, across every core when there are many.

Parsing is what a first index build spends its time on (pydantic validation, ~40 us a
record, and the read), and each file is independent: above :data:`PARALLEL_FROM` files, the
names are split into chunks parsed by worker processes, one per core, while the results come
back in order. Workers are forked when the process has a single thread (cheapest), else
started with ``forkserver`` (forking a threaded process, such as ``serve``, is unsafe).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Final, NamedTuple

from exporter.index.summary import RecordSummary, summarize

__all__ = ["PARALLEL_FROM", "Parsed", "parse_files", "signed_inode"]

PARALLEL_FROM: Final = 4000  # below this, starting workers costs more than it saves
_CHUNKS_PER_WORKER: Final = 8


class Parsed(NamedTuple):
    """One file's outcome: its identity (size, mtime_ns, inode; None if it vanished), and
    either its summary or the reason it is not a valid record."""

    name: str
    identity: tuple[int, int, int] | None
    summary: RecordSummary | None
    reason: str | None


def signed_inode(inode: int) -> int:
    """An inode number as SQLite can store it: unsigned 64-bit numbers past 2**63 wrap."""
    return inode - 2**64 if inode >= 2**63 else inode


def _parse_chunk(archive: str, names: Sequence[str]) -> list[Parsed]:
    from exporter.archive import files  # noqa: PLC0415 (pydantic: loaded only to parse)

    out: list[Parsed] = []
    base = archive + os.sep
    for name in names:
        path = Path(base + name)
        try:
            record, st = files.read_record_stat(path)
        except files.InvalidRecordFile as exc:
            try:
                lst = os.lstat(path)
            except OSError:  # vanished between listing and reading
                out.append(Parsed(name, None, None, exc.reason))
                continue
            identity = (lst.st_size, lst.st_mtime_ns, signed_inode(lst.st_ino))
            out.append(Parsed(name, identity, None, exc.reason))
            continue
        identity = (st.st_size, st.st_mtime_ns, signed_inode(st.st_ino))
        out.append(Parsed(name, identity, summarize(record, name), None))
    return out


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_files(archive: Path, names: Sequence[str]) -> Iterator[Parsed]:
    """Parse ``names`` in ``archive``; outcomes in the order of ``names``."""
    workers = _workers()
    if len(names) < PARALLEL_FROM or workers < 2:
        yield from _parse_chunk(str(archive), names)
        return
    method = "fork" if threading.active_count() == 1 else "forkserver"
    size = -(-len(names) // (workers * _CHUNKS_PER_WORKER))
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        for parsed in pool.map(_parse_chunk, [str(archive)] * len(chunks), chunks):
            yield from parsed
