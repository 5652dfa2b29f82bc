"""The instrumentation's metrics: exact points, bucket boundaries and the Prometheus names."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry, generate_latest

from instrumentation import (
    Batch,
    batch,
    item,
    mark_item,
    record_tokens,
    semconv,
    stage,
    traced_stage,
)
from instrumentation._instruments import instruments_for

Labels = frozenset[tuple[str, Any]]


@dataclass
class Metrics:
    provider: MeterProvider
    reader: InMemoryMetricReader

    def open(self, operation: semconv.Operation) -> Batch:
        return open_batch(self.provider, operation)

    def points(self) -> dict[str, dict[Labels, Any]]:
        """Metric name -> {labels: value (sums, gauges) or data point (histograms)}."""
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, dict[Labels, Any]] = {}
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                assert scope_metrics.scope.name == semconv.METER_NAME
                for metric in scope_metrics.metrics:
                    found[metric.name] = {
                        frozenset((p.attributes or {}).items()): (
                            p if isinstance(p, HistogramDataPoint) else p.value  # type: ignore[union-attr]
                        )
                        for p in metric.data.data_points
                    }
        return found


def open_batch(provider: MeterProvider, operation: semconv.Operation) -> Batch:
    return batch("47", operation, tracer_provider=NoOpTracerProvider(), meter_provider=provider)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Metrics(provider, reader)
    provider.shutdown()


def labels(**kw: str) -> Labels:
    return frozenset(kw.items())


def run_three_batches(provider: MeterProvider) -> None:
    """execute: partial (3 items ok/failed/partial + 1 marked failure); generate: success;
    review: an exception escapes item, stage and batch."""

    @traced_stage(1)
    def first() -> None:
        with item("PRP-1"):
            record_tokens(input=100, output=20, model="claude-x", cache_read=30)
        try:
            with item("PRP-2"):
                raise ValueError("compile error in generated code")
        except ValueError:
            pass
        with item("PRP-3") as it:
            record_tokens(input=5, output=1, model="claude-y", cost_usd=0.5)
            it.set_outcome("partial", error_type="Timeout")

    with open_batch(provider, "execute"):
        first()
        with stage(2):
            mark_item("PRP-4", "failure", duration_seconds=30.0)
    with open_batch(provider, "generate"), stage(1), item("PRP-5"):
        record_tokens(input=7, output=3, model="claude-x")
    with pytest.raises(KeyError), open_batch(provider, "review"), stage(1), item("PRP-6"):
        raise KeyError("missing")


def test_metric_points_are_exact(metrics: Metrics) -> None:
    before = time.time()
    run_three_batches(metrics.provider)
    after = time.time()
    got = metrics.points()

    assert got["batch.operations"] == {
        labels(operation="execute", outcome="partial"): 1,
        labels(operation="generate", outcome="success"): 1,
        labels(operation="review", outcome="failure"): 1,
    }
    assert got["batch.items"] == {
        labels(operation="execute", outcome="success"): 1,
        labels(operation="execute", outcome="failure"): 2,
        labels(operation="execute", outcome="partial"): 1,
        labels(operation="generate", outcome="success"): 1,
        labels(operation="review", outcome="failure"): 1,
    }
    # the KeyError escaping item, stage and batch counts once
    assert got["batch.errors"] == {
        labels(operation="execute", error_type="ValueError"): 1,
        labels(operation="execute", error_type="Timeout"): 1,
        labels(operation="execute", error_type=semconv.ERROR_TYPE_OTHER): 1,
        labels(operation="review", error_type="KeyError"): 1,
    }
    assert got["batch.tokens"] == {
        labels(operation="execute", model="claude-x", type="input"): 100,
        labels(operation="execute", model="claude-x", type="output"): 20,
        labels(operation="execute", model="claude-x", type="cache_read"): 30,
        labels(operation="execute", model="claude-y", type="input"): 5,
        labels(operation="execute", model="claude-y", type="output"): 1,
        labels(operation="generate", model="claude-x", type="input"): 7,
        labels(operation="generate", model="claude-x", type="output"): 3,
    }
    running = {labels(operation=op): 0 for op in ("execute", "generate", "review")}
    assert got["batch.operations.running"] == running
    assert got["batch.items.running"] == running

    durations = got["batch.operation.duration"]
    assert set(durations) == {
        labels(operation="execute", outcome="partial"),
        labels(operation="generate", outcome="success"),
        labels(operation="review", outcome="failure"),
    }
    stages = got["batch.stage.duration"]
    assert set(stages) == {
        labels(operation="execute", stage="1"),
        labels(operation="execute", stage="2"),
        labels(operation="generate", stage="1"),
        labels(operation="review", stage="1"),
    }
    for point in [*durations.values(), *stages.values()]:
        assert point.count == 1
        assert 0 <= point.sum < after - before
        assert tuple(point.explicit_bounds) == semconv.DURATION_BUCKETS
        assert list(point.bucket_counts) == [1] + [0] * len(semconv.DURATION_BUCKETS)

    # item work: every item's seconds, mark_item's duration_seconds included
    work = got["batch.item.work"]
    assert set(work) == {labels(operation=op) for op in ("execute", "generate", "review")}
    assert 30.0 <= work[labels(operation="execute")] < 30.0 + (after - before)
    for op in ("generate", "review"):
        assert 0 < work[labels(operation=op)] < after - before

    completions = got["batch.last_completion_timestamp"]
    assert set(completions) == set(durations)
    assert all(before <= value <= after for value in completions.values())
    successes = got["batch.last_success_timestamp"]
    assert set(successes) == {labels(operation="generate")}
    assert (
        successes[labels(operation="generate")]
        == (completions[labels(operation="generate", outcome="success")])
    )
    assert "batch.cost.usd" not in got  # cost is computed on the SDK side from the pricing table


def test_item_work_adds_marked_durations_exactly(metrics: Metrics) -> None:
    with metrics.open("update-context"), stage(1):
        mark_item("A", "success", duration_seconds=2.5)
        mark_item("B", "failure", duration_seconds=0.25)
        mark_item("C", "success")  # no duration: no work
    assert metrics.points()["batch.item.work"] == {labels(operation="update-context"): 2.75}


def test_duration_buckets_include_600_and_reach_hours(metrics: Metrics) -> None:
    with metrics.open("execute"):
        pass
    (point,) = metrics.points()["batch.operation.duration"].values()
    bounds = tuple(point.explicit_bounds)
    assert 600.0 in bounds
    assert bounds[-1] >= 4 * 3600
    assert bounds == tuple(sorted(bounds))


def test_instruments_are_created_once_per_provider(metrics: Metrics) -> None:
    first = instruments_for(metrics.provider)
    assert instruments_for(metrics.provider) is first
    other = MeterProvider(shutdown_on_exit=False)
    assert instruments_for(other) is not first
    other.shutdown()


def test_running_gauges_count_open_batches_and_items(metrics: Metrics) -> None:
    with metrics.open("execute"), item("PRP-1"), item("PRP-2"):
        inside = metrics.points()
    assert inside["batch.operations.running"] == {labels(operation="execute"): 1}
    assert inside["batch.items.running"] == {labels(operation="execute"): 2}
    after = metrics.points()
    assert after["batch.items.running"] == {labels(operation="execute"): 0}


DESIGN_NAMES = {
    "batch_operation_duration_seconds": "histogram",
    "batch_operations_total": "counter",
    "batch_items_total": "counter",
    "batch_stage_duration_seconds": "histogram",
    "batch_item_work_seconds_total": "counter",
    "batch_tokens_total": "counter",
    "batch_errors_total": "counter",
    "batch_last_completion_timestamp_seconds": "gauge",
    "batch_last_success_timestamp_seconds": "gauge",
}


def test_prometheus_exposition_uses_the_design_names() -> None:
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(disable_target_info=True, registry=registry)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        run_three_batches(provider)
        text = generate_latest(registry).decode()
    finally:
        provider.shutdown()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    assert types == {
        **DESIGN_NAMES,
        "batch_operations_running": "gauge",
        "batch_items_running": "gauge",
    }
    assert re.search(
        r'^batch_operation_duration_seconds_bucket\{le="600.0",operation="execute",'
        r'[^}]*outcome="partial"\} 1.0$',
        text,
        flags=re.MULTILINE,
    )
    assert re.search(r'^batch_stage_duration_seconds_bucket\{le="28800.0",', text, re.MULTILINE)
    assert re.search(
        r'^batch_tokens_total\{model="claude-x",operation="execute",[^}]*type="input"\} 100.0$',
        text,
        flags=re.MULTILINE,
    )
    assert re.search(
        r"^# HELP batch_item_work_seconds_total Seconds of item work", text, re.MULTILINE
    )
    # bounded labels only: no batch or item id, no message
    assert "PRP-" not in text
    assert "compile error" not in text
