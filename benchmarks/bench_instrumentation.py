"""Benchmark: the cost of ``@traced_stage`` + ``item`` + ``record_tokens`` per decorated call.

One *call* is a ``@traced_stage(1)`` function whose body runs one ``with item(...)`` and one
``record_tokens(...)``: two spans (stage, item), a ``batch.tokens`` event, the stage-duration
histogram, the item counters and the token counter. It is timed three ways, in one process:

* **ours**: the decorator and context managers, on an SDK ``TracerProvider`` with a
  ``SimpleSpanProcessor(InMemorySpanExporter())`` and a ``MeterProvider`` with an
  ``InMemoryMetricReader``;
* **hand**: the same spans, attributes, event and metric points written directly against the
  OTel SDK with the same providers (what a careful user would write without this library);
* **no SDK**: the decorated call with no providers configured (the API's no-op default), and
  the decorator alone (an empty ``@traced_stage`` function) the same way.

Rounds of each alternate and the fastest round is kept (as timeit advises); ours/hand is the
overhead ratio (target <= 1.2) and the no-SDK figure is the price of leaving the decorators in
production code without telemetry (target <= 10 us). Before timing, one call of each kind is
exported and the two span trees are compared, so the comparison is like for like.

    .venv/bin/python -m benchmarks.bench_instrumentation --calls 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from instrumentation import batch, contract, item, record_tokens, semconv, traced_stage

OPERATION: semconv.Operation = "execute"
MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True)
class InstrumentationResult:
    """Microseconds per call of each variant (the fastest round: the least disturbed)."""

    ours_us: float
    hand_us: float
    noop_us: float
    noop_stage_only_us: float

    @property
    def ratio(self) -> float:
        return self.ours_us / self.hand_us


@traced_stage(1)
def decorated_stage(item_id: str) -> int:
    """The instrumented unit of work: one stage with one item that used some tokens."""
    with item(item_id):
        record_tokens(input=1200, output=300, model=MODEL)
    return 1


@traced_stage(1)
def empty_stage(item_id: str) -> int:
    """The decorator alone."""
    return 1


class Hand:
    """The same telemetry as :func:`decorated_stage`, written against the OTel SDK directly."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer = tracer_provider.get_tracer("hand-written")
        meter = meter_provider.get_meter("hand-written")
        self.stage_duration = meter.create_histogram(
            contract.STAGE_DURATION.otel_name,
            unit="s",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS),
        )
        self.items = meter.create_counter(contract.ITEMS.otel_name, unit="{item}")
        self.items_running = meter.create_up_down_counter(
            contract.ITEMS_RUNNING.otel_name, unit="{item}"
        )
        self.tokens = meter.create_counter(contract.TOKENS.otel_name, unit="{token}")
        self.operations_running = meter.create_up_down_counter(
            contract.OPERATIONS_RUNNING.otel_name, unit="{operation}"
        )

    @contextmanager
    def batch(self, batch_id: str) -> Iterator[None]:
        op = {semconv.LABEL_OPERATION: OPERATION}
        attributes: dict[str, AttributeValue] = {
            semconv.ATTR_KIND: semconv.KIND_BATCH,
            semconv.ATTR_BATCH_ID: batch_id,
            semconv.ATTR_OPERATION: OPERATION,
        }
        self.operations_running.add(1, op)
        with self.tracer.start_as_current_span(
            f"{semconv.SPAN_BATCH} {OPERATION}", attributes=attributes
        ):
            yield
        self.operations_running.add(-1, op)

    def stage(self, item_id: str) -> int:
        op = {semconv.LABEL_OPERATION: OPERATION}
        started = time.perf_counter()
        stage_attributes: dict[str, AttributeValue] = {
            semconv.ATTR_KIND: semconv.KIND_STAGE,
            semconv.ATTR_STAGE: 1,
            semconv.ATTR_STAGE_NAME: "decorated_stage",  # the decorator names it after the function
        }
        with self.tracer.start_as_current_span(
            f"{semconv.SPAN_STAGE} 1", attributes=stage_attributes
        ):
            item_attributes: dict[str, AttributeValue] = {
                semconv.ATTR_KIND: semconv.KIND_ITEM,
                semconv.ATTR_ITEM_ID: item_id,
                semconv.ATTR_STAGE: 1,
            }
            self.items_running.add(1, op)
            with self.tracer.start_as_current_span(
                f"{semconv.SPAN_ITEM} {item_id}", attributes=item_attributes
            ) as span:
                span.add_event(
                    semconv.EVENT_TOKENS,
                    {
                        semconv.ATTR_GENAI_MODEL: MODEL,
                        semconv.ATTR_GENAI_INPUT_TOKENS: 1200,
                        semconv.ATTR_GENAI_OUTPUT_TOKENS: 300,
                        semconv.ATTR_CACHE_READ_TOKENS: 0,
                    },
                )
                labels = {**op, semconv.LABEL_MODEL: MODEL}
                self.tokens.add(1200, {**labels, semconv.LABEL_TYPE: "input"})
                self.tokens.add(300, {**labels, semconv.LABEL_TYPE: "output"})
                span.set_attributes(
                    {
                        semconv.ATTR_OUTCOME: "success",
                        semconv.ATTR_GENAI_INPUT_TOKENS: 1200,
                        semconv.ATTR_GENAI_OUTPUT_TOKENS: 300,
                    }
                )
                span.set_status(Status(StatusCode.UNSET))
            self.items_running.add(-1, op)
            self.items.add(1, {**op, semconv.LABEL_OUTCOME: "success"})
        self.stage_duration.record(time.perf_counter() - started, {**op, semconv.LABEL_STAGE: "1"})
        return 1


