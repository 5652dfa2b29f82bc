"""One ``stage(n)`` instance entered by concurrent threads or tasks closes each one's own stage."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from instrumentation import Batch, ContextThreadPoolExecutor, batch, item, semconv, stage

S2 = stage(2, "shared")  # one instance, as a module-level constant would be
WAIT = 5.0  # seconds before a step that never comes fails the test


class Boom(Exception):
    pass


@dataclass
class Tracing:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def open(self) -> Batch:
        return batch(
            "47", "execute", tracer_provider=self.provider, meter_provider=NoOpMeterProvider()
        )

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, exporter)
    provider.shutdown()


def check_own_stages(tracing: Tracing, a_left: int, b_leaves: int) -> None:
    """Stage A (its item failed with Boom) ended by ``a_left``; stage B ended ok after it."""
    spans = tracing.spans()
    by_name = {s.name: s for s in spans}
    root = by_name["batch execute"]
    stages = {s.context.span_id: s for s in spans if s.name == "batch.stage 2"}
    assert len(stages) == 2

    def stage_of(item_id: str) -> ReadableSpan:
        child = by_name[f"batch.item {item_id}"]
        assert child.parent is not None
        return stages[child.parent.span_id]

    stage_a, stage_b = stage_of("A"), stage_of("B")
    assert stage_a is not stage_b
    for s in (stage_a, stage_b):
        assert s.parent is not None and s.parent.span_id == root.context.span_id
        assert (s.attributes or {})[semconv.ATTR_STAGE_NAME] == "shared"
    assert stage_a.status.status_code is StatusCode.ERROR
    assert stage_a.status.description == "Boom: A failed"
    assert (stage_a.attributes or {})[semconv.ATTR_ERROR_TYPE] == "Boom"
    assert stage_b.status.status_code is StatusCode.UNSET
    assert semconv.ATTR_ERROR_TYPE not in (stage_b.attributes or {})
    assert stage_a.end_time is not None and stage_b.end_time is not None
    assert stage_a.end_time <= a_left <= b_leaves <= stage_b.end_time


def test_two_threads_in_one_stage_instance(tracing: Tracing) -> None:
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    marks: dict[str, int] = {}

    def run_a() -> None:
        with S2, item("A"):
            a_in.set()
            assert b_in.wait(WAIT)
            raise Boom("A failed")

    def run_b() -> None:
        assert a_in.wait(WAIT)
        with S2, item("B"):
            b_in.set()
            assert a_out.wait(WAIT)
            marks["b_leaves"] = time.time_ns()

    with tracing.open(), ContextThreadPoolExecutor(max_workers=2) as pool:
        future_a, future_b = pool.submit(run_a), pool.submit(run_b)
        with pytest.raises(Boom):
            future_a.result(timeout=WAIT)
        marks["a_left"] = time.time_ns()
        a_out.set()
        future_b.result(timeout=WAIT)
    check_own_stages(tracing, marks["a_left"], marks["b_leaves"])


def test_two_tasks_in_one_stage_instance(tracing: Tracing) -> None:
    marks: dict[str, int] = {}

    async def main() -> None:
        a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def run_a() -> None:
            try:
                async with S2:
                    with item("A"):
                        a_in.set()
                        await b_in.wait()
                        raise Boom("A failed")
            finally:
                marks["a_left"] = time.time_ns()
                a_out.set()

        async def run_b() -> None:
            await a_in.wait()
            async with S2:
                with item("B"):
                    b_in.set()
                    await a_out.wait()
                    marks["b_leaves"] = time.time_ns()

        async with tracing.open():
            results = await asyncio.wait_for(
                asyncio.gather(run_a(), run_b(), return_exceptions=True), WAIT
            )
        assert [type(r) for r in results] == [Boom, type(None)]

    asyncio.run(main())
    check_own_stages(tracing, marks["a_left"], marks["b_leaves"])


def test_nested_entries_of_one_instance_close_innermost_first(tracing: Tracing) -> None:
    with tracing.open(), S2:
        with S2, item("inner"):
            pass
        with item("outer"):
            pass
    spans = tracing.spans()
    by_name = {s.name: s for s in spans}
    inner = by_name["batch.item inner"].parent
    outer = by_name["batch.item outer"].parent
    assert inner is not None and outer is not None
    stages = {s.context.span_id: s for s in spans if s.name == "batch.stage 2"}
    assert stages[inner.span_id].parent is not None
    assert stages[inner.span_id].parent.span_id == outer.span_id  # type: ignore[union-attr]
