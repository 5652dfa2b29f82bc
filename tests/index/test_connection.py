"""The index file's connections: a large commit returns before its pages leave the log."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from exporter.index.connection import (
    checkpoint,
    committed_without_checkpoint,
    in_background,
    open_index,
)

ROWS = 24000  # 24 MB: more than SQLite's automatic checkpoint waits for (1000 pages of 16 KiB)


def _write_rows(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(f"k{i}", "x" * 1000) for i in range(ROWS)])


def _rows_seen_elsewhere(path: Path) -> int:
    with closing(sqlite3.connect(path)) as other:
        return int(other.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone()[0])


def test_a_commit_without_checkpoint_leaves_the_copy_to_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with closing(open_index(path)) as db:
        before = path.stat().st_size
        _write_rows(db)
        committed_without_checkpoint(db)
        assert path.stat().st_size == before  # the rows are in the log only...
        assert _rows_seen_elsewhere(path) == ROWS  # ...and committed: others read them
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)  # as it was
        in_background(path, checkpoint, name="checkpoint").join()
        assert path.stat().st_size > ROWS * 1000  # copied into the file by the thread


def test_a_plain_commit_copies_at_once(tmp_path: Path) -> None:
    """The control: what the function above spares the committing call."""
    path = tmp_path / "index.sqlite"
    with closing(open_index(path)) as db:
        _write_rows(db)
        db.execute("COMMIT")
        assert path.stat().st_size > ROWS * 1000


def test_a_failed_background_job_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    in_background(tmp_path / "missing" / "index.sqlite", checkpoint, name="checkpoint").join()
    assert "checkpoint failed in the background" in caplog.text


def test_a_background_job_with_a_bug_is_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(db: sqlite3.Connection) -> None:
        raise RuntimeError("a bug")

    in_background(tmp_path / "index.sqlite", broken, name="broken job").join()
    assert "broken job failed in the background" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


def test_a_new_index_file_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    new = tmp_path / "new.sqlite"
    open_index(new).close()
    old = tmp_path / "old.sqlite"
    made = sqlite3.connect(old)
    made.execute("PRAGMA journal_mode=WAL")
    made.execute("CREATE TABLE earlier (x)")
    made.close()
    db = open_index(old)  # tables made beside what is there, in the file's own pages
    db.close()
    sizes = {}
    for path in (new, old):
        with closing(sqlite3.connect(path)) as other:
            sizes[path.name] = other.execute("PRAGMA page_size").fetchone()[0]
    assert sizes == {"new.sqlite": 16384, "old.sqlite": 4096}
