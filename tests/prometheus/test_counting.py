"""Counting in bulk on every core gives exactly the totals of counting one record at a time;
a cold start's processes read their shares of a bulk load from the index themselves."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.archive.files import record_path
from exporter.archive.model import dump_record
from exporter.index import parsing, store
from exporter.index.ledger import Ledger
from exporter.index.readback import ReadBack
from exporter.index.store import ArchiveIndex, Fold
from exporter.index.summary import Projection, RecordSummary, summarize
from exporter.index.writes import Rows, bulk_load
from exporter.prometheus import counting
from exporter.prometheus.aggregates import Aggregates
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.series import contributions
from tests.support.generated_archive import make_record, write_archive


def summaries(n: int) -> list[RecordSummary]:
    """``n`` varied records; every seventh has a duration no clock can count."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        s = summarize(make_record(rng, i), f"batch-{i}-x.json")
        out.append(s._replace(duration_seconds=1e300) if i % 7 == 3 else s)
    return out


def one_at_a_time(records: list[RecordSummary]) -> tuple[Aggregates, dict[str, str]]:
    totals, unusable = Aggregates(), {}
    for s in records:
        try:
            totals.apply(contributions(s))
        except ValueError as exc:
            unusable[s.file] = str(exc)
    return totals, unusable


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fork from 10 records on, whatever threads the test process has; the children forked."""
    monkeypatch.setattr(counting, "PARALLEL_FROM", 10)
    monkeypatch.setattr(counting, "may_fork", lambda: True)
    monkeypatch.setattr(counting, "usable_cores", lambda: 3)
    children: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return children


def test_shares_counted_by_children_add_up_to_the_same_totals(forks: list[int]) -> None:
    records = summaries(61)
    expected, expected_unusable = one_at_a_time(records)
    totals = Aggregates()
    assert counting.count(records, totals) == expected_unusable
    assert len(forks) == 2  # three shares: two children and the parent
    assert totals.state() == expected.state()


def test_a_failed_child_has_its_share_counted_by_the_parent(
    forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = summaries(40)
    expected, expected_unusable = one_at_a_time(records)

    def broken(self: Aggregates) -> dict[str, object]:  # only a child sends its state
        raise RuntimeError("a child that dies")

    monkeypatch.setattr(Aggregates, "state", broken)
    totals = Aggregates()
    assert counting.count(records, totals) == expected_unusable
    assert len(forks) == 2
    monkeypatch.undo()
    assert totals.state() == expected.state()


class _Unreadable(list[RecordSummary]):
    """Summaries whose reading fails in the parent (an index another process changed)."""

    def __init__(self, records: list[RecordSummary], parent: int) -> None:
        super().__init__(records)
        self.parent = parent

    def __getitem__(self, i: Any) -> Any:
        if os.getpid() == self.parent:
            raise RuntimeError("cannot read")
        return super().__getitem__(i)


def test_a_share_the_parent_cannot_read_fails_the_count_after_reaping_the_children(
    forks: list[int],
) -> None:
    with pytest.raises(RuntimeError, match="cannot read"):
        counting.count(_Unreadable(summaries(40), os.getpid()), Aggregates())
    assert len(forks) == 2
    for pid in forks:
        with pytest.raises(ChildProcessError):  # reaped already: no zombie left
            os.waitpid(pid, os.WNOHANG)


def test_few_records_are_counted_in_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("forked for a few records")

    monkeypatch.setattr(os, "fork", no_fork)
    records = summaries(30)
    totals = Aggregates()
    expected, expected_unusable = one_at_a_time(records)
    assert counting.count(records, totals) == expected_unusable
    assert totals.state() == expected.state()
    assert counting.count([], totals) == {}


HUGE = "batch-12-review.json"  # read as an older index may hold it: too large to count
_READ_PROJECTED = parsing.read_projected


def _huge(path: str) -> tuple[Projection, os.stat_result]:
    (scalars, *rest), st = _READ_PROJECTED(path)
    if Path(path).name == HUGE:
        at = RecordSummary._fields.index("duration_seconds") - 1  # a projection has no file
        scalars = (*scalars[:at], 1e300, *scalars[at + 1 :])
    return (scalars, *rest), st  # type: ignore[return-value]


@pytest.fixture
def bulk_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """300 records and a few invalid files among them, for a first refresh to bulk-load; one
    record is read as an older index could hold it (a duration too large to count)."""
    archive = tmp_path / "archive"
    write_archive(archive, 300, every_nth_without=7)
    (archive / "batch-3-broken.json").write_bytes(b"{not json")
    (archive / "batch-40-broken.json").write_bytes(b"")
    monkeypatch.setattr(store, "_BULK_CHANGES", 50)
    monkeypatch.setattr(parsing, "read_projected", _huge)
    return archive


def cold_start(archive: Path, tmp_path: Path, name: str) -> tuple[list[bytes], str | None]:
    """The first scrape of a first start, without scan times; the totals the ledger saved."""
    with (
        ArchiveIndex(archive, db_path=tmp_path / f"{name}.sqlite") as index,
        Ledger(tmp_path / f"{name}.ledger") as ledger,
    ):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index, ledger))
        lines = generate_latest(registry).splitlines()
        with ledger.write() as tx:
            totals = tx.totals()
            assert len(tx.decided()) == 300
    return [line for line in lines if b"exporter_last_scan" not in line], totals


@pytest.mark.parametrize("children", ["counting", "failing"])
def test_a_cold_start_reads_its_bulk_load_back_in_the_counting_processes(
    bulk_archive: Path,
    tmp_path: Path,
    forks: list[int],
    monkeypatch: pytest.MonkeyPatch,
    children: str,
) -> None:
    """Each process reads its own share from the index; the parent never reads the whole,
    and counts the share of a child that failed itself. The figures are the eager path's.
    (A first start counts where the build parses instead; this is the way when it cannot.)"""
    monkeypatch.setattr(ArchiveCollector, "_fold", lambda self: None)
    with monkeypatch.context() as eager:  # the summaries read back whole in the parent first
        real = ArchiveIndex.refresh
        eager.setattr(
            ArchiveIndex,
            "refresh",
            lambda self, **kw: dataclasses.replace(r := real(self, **kw), added=list(r.added)),
        )
        expected = cold_start(bulk_archive, tmp_path, "eager")
    assert len(forks) == 2
    forks.clear()
    read: list[int] = []  # what the parent read: its share, and any failed child's
    real_read = ReadBack._read

    def read_share(self: ReadBack, first: int, last: int) -> list[RecordSummary]:
        share = real_read(self, first, last)
        read.append(len(share))
        return share

    monkeypatch.setattr(ReadBack, "_loaded", lambda self: pytest.fail("read back whole"))
    monkeypatch.setattr(ReadBack, "_read", read_share)
    if children == "failing":  # a child cannot open the index
        real_connect = sqlite3.connect
        monkeypatch.setattr(
            sqlite3,
            "connect",
            lambda *a, **kw: pytest.fail("no") if kw.get("uri") else real_connect(*a, **kw),
        )
    assert cold_start(bulk_archive, tmp_path, "lazy") == expected
    assert len(forks) == 2
    assert read == ([100] if children == "counting" else [100, 100, 100])
    assert b"batch_metrics_exporter_invalid_records 3.0" in expected[0]  # 2 files, and HUGE
    assert f'"{HUGE}":"' in (expected[1] or "")  # not counted, in either way


@pytest.mark.parametrize("fold", ["counting", "uncountable", "failing"])
def test_a_first_start_counts_where_the_build_parses_and_reads_nothing_back(
    bulk_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold: str
) -> None:
    """The build's workers count each chunk as they parse it (two of them here, as at 100k);
    the figures and the saved totals are the read-back count's. When a chunk's count fails
    (a record too large to count, or a bug), the records are read back and counted one at a
    time, as before."""
    if fold == "counting":
        monkeypatch.setattr(parsing, "read_projected", _READ_PROJECTED)  # every one countable
    with monkeypatch.context() as reading:
        reading.setattr(ArchiveCollector, "_fold", lambda self: None)
        expected = cold_start(bulk_archive, tmp_path, "read-back")
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 50)
    monkeypatch.setattr(parsing, "usable_cores", lambda: 2)
    folds: list[int] = []
    real_fold = ArchiveCollector._fold

    def spied(self: ArchiveCollector) -> Fold | None:
        folds.append(1)
        return real_fold(self) if fold == "counting" else _failing_fold

    monkeypatch.setattr(ArchiveCollector, "_fold", spied)
    if fold == "counting":
        monkeypatch.setattr(ReadBack, "_read", lambda *_: pytest.fail("read back"))
    assert cold_start(bulk_archive, tmp_path, f"folded-{fold}") == expected
    assert folds == [1]
    # not counted, in either way
    assert (f'"{HUGE}":"' in (expected[1] or "")) == (fold != "counting")


def _failing_fold(projections: list[Projection]) -> object:
    raise RuntimeError("cannot count")


def test_a_live_only_first_start_decides_a_bulk_load_without_reading_it_back(
    bulk_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stacks' first start over an archive of past runs: each is history (for backfill),
    decided by the end times the index computes; no summary is read back, none is counted."""
    monkeypatch.setattr(parsing, "read_projected", _READ_PROJECTED)  # none ends in the future
    monkeypatch.setattr(ReadBack, "_read", lambda *_: pytest.fail("read back"))
    with (
        ArchiveIndex(bulk_archive, db_path=tmp_path / "index.sqlite") as index,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index, ledger, live_only=True))
        exposed = generate_latest(registry)
        decided = ledger.decided()
    assert len(decided) == 300
    assert not any(decided.values())  # all history
    runs = [
        sample.value
        for family in text_string_to_metric_families(exposed.decode())
        if family.name == "batch_operations"
        for sample in family.samples
    ]
    assert runs and not any(runs)  # exposed at 0, nothing counted live


