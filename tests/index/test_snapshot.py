"""A snapshot is one read transaction; the index's other readers work inside it."""

from __future__ import annotations

import threading
from pathlib import Path

from exporter.archive.files import write_record
from exporter.index.store import ArchiveIndex
from tests.support.records import rec


def test_len_and_select_inside_a_snapshot_see_its_state(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    index = ArchiveIndex(archive, db_path=tmp_path / "index.db")
    index.refresh()
    result: list[object] = []

    def read() -> None:
        with index.snapshot() as snap:
            result.append(len(index))
            result.append(index.select("SELECT count(*) FROM files")[0][0])
            result.append(snap.select("SELECT count(*) FROM files")[0][0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "a read inside a snapshot deadlocked"
    assert result == [1, 1, 1]
