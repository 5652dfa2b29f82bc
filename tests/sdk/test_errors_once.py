"""An exception that travels from an item up to its batch is one error, not two (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.archive.model import BatchRecord, parse_record
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from exporter.prometheus.inprocess import prometheus_reader
from exporter.sdk.configure import configure
from instrumentation import batch, item, stage


def run(archive: Path, body: str) -> tuple[BatchRecord, float | None, float | None]:
    """Run one batch whose body does ``body``; the record and both paths' error counts."""
    registry = CollectorRegistry(auto_describe=False)
    telemetry = configure(
        archive, metric_readers=[prometheus_reader(registry)], set_global=False, otlp=False
    )
    the_batch = batch(
        "47",
        "execute",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    try:
        with pytest.raises(TimeoutError), the_batch, stage(1):
            if body == "escapes":
                with item("PRP-1"):
                    raise TimeoutError("subagent timed out")
            else:  # the item's exception is handled; the batch then fails on its own
                with pytest.raises(TimeoutError), item("PRP-1"):
                    raise TimeoutError("subagent timed out")
                raise TimeoutError("subagent timed out")
        labels = {"operation": "execute", "error_type": "TimeoutError"}
        in_process = registry.get_sample_value("batch_errors_total", labels)
    finally:
        telemetry.shutdown()
    (path,) = archive.glob("batch-*.json")
    record = parse_record(path.read_bytes())
    with ArchiveIndex(archive, db_path=archive.parent / "index.db") as index:
        served = CollectorRegistry(auto_describe=False)
        served.register(ArchiveCollector(index))
        generate_latest(served)
        archived = served.get_sample_value("batch_errors_total", labels)
    return record, in_process, archived


def test_an_exception_escaping_an_item_and_its_batch_counts_once(tmp_path: Path) -> None:
    record, in_process, archived = run(tmp_path / "archive", "escapes")
    assert record.status == "failed"
    errors = record.metrics.errors or []
    assert [(e.item_id, e.error_type, e.error_message) for e in errors] == [
        ("PRP-1", "TimeoutError", "subagent timed out")
    ]
    assert in_process == archived == 1.0


def test_a_second_exception_of_the_same_type_in_the_batch_counts_again(tmp_path: Path) -> None:
    record, in_process, archived = run(tmp_path / "archive", "handled")
    errors = record.metrics.errors or []
    assert [(e.item_id, e.error_type) for e in errors] == [
        ("PRP-1", "TimeoutError"),
        (None, "TimeoutError"),
    ]
    assert in_process == archived == 2.0
