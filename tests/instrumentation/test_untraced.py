"""A batch whose span does not record (no SDK, or sampled out) still counts, but starts no spans."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from instrumentation import batch, item, record_tokens, traced_stage


def test_a_sampled_out_batch_starts_no_child_spans_but_counts_its_items() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    current_in_items: list[trace.Span] = []

    @traced_stage(1)
    def work(prp: str) -> str:
        with item(prp):
            record_tokens(input=10, output=2, model="m")
            current_in_items.append(trace.get_current_span())
        return prp.lower()

    with batch(
        "47", "execute", tracer_provider=tracer_provider, meter_provider=meter_provider
    ) as b:
        batch_span = trace.get_current_span()
        assert work("PRP-1") == "prp-1"
        assert work("PRP-2") == "prp-2"

    assert exporter.get_finished_spans() == ()
    assert b.outcome == "success"
    assert b.item_counts == {"success": 2, "failure": 0, "partial": 0}
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, float] = {
        metric.name: sum(p.value for p in metric.data.data_points if isinstance(p, NumberDataPoint))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name in ("batch.items", "batch.tokens")
    }
    assert points == {"batch.items": 2, "batch.tokens": 24}
    # no stage or item span was made current: the batch's own (unsampled) span stays current
    assert current_in_items == [batch_span, batch_span]
    assert not batch_span.is_recording()
    tracer_provider.shutdown()
    meter_provider.shutdown()
