"""History and the live scrape share one ledger: every run reaches Prometheus exactly once.

``serve --live-only`` counts runs that end after the cut-over and arrive on time;
``backfill --missing`` loads everything else, once. Counters never go down.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.archive.files import write_record
from exporter.cli.main import main
from exporter.index.ledger import LATE_AFTER_SECONDS, Ledger, ledger_path
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.history import load_missing
from tests.support.records import rec
from tests.support.servers import require_binary

RUNS = {"operation": "execute", "outcome": "partial"}


def _write(archive: Path, batch: str, seconds_ago: float) -> None:
    """A run of 60 s that ended ``seconds_ago``."""
    start = datetime.fromtimestamp(time.time() - seconds_ago - 60.0, UTC)
    write_record(archive, rec(batch, duration=60.0, start=start))


def _live(archive: Path, tmp_path: Path, ledger: Ledger) -> CollectorRegistry:
    index = ArchiveIndex(archive, tmp_path / f"serve-{time.monotonic_ns()}.sqlite")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ArchiveCollector(index, ledger, live_only=True))
    return registry


def test_the_live_scrape_counts_what_ends_after_the_cutover_and_arrives_on_time(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive"
    _write(archive, "1", 86_400)  # history: ended a day before the exporter first started
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        registry = _live(archive, tmp_path, ledger)
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0
        assert registry.get_sample_value("batch_metrics_exporter_late_records_total") == 0.0
        assert registry.get_sample_value("batch_metrics_exporter_records") == 1.0
        _write(archive, "2", 0)  # ends after the cut-over, seen at once: live
        # a new series is scraped at 0 first, so that increase() sees its first run
        assert registry.get_sample_value("batch_operations_total", RUNS) == 0.0
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
        _write(archive, "3", LATE_AFTER_SECONDS + 60)  # seen too late for its window: history
        assert registry.get_sample_value("batch_operations_total", RUNS) == 1.0
        assert registry.get_sample_value("batch_metrics_exporter_late_records_total") == 1.0
        decided = ledger.decided()
    assert decided == {
        "batch-1-execute.json": False,
        "batch-2-execute.json": True,
        "batch-3-execute.json": False,
    }
    with Ledger(tmp_path / "ledger.sqlite") as ledger:  # a restart: the same counters
        restarted = _live(archive, tmp_path, ledger)
        assert restarted.get_sample_value("batch_operations_total", RUNS) == 1.0
        assert restarted.get_sample_value("batch_metrics_exporter_late_records_total") == 1.0


def test_backfill_missing_loads_history_once_and_never_what_is_live(tmp_path: Path) -> None:
    require_binary("promtool")
    archive = tmp_path / "archive"
    _write(archive, "1", 86_400)
    _write(archive, "2", 7_200)
    tsdb = tmp_path / "tsdb"
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index, Ledger(None) as ledger:
        index.refresh()
        first = load_missing(index, ledger, time.time(), tsdb=tsdb)
        assert (first.stats.records, first.live) == (2, 0)
        assert [p for p in tsdb.iterdir() if (p / "meta.json").exists()]
        assert load_missing(index, ledger, time.time(), tsdb=tsdb).stats.records == 0
        _write(archive, "3", 0)  # ends after the cut-over: the live exporter's
        _write(archive, "4", 3_600)  # ended after the cut-over but arrived late: history
        index.refresh()
        later = load_missing(index, ledger, time.time(), tsdb=tsdb)
        assert (later.stats.records, later.live) == (1, 1)
        assert ledger.decided()["batch-3-execute.json"] is True


def test_an_output_file_counts_as_loaded_once_its_loader_confirms_it(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    _write(archive, "1", 86_400)
    out = tmp_path / "history.om"
    marker = tmp_path / "loaded"
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index, Ledger(None) as ledger:
        index.refresh()
        now = int(time.time())

        def load(later: int) -> int:
            loaded = load_missing(index, ledger, now + later, output=out, marker=marker)
            return loaded.stats.records

        assert load(0) == 1
        assert Path(f"{out}.id").read_text() == f"{now}\n"
        # promtool did not confirm it: the record is still missing, in the next load
        _write(archive, "2", 86_000)
        index.refresh()
        assert load(10) == 2
        # what the loading step does after promtool succeeded: that load's id, confirmed
        marker.write_text(Path(f"{out}.id").read_text())
        assert load(20) == 0
        assert not out.exists()
        assert load(30) == 0


def test_cli_missing_uses_the_archives_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    _write(archive, "1", 86_400)
    out = tmp_path / "history.om"
    command = ["backfill", "--archive", str(archive), "--missing", "--output", str(out)]
    assert main(command) == 0
    assert "backfill: 1 records" in capsys.readouterr().err
    assert 'job="batch-metrics-history"' in out.read_text(encoding="utf-8")
    path = ledger_path(archive)
    assert path is not None
    with Ledger(path) as ledger:
        assert ledger.decided() == {"batch-1-execute.json": False}
    assert main(["backfill", "--archive", str(archive), "--missing"]) == 2
    assert "--missing needs --tsdb DIR or --output FILE" in capsys.readouterr().err
