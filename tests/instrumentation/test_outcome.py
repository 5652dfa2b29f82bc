"""One rule for a run's outcome: the live span and metrics agree with the archived record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporter.archive.model import BatchRecord
from exporter.sdk.assemble import assemble
from instrumentation import Batch, batch, contract, item, mark_item, semconv
from instrumentation.semconv import run_outcome


@pytest.mark.parametrize(
    ("total", "success", "partial", "body_failed", "expected"),
    [
        (0, 0, 0, False, "success"),  # no items, no exception
        (0, 0, 0, True, "failure"),
        (3, 3, 0, False, "success"),
        (3, 3, 0, True, "failure"),  # the body raised after every item succeeded
        (5, 2, 0, False, "partial"),  # three announced items never reported
        (3, 0, 1, False, "partial"),  # a partly done item is not a failed run
        (3, 0, 0, False, "failure"),
    ],
)
def test_run_outcome(
    total: int, success: int, partial: int, body_failed: bool, expected: str
) -> None:
    assert run_outcome(total, success, partial, body_failed) == expected


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def open(self, total_items: int | None = None) -> Batch:
        return batch(
            "47",
            "execute",
            run_id="r1",
            total_items=total_items,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
        )

    def record(self) -> BatchRecord:
        return assemble(self.spans.get_finished_spans())

    def root_outcome(self) -> object:
        (root,) = (s for s in self.spans.get_finished_spans() if s.name == "batch execute")
        return (root.attributes or {})[semconv.ATTR_OUTCOME]

    def operations(self) -> dict[str, int | float]:
        """batch.operations points by outcome."""
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == contract.OPERATIONS.otel_name:
                        assert isinstance(metric.data, Sum)
                        return {
                            str((p.attributes or {})[semconv.LABEL_OUTCOME]): p.value
                            for p in metric.data.data_points
                        }
        return {}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Telemetry(spans, tracer_provider, reader, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_a_retry_that_succeeds_is_a_successful_run(telemetry: Telemetry) -> None:
    with telemetry.open() as b:
        with item("PRP-1") as first:
            first.set_outcome("failure", error_type="Timeout")
        with item("PRP-1"):
            pass  # the retry succeeds
    assert b.outcome == "success"
    assert b.item_counts == {"success": 1, "failure": 0, "partial": 0}
    assert telemetry.root_outcome() == "success"
    assert telemetry.operations() == {"success": 1}
    record = telemetry.record()
    assert record.status == "completed"
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count) == (1, 1, 0)


def test_a_retry_that_fails_replaces_the_success(telemetry: Telemetry) -> None:
    with telemetry.open() as b:
        mark_item("PRP-1", "success")
        mark_item("PRP-2", "success")
        mark_item("PRP-1", "failure")
    assert b.outcome == "partial"
    assert b.item_counts == {"success": 1, "failure": 1, "partial": 0}
    assert telemetry.root_outcome() == "partial"
    assert telemetry.record().status == "partial"


def test_announced_items_without_outcome_make_the_run_partial(telemetry: Telemetry) -> None:
    with telemetry.open(total_items=5) as b:
        mark_item("PRP-1", "success")
        mark_item("PRP-2", "success")
    assert b.outcome == "partial"
    assert telemetry.root_outcome() == "partial"
    assert telemetry.operations() == {"partial": 1}
    record = telemetry.record()
    assert record.status == "partial"
    assert (record.metrics.total_items, record.metrics.success_count) == (5, 2)
    assert record.notes == ["3 of 5 announced items reported no outcome"]


def test_only_partly_done_items_are_a_partial_run(telemetry: Telemetry) -> None:
    with telemetry.open() as b:
        mark_item("PRP-1", "partial")
        mark_item("PRP-2", "failure")
    assert b.outcome == "partial"
    assert telemetry.record().status == "partial"
