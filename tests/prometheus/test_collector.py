"""The archive collector: exact values per record, incremental updates, invalid files, failures."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.archive.files import write_record
from exporter.archive.model import (
    ModelUsage,
    StageDuration,
    TokenUsage,
)
from exporter.index.ledger import Ledger
from exporter.index.store import ArchiveIndex, Fold, RecordSummary, RefreshResult, summarize
from exporter.prometheus import collector as collector_module
from exporter.prometheus.aggregates import LE_VALUES
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.series import FAMILIES, Contribution, contributions, operation_outcome
from instrumentation.semconv import DURATION_BUCKETS, OPERATIONS
from tests.support.records import T0, rec


def collector_for(
    archive: Path, tmp_path: Path, ledger: Ledger | None = None
) -> tuple[CollectorRegistry, ArchiveCollector]:
    index = ArchiveIndex(archive, db_path=tmp_path / f"index-{len(list(tmp_path.iterdir()))}.db")
    registry = CollectorRegistry(auto_describe=False)
    collector = ArchiveCollector(index, ledger)
    registry.register(collector)
    return registry, collector


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_one_record_gives_exact_samples(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(
        archive,
        rec(
            "47",
            models=[
                ModelUsage(
                    model="claude-sonnet-4-5",
                    input_tokens=1000,
                    output_tokens=200,
                    cache_read_tokens=50,
                    cost_usd=0.125,
                    cost_source="estimate",
                ),
                ModelUsage(model="mystery", input_tokens=10, output_tokens=0),
            ],
            errors=["TimeoutError", "TimeoutError"],
            stages=[
                StageDuration(stage=1, duration_seconds=600.0),
                StageDuration(stage=None, duration_seconds=5.0),
                StageDuration(stage=2),
            ],
        ),
    )
    registry, _ = collector_for(archive, tmp_path)
    ex = {"operation": "execute"}
    assert value(registry, "batch_operations_total", **ex, outcome="partial") == 1.0
    assert value(registry, "batch_items_total", **ex, outcome="success") == 3.0
    assert value(registry, "batch_items_total", **ex, outcome="failure") == 1.0
    assert value(registry, "batch_items_total", **ex, outcome="partial") == 0.0  # zero-initialised
    assert value(registry, "batch_items_total", **ex, outcome="unknown") == 1.0  # 5 - 3 - 1
    dur = {"operation": "execute", "outcome": "partial"}
    assert value(registry, "batch_operation_duration_seconds_sum", **dur) == 700.5
    assert value(registry, "batch_operation_duration_seconds_count", **dur) == 1.0
    assert value(registry, "batch_operation_duration_seconds_bucket", **dur, le="600.0") == 0.0
    assert value(registry, "batch_operation_duration_seconds_bucket", **dur, le="900.0") == 1.0
    assert value(registry, "batch_operation_duration_seconds_bucket", **dur, le="+Inf") == 1.0
    stage1 = {"operation": "execute", "stage": "1"}
    assert value(registry, "batch_stage_duration_seconds_bucket", **stage1, le="600.0") == 1.0
    assert value(registry, "batch_stage_duration_seconds_bucket", **stage1, le="300.0") == 0.0
    assert (
        value(registry, "batch_stage_duration_seconds_sum", operation="execute", stage="unknown")
        == 5.0
    )
    assert (
        value(registry, "batch_stage_duration_seconds_count", operation="execute", stage="2")
        is None
    )
    tok = {"operation": "execute", "model": "claude-sonnet-4-5"}
    assert value(registry, "batch_tokens_total", **tok, type="input") == 1000.0
    assert value(registry, "batch_tokens_total", **tok, type="output") == 200.0
    assert value(registry, "batch_tokens_total", **tok, type="cache_read") == 50.0
    assert (
        value(registry, "batch_tokens_total", operation="execute", model="mystery", type="input")
        == 10.0
    )
    assert value(registry, "batch_cost_usd_total", **tok) == 0.125
    assert value(registry, "batch_cost_usd_total", operation="execute", model="mystery") is None
    assert (
        value(registry, "batch_errors_total", operation="execute", error_type="TimeoutError") == 2.0
    )
    end = T0.timestamp() + 700.5
    assert value(registry, "batch_last_completion_timestamp_seconds", **dur) == end
    assert value(registry, "batch_last_success_timestamp_seconds", operation="execute") is None
    assert value(registry, "batch_metrics_exporter_records") == 1.0
    assert value(registry, "batch_metrics_exporter_invalid_records") == 0.0


def test_totals_only_record_counts_under_model_unknown(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    usage = TokenUsage(input_tokens=500, output_tokens=70, estimated_cost=0.5)
    write_record(
        archive, rec("1", "generate", status="completed", success=5, failure=0, usage=usage)
    )
    registry, _ = collector_for(archive, tmp_path)
    unknown = {"operation": "generate", "model": "unknown"}
    assert value(registry, "batch_tokens_total", **unknown, type="input") == 500.0
    assert value(registry, "batch_tokens_total", **unknown, type="output") == 70.0
    assert value(registry, "batch_cost_usd_total", **unknown) == 0.5
    assert (
        value(registry, "batch_last_success_timestamp_seconds", operation="generate")
        == T0.timestamp() + 700.5
    )


@pytest.mark.parametrize(
    ("status", "counts", "expected"),
    [
        ("completed", (5, 0, 0, 0), "success"),
        ("partial", (5, 3, 1, 1), "partial"),
        ("failed", (5, 5, 0, 0), "failure"),
        ("crashed", (5, 5, 0, 0), "failure"),
        (None, (5, 5, 0, 0), "success"),
        (None, (0, 0, 0, 0), "success"),  # no items: nothing failed (the instrumentation's rule)
        (None, (None, None, None, None), "success"),
        (None, (5, 2, 3, 0), "partial"),
        (None, (5, 4, 0, 0), "partial"),  # one item not accounted for
        (None, (5, 0, 5, 0), "failure"),
        (None, (5, 0, 3, 2), "partial"),
    ],
)
def test_operation_outcome(
    status: str | None, counts: tuple[int | None, ...], expected: str
) -> None:
    total, success, failure, partial = counts
    record = rec("1", status=status, total=total, success=success, failure=failure, partial=partial)
    assert operation_outcome(summarize(record, "f.json")) == expected


def test_buckets_are_the_shared_ones_with_600() -> None:
    assert 600.0 in DURATION_BUCKETS
    assert (*(f"{b:.1f}" for b in DURATION_BUCKETS), "+Inf") == LE_VALUES
    assert LE_VALUES[DURATION_BUCKETS.index(600.0)] == "600.0"


def test_record_without_duration_is_counted_not_observed(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1", duration=None, status="completed", success=5, failure=0))
    registry, _ = collector_for(archive, tmp_path)
    labels = {"operation": "execute", "outcome": "success"}
    assert value(registry, "batch_operations_total", **labels) == 1.0
    assert value(registry, "batch_operation_duration_seconds_count", **labels) == 0.0
    assert value(registry, "batch_last_completion_timestamp_seconds", **labels) == T0.timestamp()


def test_new_record_visible_at_next_scrape_and_removal_keeps_its_counts(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    registry, _ = collector_for(archive, tmp_path)
    labels = {"operation": "execute", "outcome": "partial"}
    assert value(registry, "batch_operations_total", **labels) == 1.0
    later = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    path = write_record(archive, rec("2", duration=100.25, start=later))
    assert value(registry, "batch_operations_total", **labels) == 2.0
    assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 800.75
    assert (
        value(registry, "batch_last_completion_timestamp_seconds", **labels)
        == later.timestamp() + 100.25
    )
    path.unlink()  # a counter never goes down: the removal is counted apart
    assert value(registry, "batch_operations_total", **labels) == 2.0
    assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 800.75
    assert value(registry, "batch_metrics_exporter_corrections_total", kind="removed") == 1.0
    assert value(registry, "batch_metrics_exporter_corrections_total", kind="rewritten") == 0.0
    assert value(registry, "batch_metrics_exporter_records") == 1.0  # what the archive holds
    write_record(archive, rec("2", duration=100.25, start=later))  # restored: not counted again
    assert value(registry, "batch_operations_total", **labels) == 2.0


def test_a_rewrite_seen_by_a_rescan_is_a_correction(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    path = write_record(archive, rec("1", duration=10.0))
    registry, collector = collector_for(archive, tmp_path)
    labels = {"operation": "execute", "outcome": "partial"}
    assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 10.0
    mtime = archive.stat().st_mtime_ns
    path.write_text(rec("1", duration=20.0).model_dump_json(exclude_none=True), encoding="utf-8")
    os.utime(archive, ns=(mtime, mtime))  # what an in-place rewrite leaves: same directory mtime
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 10.0
    collector.rescan()  # seen now, and counted as a correction: what was counted stays
    assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 10.0
    assert value(registry, "batch_operations_total", **labels) == 1.0
    assert value(registry, "batch_metrics_exporter_corrections_total", kind="rewritten") == 1.0


def test_incremental_equals_restart(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    ledger_path = tmp_path / "ledger.sqlite"
    with Ledger(ledger_path) as ledger:
        registry, _ = collector_for(archive, tmp_path, ledger)
        generate_latest(registry)  # cold start on an empty archive
        durations = [0.1, 0.2, 0.3, 1e-9, 7200.000000001, 12.345678912]
        for n, d in enumerate(durations):
            write_record(archive, rec(str(n), duration=d))
            generate_latest(registry)
        (archive / "batch-2-execute.json").unlink()
        live = generate_latest(registry)
    with Ledger(ledger_path) as ledger:  # a restart: counters, corrections and all are equal
        restarted, _ = collector_for(archive, tmp_path, ledger)
        assert _without_scan_times(generate_latest(restarted)) == _without_scan_times(live)
        assert value(
            restarted,
            "batch_operation_duration_seconds_sum",
            operation="execute",
            outcome="partial",
        ) == sum(durations)


def _without_scan_times(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"exporter_last_scan" not in line]


def test_invalid_file_is_skipped_counted_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    (archive / "batch-9-execute.json").write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        registry, _ = collector_for(archive, tmp_path)
        generate_latest(registry)
        generate_latest(registry)
        write_record(archive, rec("2"))
        generate_latest(registry)
    assert value(registry, "batch_metrics_exporter_invalid_records") == 1.0
    assert value(registry, "batch_metrics_exporter_records") == 2.0
    warnings = [r for r in caplog.records if "batch-9-execute.json" in r.getMessage()]
    assert len(warnings) == 1


def test_failing_scan_keeps_last_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    registry, collector = collector_for(archive, tmp_path)
    assert value(registry, "batch_operations_total", operation="execute", outcome="partial") == 1.0

    def broken(*, full: bool = False) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(collector.index, "refresh", broken)
    with caplog.at_level(logging.WARNING):
        first = generate_latest(registry).decode().splitlines()
        second = generate_latest(registry).decode().splitlines()
    assert 'batch_operations_total{operation="execute",outcome="partial"} 1.0' in second
    assert "batch_metrics_exporter_scan_errors_total 1.0" in first
    assert "batch_metrics_exporter_scan_errors_total 2.0" in second
    assert collector.status.ok is False
    assert collector.status.error == "OSError: disk on fire"
    # the last successful scan's time stays exposed: the figures served are from then
    scanned = value(registry, "batch_metrics_exporter_last_scan_timestamp_seconds")
    assert scanned is not None and 0 < scanned == collector.status.finished_at
    assert (
        len([r for r in caplog.records if "disk on fire" in r.getMessage()]) == 1
    )  # not per scrape


def test_item_work_is_duration_times_efficiency_when_both_are_known(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1", duration=700.5, efficiency=2.5))
    write_record(archive, rec("2", duration=100.25, efficiency=0.5))
    write_record(archive, rec("3", duration=900.0))  # no efficiency: no item time recorded
    write_record(archive, rec("4", "review", duration=None, efficiency=3.0))  # no wall time
    registry, _ = collector_for(archive, tmp_path)
    work = value(registry, "batch_item_work_seconds_total", operation="execute")
    assert work == 700.5 * 2.5 + 100.25 * 0.5
    assert value(registry, "batch_item_work_seconds_total", operation="review") == 0.0


def test_every_contract_family_is_exposed_with_help(tmp_path: Path) -> None:
    registry, _ = collector_for(tmp_path / "missing", tmp_path)
    text = generate_latest(registry).decode()
    for family in FAMILIES:
        name = family.name + ("_total" if family.kind == "counter" else "")  # text format 0.0.4
        assert f"# TYPE {name} {family.kind}\n" in text
        assert f"# HELP {name} {family.help}\n" in text


def test_record_too_large_to_count_is_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loader bounds durations now; an index written before that may still hold one.
    huge = summarize(rec("2", duration=1.0), "batch-2-execute.json")._replace(
        duration_seconds=1e300
    )
    with pytest.raises(ValueError, match="too large to count"):
        contributions(huge)
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    write_record(archive, rec("2", duration=1.0))
    real_refresh = ArchiveIndex.refresh

    def refresh_from_an_old_index(
        self: ArchiveIndex, *, full: bool = False, fold: Fold | None = None, **kw: bool
    ) -> RefreshResult:
        result = real_refresh(self, full=full, fold=fold, **kw)
        added = tuple(huge if s.file == huge.file else s for s in result.added)
        return dataclasses.replace(result, added=added)

    monkeypatch.setattr(ArchiveIndex, "refresh", refresh_from_an_old_index)
    db, ledger = tmp_path / "index.db", tmp_path / "ledger.sqlite"
    for start in ("first", "restart"):
        with ArchiveIndex(archive, db_path=db) as index, Ledger(ledger) as kept:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(ArchiveCollector(index, kept))
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                runs = value(
                    registry, "batch_operations_total", operation="execute", outcome="partial"
                )
            assert runs == 1.0, start
            assert value(registry, "batch_metrics_exporter_invalid_records") == 1.0, start
            assert value(registry, "batch_metrics_exporter_scan_errors_total") == 0.0, start
            warned = any("too large to count" in r.getMessage() for r in caplog.records)
            assert warned == (start == "first")  # a restart loads the saved totals: no recount


def test_concurrent_scrapes_share_one_archive_refresh(tmp_path: Path) -> None:
    """Scrapes that arrive while an update runs wait for it instead of refreshing again."""
    import threading

    from tests.support.servers import wait_until

    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    index = ArchiveIndex(archive, db_path=tmp_path / "index.sqlite")
    collector = ArchiveCollector(index)
    collector.update()  # cold load
    write_record(archive, rec("2", start=T0.replace(hour=10)))

    class ObservedLock:
        """The collector's lock, counting attempts that found it taken."""

        def __init__(self) -> None:
            self.inner = threading.Lock()
            self.contended = 0

        def acquire(self, blocking: bool = True) -> bool:
            got = self.inner.acquire(False)
            if not got:
                self.contended += 1
                if blocking:
                    got = self.inner.acquire()
            return got

        def release(self) -> None:
            self.inner.release()

        def __enter__(self) -> None:
            self.acquire()

        def __exit__(self, *exc: object) -> None:
            self.release()

    lock = ObservedLock()
    collector._lock = lock  # type: ignore[assignment]
    release = threading.Event()
    calls: list[bool] = []
    real_refresh = index.refresh

    def slow_refresh(*, full: bool = False, fold: Fold | None = None, **kw: bool):
        calls.append(full)
        assert release.wait(10)
        return real_refresh(full=full, fold=fold, **kw)

    index.refresh = slow_refresh  # type: ignore[method-assign]
    threads = [threading.Thread(target=collector.update) for _ in range(4)]
    threads[0].start()
    wait_until(lambda: calls == [False], timeout=10, what="the first update to start")
    for t in threads[1:]:
        t.start()
    # each waiter found the lock taken twice: trying to update, then waiting for the result
    wait_until(lambda: lock.contended >= 6, timeout=10, what="the scrapes to queue")
    release.set()
    for t in threads:
        t.join(10)
    assert calls == [False]
    assert collector.status.records == 2
    index.close()