def _shape(spans: tuple[ReadableSpan, ...]) -> list[tuple[str, list[str], list[str]]]:
    """Span names, attribute keys and event names: what must match between the variants."""
    return sorted(
        (s.name, sorted(s.attributes or {}), [e.name for e in s.events])
        for s in spans
        if not s.name.startswith(semconv.SPAN_BATCH + " ")
    )


def _per_call_us(
    calls: int, stage: Callable[[str], int], scope: Callable[[], AbstractContextManager[object]]
) -> float:
    ids = [f"PRP-1.1.{n}" for n in range(calls)]
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does: a collection landing in one variant's round is noise
    try:
        with scope():
            started = time.perf_counter()
            for item_id in ids:
                stage(item_id)
            elapsed = time.perf_counter() - started
    finally:
        if collecting:
            gc.enable()
    return elapsed / calls * 1e6


def measure(calls: int = 2000, rounds: int = 7) -> InstrumentationResult:
    """Time the three variants; raises AssertionError if ours and hand emit different spans."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    hand = Hand(tracer_provider, meter_provider)

    def ours_scope() -> AbstractContextManager[object]:
        return batch(
            "bench", OPERATION, tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def noop_scope() -> AbstractContextManager[object]:
        return batch("bench", OPERATION)

    try:
        _per_call_us(1, decorated_stage, ours_scope)
        ours_shape = _shape(exporter.get_finished_spans())
        exporter.clear()
        _per_call_us(1, hand.stage, lambda: hand.batch("bench"))
        hand_shape = _shape(exporter.get_finished_spans())
        exporter.clear()
        if ours_shape != hand_shape:
            raise AssertionError(f"different telemetry: {ours_shape} != {hand_shape}")
        ours, manual, noop, bare = [], [], [], []
        for _ in range(rounds):
            ours.append(_per_call_us(calls, decorated_stage, ours_scope))
            exporter.clear()
            manual.append(_per_call_us(calls, hand.stage, lambda: hand.batch("bench")))
            exporter.clear()
            noop.append(_per_call_us(calls, decorated_stage, noop_scope))
            bare.append(_per_call_us(calls, empty_stage, noop_scope))
            reader.get_metrics_data()  # collect, as a periodic reader would
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    return InstrumentationResult(
        min(ours),
        min(manual),
        min(noop),
        min(bare),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="decorated calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    result = measure(args.calls, args.rounds)
    print(
        f"per decorated call: ours {result.ours_us:.1f} us, hand-written SDK "
        f"{result.hand_us:.1f} us ({result.ratio:.2f}x), no SDK {result.noop_us:.2f} us "
        f"(decorator alone {result.noop_stage_only_us:.2f} us)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