def test_a_first_start_answers_before_its_rows_are_written_and_counts_later_records_once(
    bulk_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve's first start: the figures come from the fold, the index's rows are written by a
    thread afterwards. Scrapes meanwhile answer at once with the same figures; a record that
    arrives meanwhile is counted once, by the first scrape after the rows are in. (A chunk
    whose count fails is read back from the index: that waits for the rows.)"""
    monkeypatch.setattr(parsing, "read_projected", _READ_PROJECTED)  # every one countable
    expected = cold_start(bulk_archive, tmp_path, "reference")
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 50)
    monkeypatch.setattr(parsing, "usable_cores", lambda: 2)
    release = threading.Event()

    @contextlib.contextmanager
    def held(db: sqlite3.Connection) -> Iterator[Callable[[Rows], None]]:
        assert release.wait(timeout=30)
        with bulk_load(db) as write:
            yield write

    monkeypatch.setattr(store, "bulk_load", held)
    with (
        ArchiveIndex(bulk_archive, db_path=tmp_path / "index.sqlite") as index,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index, ledger))
        first = generate_latest(registry).splitlines()  # the rows are not written yet
        with ledger.write() as tx:
            assert (first_totals := tx.totals()) == expected[1]
        new = make_record(random.Random(1), 1000)  # a new record, meanwhile
        record_path(bulk_archive, new).write_text(dump_record(new), encoding="utf-8")
        again = generate_latest(registry).splitlines()
        assert [line for line in first if b"exporter_last_scan" not in line] == expected[0]
        assert [line for line in again if b"exporter_last_scan" not in line] == expected[0]
        release.set()
        assert len(index) == 300  # waits for the rows
        generate_latest(registry)  # sees the new record (a new series: exposed at 0 first)
        after = _runs(generate_latest(registry))
        with ledger.write() as tx:
            assert len(tx.decided()) == 301
            assert tx.totals() != first_totals
    assert sum(after.values()) == sum(_runs(b"\n".join(expected[0])).values()) + 1


def _runs(exposed: bytes) -> dict[tuple[str, ...], float]:
    """``batch_operations_total`` by its labels."""
    return {
        tuple(sample.labels.values()): sample.value
        for family in text_string_to_metric_families(exposed.decode())
        if family.name == "batch_operations"
        for sample in family.samples
        if sample.name == "batch_operations_total"
    }
