"""Span trees built with the OTel SDK tracer, as a finished batch leaves them; a price table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from exporter.archive.pricing import ModelPrice, PricingTable
from instrumentation import semconv as sc

T0 = 1_762_000_000  # seconds since the epoch; 2025-11-01T12:26:40Z
NS = 1_000_000_000

PRICING = PricingTable(
    datetime(2025, 11, 1, tzinfo=UTC).date(),
    {
        "big": ModelPrice(input=10.0, output=50.0, cache_read=1.0, aliases=("big-latest",)),
        "small": ModelPrice(input=1.0, output=5.0),
    },
)


class SpanTree:
    """Spans of one trace with exact timestamps (seconds after T0), via the SDK tracer."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = provider or TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def start(
        self, name: str, attrs: Mapping[str, AttributeValue], at: float, parent: Span | None = None
    ) -> Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(
            name, context=context, attributes=attrs, start_time=int((T0 + at) * NS)
        )

    def batch(self, attrs: Mapping[str, AttributeValue] | None = None, at: float = 0.0) -> Span:
        base: dict[str, AttributeValue] = {
            sc.ATTR_KIND: "batch",
            sc.ATTR_BATCH_ID: "47",
            sc.ATTR_OPERATION: "execute",
            sc.ATTR_RUN_ID: "run-1",
        }
        return self.start("batch execute", {**base, **(attrs or {})}, at)

    def stage(self, parent: Span, number: int, at: float) -> Span:
        attrs: dict[str, AttributeValue] = {
            sc.ATTR_KIND: "stage",
            sc.ATTR_STAGE: number,
            sc.ATTR_STAGE_NAME: f"s{number}",
        }
        return self.start(f"batch.stage {number}", attrs, at, parent)

    def item(
        self,
        parent: Span,
        item_id: str,
        at: float,
        until: float | None,
        outcome: str | None = "success",
        **attrs: AttributeValue,
    ) -> Span:
        base: dict[str, AttributeValue] = {sc.ATTR_KIND: "item", sc.ATTR_ITEM_ID: item_id}
        if outcome is not None:
            base[sc.ATTR_OUTCOME] = outcome
        span = self.start(f"batch.item {item_id}", {**base, **attrs}, at, parent)
        if until is not None:  # None: left open for the caller to add events and end
            self.end(span, until)
        return span

    @staticmethod
    def end(span: Span, at: float) -> None:
        span.end(end_time=int((T0 + at) * NS))

    @staticmethod
    def tokens(
        span: Span,
        model: str | None,
        inp: int,
        out: int,
        *,
        cache: int = 0,
        cost: float | None = None,
    ) -> None:
        attrs: dict[str, AttributeValue] = {
            sc.ATTR_GENAI_INPUT_TOKENS: inp,
            sc.ATTR_GENAI_OUTPUT_TOKENS: out,
            sc.ATTR_CACHE_READ_TOKENS: cache,
        }
        if model is not None:
            attrs[sc.ATTR_GENAI_MODEL] = model
        if cost is not None:
            attrs[sc.ATTR_COST_USD] = cost
        span.add_event(sc.EVENT_TOKENS, attrs)

    def finished(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()


def three_stage_tree(provider: TracerProvider | None = None) -> SpanTree:
    """Batch 47 execute: 100 s wall, 3 stages, 5 items (one retried), tokens on 4 models."""
    t = SpanTree(provider)
    root = t.batch({sc.ATTR_TOTAL_ITEMS: 5})
    s1 = t.stage(root, 1, 1)
    a = t.item(s1, "PRP-1", 1, None)
    t.tokens(a, "big", 1000, 200, cache=400)
    t.end(a, 21)
    t.item(s1, "PRP-2", 1, 31, "failure", **{sc.ATTR_ERROR_TYPE: "TimeoutError"})
    t.end(s1, 31)
    s2 = t.stage(root, 2, 31)
    b = t.item(s2, "PRP-3", 31, None, "partial", **{sc.ATTR_ERROR_MESSAGE: "2 of 3 phases"})
    subagent = t.start("llm call", {}, 35, b)  # not a batch span: its tokens still count
    t.tokens(subagent, "big-latest", 500, 100)
    t.tokens(subagent, "mystery-model", 10, 5)
    t.end(subagent, 40)
    t.end(b, 61)
    t.item(s2, "PRP-4", 31, 41, "failure", **{sc.ATTR_ERROR_TYPE: "ValueError"})
    t.item(s2, "PRP-4", 45, 55, "success")  # retry: last outcome wins, counted once
    t.end(s2, 61)
    s3 = t.stage(root, 3, 61)
    c = t.item(s3, "PRP-5", 61, None)
    t.tokens(c, "small", 2000, 1000, cost=0.5)  # provider-reported
    t.end(c, 91)
    t.end(s3, 91)
    t.tokens(root, "small", 100, 0)  # orchestrator's own call, no stage
    t.end(root, 100)
    return t
