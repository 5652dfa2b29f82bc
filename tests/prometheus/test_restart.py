"""``serve`` restarts from the totals its ledger saved: the same counters, nothing counted twice.

The ledger keeps the running totals in the transaction that changed them, and marks each live
record they include. A restart loads them and counts only what they lack: live records another
process decided meanwhile, and records the ledger never decided (a crash between the index's
commit and the ledger's). Saved totals of another layout, or none, mean counting every live
record again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.archive.files import write_record
from exporter.archive.model import ModelUsage
from exporter.index.ledger import Ledger
from exporter.index.store import ArchiveIndex
from exporter.index.summary import RecordSummary
from exporter.prometheus import collector as collector_module
from exporter.prometheus import counting as counting_module
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.history import missing_history
from exporter.prometheus.series import Contribution, contributions
from tests.support.records import T0, rec

RUNS = {"operation": "execute", "outcome": "partial"}


@contextlib.contextmanager
def serving(tmp_path: Path, *, live_only: bool = False) -> Iterator[CollectorRegistry]:
    """serve's collector over its own index and the archive's ledger, both kept across starts."""
    archive = tmp_path / "archive"
    with (
        ArchiveIndex(archive, tmp_path / "serve.sqlite") as index,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index, ledger, live_only=live_only))
        yield registry


@contextlib.contextmanager
def beside_a_backfill(
    tmp_path: Path,
) -> Iterator[tuple[CollectorRegistry, ArchiveIndex, Ledger]]:
    """A live-only serve of an empty archive, scraped once, and what a backfill beside it
    uses: an index of its own and the archive's ledger."""
    archive = tmp_path / "archive"
    archive.mkdir()
    with (
        serving(tmp_path, live_only=True) as registry,
        ArchiveIndex(archive, tmp_path / "shared.sqlite") as shared,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0
        yield registry, shared, ledger


def contract_lines(registry: CollectorRegistry) -> list[bytes]:
    """What a scrape shows, but the scan's own time and duration."""
    return [
        line for line in generate_latest(registry).splitlines() if b"exporter_last_scan" not in line
    ]


def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the records whose contributions are computed from now on."""
    counted: list[str] = []

    def spy(s: RecordSummary) -> Contribution:
        counted.append(s.file)
        return contributions(s)

    monkeypatch.setattr(collector_module, "contributions", spy)  # records first seen
    monkeypatch.setattr(counting_module, "contributions", spy)  # counting in bulk
    return counted


def _ended(seconds_ago: float) -> datetime:
    """The start of a 60 s run that ended ``seconds_ago`` (< 0: ends after the cut-over that a
    start of serve just set)."""
    return datetime.fromtimestamp(time.time() - seconds_ago - 60.0, UTC)


def test_a_restart_loads_the_totals_and_counts_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    model = ModelUsage(model="claude-sonnet-4-5", input_tokens=10, output_tokens=2, cost_usd=0.1)
    write_record(archive, rec("1", models=[model], errors=["TimeoutError"]))
    write_record(archive, rec("2", "review", status="completed", success=5, failure=0))
    with serving(tmp_path) as registry:
        generate_latest(registry)
        write_record(archive, rec("3", start=T0.replace(hour=11), duration=0.25))
        generate_latest(registry)  # the new record's model series at 0 first
        (archive / "batch-1-execute.json").unlink()  # still counted: a correction
        before = contract_lines(registry)
    counted = counting(monkeypatch)
    with serving(tmp_path) as registry:
        assert contract_lines(registry) == before
    assert counted == []
    assert b'batch_metrics_exporter_corrections_total{kind="removed"} 1.0' in before


def test_what_another_process_decided_live_meanwhile_is_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    with serving(tmp_path, live_only=True) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0
    write_record(archive, rec("1", duration=60.0, start=_ended(-1)))
    # the stack's backfill --missing, before serve starts again, decides it live
    with (
        ArchiveIndex(archive, tmp_path / "shared.sqlite") as shared,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        shared.refresh()
        assert missing_history(shared, ledger, time.time())[1] == 1
    counted = counting(monkeypatch)
    with serving(tmp_path, live_only=True) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
    with serving(tmp_path, live_only=True) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
    assert counted == ["batch-1-execute.json"]  # once, at the first restart


def test_a_running_serve_takes_the_ledgers_decision_over_its_own(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    with beside_a_backfill(tmp_path) as (registry, shared, ledger):
        write_record(archive, rec("1", duration=60.0, start=_ended(-1)))
        write_record(archive, rec("2", duration=60.0, start=_ended(-1)))
        shared.refresh()
        # a backfill that sees them an hour later (a clock of its own) calls them history
        missing, live = missing_history(shared, ledger, time.time() + 3600.0)
        assert ({s.file for s in missing}, live) == (
            {"batch-1-execute.json", "batch-2-execute.json"},
            0,
        )
        for _ in range(2):  # held back one scrape, were they counted
            assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0
        assert registry.get_sample_value("batch_metrics_exporter_late_records_total") == 0.0
    with serving(tmp_path, live_only=True) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0


def test_a_record_the_ledger_never_decided_is_counted_at_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    with serving(tmp_path) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
    write_record(archive, rec("2", start=T0.replace(hour=10)))
    # serve's index took it in, then serve died before its ledger did (a crash between)
    with ArchiveIndex(archive, tmp_path / "serve.sqlite") as index:
        assert [s.file for s in index.refresh().added] == ["batch-2-execute.json"]
    counted = counting(monkeypatch)
    with serving(tmp_path) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 2.0
    assert counted == ["batch-2-execute.json"]


@pytest.mark.parametrize(
    "totals",
    [
        '{"aggregates": {"format": "0-another-layout"}, "unusable": {}}',
        "not json",
        None,  # a ledger written before the totals were kept
    ],
)
def test_totals_of_another_layout_or_none_are_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, totals: str | None
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    write_record(archive, rec("2", start=T0.replace(hour=10)))
    with serving(tmp_path) as registry:
        generate_latest(registry)
        (archive / "batch-1-execute.json").unlink()
        before = contract_lines(registry)
    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.sqlite")) as db, db:
        if totals is None:  # the layout before: no totals, no counted column
            db.execute("DELETE FROM meta WHERE key='totals'")
            db.execute("ALTER TABLE decided DROP COLUMN counted")
        else:
            db.execute("UPDATE meta SET value=? WHERE key='totals'", (totals,))
    counted = counting(monkeypatch)
    with serving(tmp_path) as registry:  # counted again: the removed one from its tombstone
        assert contract_lines(registry) == before
    assert sorted(counted) == ["batch-1-execute.json", "batch-2-execute.json"]
    counted.clear()
    with serving(tmp_path) as registry:  # and saved: the next restart loads them
        assert contract_lines(registry) == before
    assert counted == []


def test_what_a_backfill_decides_live_while_serve_runs_is_counted_once(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    with beside_a_backfill(tmp_path) as (registry, shared, ledger):
        write_record(archive, rec("1", duration=60.0, start=_ended(-1)))
        shared.refresh()
        assert missing_history(shared, ledger, time.time())[1] == 1  # decided live there
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0  # at 0 first
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
    with serving(tmp_path, live_only=True) as registry:
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
