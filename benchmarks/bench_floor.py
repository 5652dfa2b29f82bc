"""The least a cold index build of an archive can take on this machine, whatever its code.

Any first build must read, validate and project every record, and write the index's rows (its
tables, rollups and indexes). This times exactly that and nothing else: the records read,
validated and projected on every core as the index does it (``parsing.read_projected``), while
this process writes the same rows, prepared beforehand, through the index's own bulk load;
nothing sent between processes, no interpreter start.
Against the seed's script (``bench_trends``), it tells how close to the seed's time any
implementation of this index could come here.

    python -m benchmarks.bench_floor ARCHIVE   # prints the seconds
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from exporter.archive.files import InvalidRecordFile
from exporter.index.connection import open_index
from exporter.index.parsing import parse_rows, read_projected
from exporter.index.writes import bulk_load, unpack
from exporter.util.cpu import gc_paused, usable_cores
from exporter.util.paths import is_record_name


def _read_and_validate(archive: str, names: Sequence[str]) -> int:
    with gc_paused():
        for name in names:
            with contextlib.suppress(InvalidRecordFile):
                read_projected(os.path.join(archive, name))  # noqa: PTH118 (a str, as the index)
    return len(names)


def measure_floor(archive: Path) -> float:
    """Seconds to read, validate and project every record of ``archive`` on every core while
    this process bulk-loads the same rows, made beforehand, into a new index."""
    names = sorted(p.name for p in archive.iterdir() if is_record_name(p.name))
    prepared = list(parse_rows(archive, names, 1))  # not timed
    chunks = [list(rows.stored) for rows in prepared]  # the same chunks as a real build
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, gc_paused():
        db = open_index(Path(tmp) / "index.sqlite")
        started = time.perf_counter()
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(usable_cores(), mp_context=fork) as pool:
            validated = pool.map(_read_and_validate, [str(archive)] * len(chunks), chunks)
            db.execute("BEGIN IMMEDIATE")
            with bulk_load(db) as write:
                for chunk in prepared:
                    write(unpack(chunk))
            db.execute("COMMIT")
            if sum(validated) != sum(len(c) for c in chunks):
                raise SystemExit("bench_floor: a chunk was not validated")
        elapsed = time.perf_counter() - started
        db.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path)
    print(f"{measure_floor(parser.parse_args().archive):.3f}")


if __name__ == "__main__":
    main()