def test_the_collector_recounts_when_another_process_changed_its_index(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    write_record(archive, rec("2", start=T0.replace(hour=10)))
    db = tmp_path / "shared.sqlite"
    with ArchiveIndex(archive, db_path=db) as mine, ArchiveIndex(archive, db_path=db) as theirs:
        collector = ArchiveCollector(mine)
        assert collector.update().records == 2
        (archive / "batch-2-execute.json").unlink()
        theirs.refresh()
        assert collector.update().records == 1
        registry = CollectorRegistry()
        registry.register(collector)
        assert (  # counted once, so it stays
            registry.get_sample_value(
                "batch_operations_total", {"operation": "execute", "outcome": "partial"}
            )
            == 2.0
        )


def test_every_bounded_series_is_exposed_at_zero_before_any_record(tmp_path: Path) -> None:
    """increase() ignores a series' first sample: series must exist before their first run."""
    archive = tmp_path / "archive"
    archive.mkdir()
    registry, _ = collector_for(archive, tmp_path)
    for op in OPERATIONS:
        for outcome in ("success", "failure", "partial"):
            labels = {"operation": op, "outcome": outcome}
            assert value(registry, "batch_operations_total", **labels) == 0.0
            assert value(registry, "batch_operation_duration_seconds_count", **labels) == 0.0
            assert value(registry, "batch_operation_duration_seconds_sum", **labels) == 0.0
            for le in LE_VALUES:
                bucket = value(registry, "batch_operation_duration_seconds_bucket", **labels, le=le)
                assert bucket == 0.0
        for outcome in ("success", "failure", "partial", "unknown"):
            assert value(registry, "batch_items_total", operation=op, outcome=outcome) == 0.0
        assert value(registry, "batch_item_work_seconds_total", operation=op) == 0.0
    # open-ended labels and timestamps are not invented
    text = generate_latest(registry).decode()
    for family in ("batch_tokens_total{", "batch_errors_total{", "batch_last_success_timestamp_"):
        assert f"\n{family}" not in text


def test_an_all_failed_operation_has_a_success_series_at_zero(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1", total=4, success=0, failure=4, status="failed"))
    registry, _ = collector_for(archive, tmp_path)
    ex = {"operation": "execute"}
    assert value(registry, "batch_items_total", **ex, outcome="success") == 0.0
    assert value(registry, "batch_items_total", **ex, outcome="failure") == 4.0
    assert value(registry, "batch_operations_total", **ex, outcome="failure") == 1.0


def test_an_update_that_fails_half_way_serves_the_last_complete_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    registry, collector = collector_for(archive, tmp_path)
    before = generate_latest(registry).decode()
    write_record(archive, rec("2", success=5, failure=0, status="completed"))
    write_record(archive, rec("3", success=0, failure=5, status="failed"))
    real = contributions
    calls: list[str] = []

    def second_fails(s: RecordSummary) -> Contribution:
        calls.append(s.file)
        if len(calls) == 2:
            raise RuntimeError("bug in the middle of an update")
        return real(s)

    monkeypatch.setattr(collector_module, "contributions", second_fails)
    during = generate_latest(registry).decode()
    assert len(calls) == 2  # one record's contribution was computed before the failure
    assert collector.status.ok is False
    assert _contract_lines(during) == _contract_lines(before)  # nothing half-applied
    monkeypatch.setattr(collector_module, "contributions", real)
    after = generate_latest(registry).decode()
    fresh, _ = collector_for(archive, tmp_path)
    assert _contract_lines(after) == _contract_lines(generate_latest(fresh).decode())
    assert value(registry, "batch_metrics_exporter_records") == 3.0
    assert value(registry, "batch_operations_total", operation="execute", outcome="failure") == 1.0


def _contract_lines(text: str) -> list[str]:
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith("batch_") and not line.startswith("batch_metrics_")
    )
