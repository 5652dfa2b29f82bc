"""A bulk load's summaries, read back from the index: its names without the summaries, and a
slice taken before the whole is read reads only its own rows and equals that slice of the whole
(invalid files among the load's ids take no place in it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.index import store
from exporter.index.readback import ChangedMeanwhileError, ReadBack, added_names
from exporter.index.store import ArchiveIndex, RecordSummary
from tests.support.generated_archive import write_archive

RECORDS = 200
INVALID = {  # names that sort among the valid ones: their ids are inside the load's range
    "batch-1-broken.json": b"{not json",
    "batch-30-broken.json": b"",
    "batch-7-broken.json": b'{"batch_id": "7"}',
}
SLICES = [
    slice(None),
    slice(0, 1),
    slice(10, 60),
    slice(60, None),
    slice(None, 5),
    slice(-30, -5),
    slice(RECORDS - 1, RECORDS + 50),
    slice(150, 1000),
    slice(50, 10),
    slice(RECORDS, None),
]


@pytest.fixture
def bulk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ArchiveIndex, ReadBack]]:
    """An index whose first refresh was a bulk load, and what it added (not read back yet)."""
    archive = tmp_path / "archive"
    write_archive(archive, RECORDS, every_nth_without=7)
    for name, content in INVALID.items():
        (archive / name).write_bytes(content)
    monkeypatch.setattr(store, "_BULK_CHANGES", 50)
    with ArchiveIndex(archive, db_path=tmp_path / "index.sqlite") as index:
        added = index.refresh().added
        assert isinstance(added, ReadBack)
        valid = index.select("SELECT min(id), max(id) FROM files WHERE invalid_reason IS NULL")
        invalid = index.select("SELECT id FROM files WHERE invalid_reason IS NOT NULL")
        assert all(valid[0][0] < i < valid[0][1] for (i,) in invalid)
        yield index, added


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many summaries each read of the index gave."""
    counts: list[int] = []
    real = ReadBack._read

    def spy(self: ReadBack, first: int, last: int) -> list[RecordSummary]:
        rows = real(self, first, last)
        counts.append(len(rows))
        return rows

    monkeypatch.setattr(ReadBack, "_read", spy)
    return counts


@pytest.mark.parametrize("listed", [False, True], ids=["first-use", "after-names"])
def test_a_slice_reads_only_its_rows_and_equals_that_slice_of_the_whole(
    bulk: tuple[ArchiveIndex, ReadBack], reads: list[int], listed: bool
) -> None:
    _, added = bulk
    if listed:
        added.names()
    sliced = []
    for part in SLICES:
        reads.clear()
        sliced.append(added[part])
        assert reads == ([len(sliced[-1])] if sliced[-1] else [])  # only its own rows
    whole = list(added)
    assert len(whole) == len(added) == RECORDS
    assert [whole[part] for part in SLICES] == sliced
    reads.clear()
    assert added[5:9] == whole[5:9]
    assert added[::7] == whole[::7]
    assert reads == []  # read as a whole once, then sliced


def test_names_are_listed_without_reading_the_summaries(
    bulk: tuple[ArchiveIndex, ReadBack], reads: list[int]
) -> None:
    index, added = bulk
    names = added_names(added)
    assert reads == []
    assert names == [s.file for s in added] == sorted(s.file for s in index.summaries())
    assert not set(names) & set(INVALID)
    assert added_names(list(added)) == names


def test_rows_replaced_since_their_names_were_listed_are_not_read_as_a_slice(
    bulk: tuple[ArchiveIndex, ReadBack],
) -> None:
    """The names a caller learnt and the summaries a slice gives never disagree."""
    index, added = bulk
    name = added.names()[50]
    copy = index.archive / "rewritten.tmp"
    copy.write_bytes((index.archive / name).read_bytes())
    copy.replace(index.archive / name)  # as the atomic writer rewrites a record: a new file
    with ArchiveIndex(index.archive, db_path=index.db_path) as other:  # another process
        assert [s.file for s in other.refresh().added] == [name]
    assert len(added[:50]) == 50  # rows not replaced read as before
    with pytest.raises(ChangedMeanwhileError):
        added[40:60]
