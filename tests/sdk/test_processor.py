"""ArchiveSpanProcessor: one record per finished batch, bounded, never raising into the host."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider

from exporter.archive.files import read_record
from exporter.archive.model import dump_record
from exporter.sdk import processor as processor_module
from exporter.sdk.assemble import assemble
from exporter.sdk.processor import ArchiveSpanProcessor
from instrumentation import contract
from instrumentation import semconv as sc
from tests.support.span_trees import PRICING, SpanTree, three_stage_tree


def _setup(
    archive: Path, **kwargs: int
) -> tuple[SpanTree, ArchiveSpanProcessor, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    processor = ArchiveSpanProcessor(
        archive,
        meter_provider=MeterProvider(metric_readers=[reader]),
        pricing=PRICING,
        **kwargs,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return SpanTree(provider), processor, reader


def _cost_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    data = reader.get_metrics_data()
    points: dict[tuple[str, str], float] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != contract.COST.otel_name:
                    continue
                assert metric.unit == "{USD}"
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    attrs = point.attributes or {}
                    key = (str(attrs[sc.LABEL_OPERATION]), str(attrs[sc.LABEL_MODEL]))
                    points[key] = float(point.value)
    return points


def test_finished_batch_is_written_and_cost_counted(tmp_path: Path) -> None:
    tree, processor, reader = _setup(tmp_path)
    tree = three_stage_tree(tree.provider)
    path = tmp_path / "batch-47-execute.json"
    assert processor.written == (path,)
    record = read_record(path)
    assert record == assemble(tree.finished(), pricing=PRICING)
    assert path.read_text(encoding="utf-8") == dump_record(record)
    assert (record.metrics.total_items, record.metrics.failure_count) == (5, 1)
    assert _cost_points(reader) == {
        ("execute", "big"): 0.0164,
        ("execute", "big-latest"): 0.01,
        ("execute", "small"): 0.5001,
    }


def test_non_batch_traces_are_ignored(tmp_path: Path) -> None:
    tree, processor, _ = _setup(tmp_path / "archive")
    span = tree.start("http request", {}, 0)
    child = tree.start("db", {sc.ATTR_KIND: "item", sc.ATTR_ITEM_ID: "x"}, 0, span)
    tree.end(child, 1)
    tree.end(span, 1)
    assert processor.written == ()
    assert not (tmp_path / "archive").exists()


def test_concurrent_batches_are_kept_apart(tmp_path: Path) -> None:
    tree, processor, _ = _setup(tmp_path)
    barrier = threading.Barrier(4)

    def run(n: int) -> None:
        root = tree.batch({sc.ATTR_BATCH_ID: f"b{n}", sc.ATTR_RUN_ID: f"r{n}"})
        barrier.wait()
        for i in range(n + 1):
            tree.item(root, f"b{n}-item{i}", 0, 1)
        tree.end(root, 2)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(processor.written) == 4
    for n in range(4):
        record = read_record(tmp_path / f"batch-b{n}-execute.json")
        assert record.metrics.total_items == n + 1
        assert record.run_id == f"r{n}"


def test_unwritable_archive_is_logged_once_and_host_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    tree, processor, _ = _setup(blocker / "archive")
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        for n in range(3):
            tree.end(tree.batch({sc.ATTR_RUN_ID: f"r{n}"}), 1)
    errors = [r for r in caplog.records if r.name == "exporter" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "batch '47' was not recorded: cannot write record to" in errors[0].getMessage()
    assert "Not a directory" in errors[0].getMessage()
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG) == 2
    assert processor.written == ()


def test_exporter_bug_is_logged_once_and_host_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug in assemble")

    monkeypatch.setattr(processor_module, "assemble", broken)
    tree, _, _ = _setup(tmp_path)
    with caplog.at_level(logging.WARNING, logger="exporter"):
        tree.end(tree.batch(), 1)
        tree.end(tree.batch(), 1)
    (error,) = [r for r in caplog.records if r.name == "exporter"]
    assert "exporter failed on span end" in error.getMessage()
    assert error.exc_info is not None and str(error.exc_info[1]) == "bug in assemble"
    assert list(tmp_path.iterdir()) == []


def test_hostile_batch_id_is_not_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = tmp_path / "archive"
    tree, _, _ = _setup(archive)
    with caplog.at_level(logging.WARNING, logger="exporter"):
        tree.end(tree.batch({sc.ATTR_BATCH_ID: "../../etc/passwd"}), 1)
    (error,) = caplog.records
    assert "batch '../../etc/passwd' was not recorded: batch_id:" in error.getMessage()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_span_cap_drops_and_notes(tmp_path: Path) -> None:
    tree, _, _ = _setup(tmp_path, max_spans_per_batch=3)
    root = tree.batch()
    for i in range(5):
        tree.item(root, f"i{i}", 0, 1)
    tree.end(root, 1)
    record = read_record(tmp_path / "batch-47-execute.json")
    assert record.metrics.total_items == 2  # the root plus two items fit under the cap of 3
    assert record.notes == [
        "3 spans beyond the limit of 3 per batch were not recorded; counts may be low"
    ]


def test_open_batch_cap_drops_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree, processor, _ = _setup(tmp_path, max_open_batches=1)
    first = tree.batch({sc.ATTR_BATCH_ID: "old"})
    with caplog.at_level(logging.WARNING, logger="exporter"):
        second = tree.batch({sc.ATTR_BATCH_ID: "new"})
    tree.end(second, 1)
    tree.end(first, 1)
    assert processor.written == (tmp_path / "batch-new-execute.json",)
    assert "more than 1 batches running at once" in caplog.records[0].getMessage()


def test_shutdown_records_running_batches_as_crashed_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree, processor, _ = _setup(tmp_path)
    running = tree.batch({sc.ATTR_TOTAL_ITEMS: 3})
    tree.item(running, "done", 0, 1)
    tree.item(running, "broken", 0, 1, "failure")
    with caplog.at_level(logging.WARNING, logger="exporter"):
        processor.shutdown()
        processor.shutdown()
    assert [r.getMessage() for r in caplog.records] == [
        "batch-metrics exporter shut down with 1 batch(es) still running; recording them as crashed"
    ]
    (path,) = processor.written
    record = read_record(path)
    assert record.status == "crashed"
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count) == (3, 1, 1)
    assert record.duration_seconds is not None and record.duration_seconds > 0
    assert record.notes == [
        "the process shut down while this batch was running",
        "1 of 3 announced items reported no outcome",
    ]
    # after shutdown nothing more is recorded
    tree.end(running, 1)
    tree.end(tree.batch({sc.ATTR_RUN_ID: "later"}), 1)
    assert processor.force_flush() is True
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_invalid_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ArchiveSpanProcessor(tmp_path, max_spans_per_batch=0)
