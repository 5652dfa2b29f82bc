"""The instrumentation API: span trees, attributes, outcomes, context propagation, robustness."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import instrumentation
from instrumentation import (
    ContextThreadPoolExecutor,
    _guard,
    batch,
    item,
    mark_item,
    propagate,
    record_tokens,
    semconv,
    stage,
    traced_stage,
)

# -- harness ---------------------------------------------------------------------------------


@dataclass
class Tracing:
    """A local tracer provider and what it exported; ``open`` starts a batch bound to it."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def open(self, batch_id: str = "47", operation: semconv.Operation = "execute", **kw):
        return batch(
            batch_id,
            operation,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            **kw,
        )

    def spans(self) -> dict[str, ReadableSpan]:
        finished = self.exporter.get_finished_spans()
        by_name = {span.name: span for span in finished}
        assert len(by_name) == len(finished), [s.name for s in finished]
        return by_name


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, exporter)
    provider.shutdown()


@pytest.fixture(autouse=True)
def fresh_log_once() -> Iterator[None]:
    _guard.reset_reported()
    yield
    _guard.reset_reported()


def attrs(span_or_event: ReadableSpan | Event) -> dict[str, Any]:
    return dict(span_or_event.attributes or {})


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    context = span.context
    assert context is not None
    return int(context.span_id)


def item_attrs(
    item_id: str,
    outcome: str,
    extra: dict[str, Any] | None = None,
    *,
    stage_number: int | None = 1,
) -> dict[str, Any]:
    """The attributes an item span ends with: the fixed ones, its stage, then ``extra``."""
    expected: dict[str, Any] = {
        "batch.span.kind": "item",
        "batch.item.id": item_id,
        "batch.outcome": outcome,
    }
    if stage_number is not None:
        expected["batch.stage"] = stage_number
    return expected | (extra or {})


# -- span trees ------------------------------------------------------------------------------


def test_sync_batch_stage_items_form_one_tree_with_exact_attributes(tracing: Tracing) -> None:
    @traced_stage(1)
    def generate(ids: Sequence[str]) -> str:
        for prp in ids:
            with item(prp) as it:
                if prp.endswith("2"):
                    it.set_outcome("partial", error_type="Timeout", message="2 of 3 tasks done")
        return "stage result"

    with tracing.open(run_id="run-1", total_items=2) as b:
        assert generate(["PRP-1", "PRP-2"]) == "stage result"

    spans = tracing.spans()
    assert sorted(spans) == [
        "batch execute",
        "batch.item PRP-1",
        "batch.item PRP-2",
        "batch.stage 1",
    ]
    root, st = spans["batch execute"], spans["batch.stage 1"]
    assert root.parent is None
    assert parent_of(st) == span_id(root)
    assert parent_of(spans["batch.item PRP-1"]) == span_id(st)
    assert parent_of(spans["batch.item PRP-2"]) == span_id(st)
    assert attrs(root) == {
        "batch.span.kind": "batch",
        "batch.id": "47",
        "batch.operation": "execute",
        "batch.run_id": "run-1",
        "batch.items.total": 2,
        "batch.outcome": "partial",
    }
    assert attrs(st) == {
        "batch.span.kind": "stage",
        "batch.stage": 1,
        "batch.stage.name": "generate",
    }
    assert attrs(spans["batch.item PRP-1"]) == item_attrs("PRP-1", "success")
    assert attrs(spans["batch.item PRP-2"]) == item_attrs(
        "PRP-2", "partial", {"error.type": "Timeout", "batch.error.message": "2 of 3 tasks done"}
    )
    assert spans["batch.item PRP-2"].status.status_code is StatusCode.UNSET
    assert root.status.status_code is StatusCode.UNSET
    assert b.outcome == "partial"
    assert b.item_counts == {"success": 1, "failure": 0, "partial": 1}


def test_run_id_defaults_to_fresh_uuid_hex(tracing: Tracing) -> None:
    with tracing.open() as first:
        pass
    with tracing.open() as second:
        pass
    assert len(first.run_id) == 32
    assert int(first.run_id, 16) >= 0
    assert first.run_id != second.run_id
    assert [attrs(s)["batch.run_id"] for s in tracing.exporter.get_finished_spans()] == [
        first.run_id,
        second.run_id,
    ]


def test_async_batch_async_stage_and_gathered_items(tracing: Tracing) -> None:
    async def one(prp: str) -> str:
        with item(prp):
            await asyncio.sleep(0)
        return prp.lower()

    @traced_stage(2, name="execute wave")
    async def wave(ids: list[str]) -> list[str]:
        return await asyncio.gather(*(one(prp) for prp in ids))

    async def main() -> list[str]:
        async with tracing.open(operation="review") as b:
            result = await wave(["PRP-A", "PRP-B", "PRP-C"])
        assert b.outcome == "success"
        return result

    assert asyncio.run(main()) == ["prp-a", "prp-b", "prp-c"]
    spans = tracing.spans()
    st = spans["batch.stage 2"]
    assert parent_of(st) == span_id(spans["batch review"])
    assert attrs(st) == {
        "batch.span.kind": "stage",
        "batch.stage": 2,
        "batch.stage.name": "execute wave",
    }
    for prp in ("PRP-A", "PRP-B", "PRP-C"):
        assert parent_of(spans[f"batch.item {prp}"]) == span_id(st)
        assert attrs(spans[f"batch.item {prp}"]) == item_attrs(prp, "success", stage_number=2)
    assert attrs(spans["batch review"])["batch.outcome"] == "success"


def test_stage_context_manager_and_item_outside_stage(tracing: Tracing) -> None:
    with tracing.open(operation="generate"):
        with item("setup"):
            pass
        with stage(3, name="tail") as st:
            assert st.stage == 3
            with item("PRP-9"):
                pass
    spans = tracing.spans()
    assert attrs(spans["batch.item setup"]) == item_attrs("setup", "success", stage_number=None)
    assert parent_of(spans["batch.item setup"]) == span_id(spans["batch generate"])
    assert parent_of(spans["batch.item PRP-9"]) == span_id(spans["batch.stage 3"])
    assert attrs(spans["batch.stage 3"]) == {
        "batch.span.kind": "stage",
        "batch.stage": 3,
        "batch.stage.name": "tail",
    }


class BoomError(Exception):
    pass


def test_exception_in_item_is_failure_and_same_object_reraised(tracing: Tracing) -> None:
    class LocalError(Exception):
        pass

    raised = LocalError("x" * 2000)

    @traced_stage(1)
    def failing() -> None:
        with item("PRP-1"):
            raise raised

    with pytest.raises(LocalError) as caught, tracing.open() as b:
        failing()
    assert caught.value is raised

    spans = tracing.spans()
    qualname = type(raised).__qualname__
    assert qualname.endswith("<locals>.LocalError")
    prp = spans["batch.item PRP-1"]
    message = attrs(prp)["batch.error.message"]
    assert isinstance(message, str)
    assert len(message) == semconv.MAX_ERROR_MESSAGE
    assert message == "x" * (semconv.MAX_ERROR_MESSAGE - 1) + "\u2026"
    assert attrs(prp) == item_attrs(
        "PRP-1", "failure", {"error.type": qualname, "batch.error.message": message}
    )
    for span in (prp, spans["batch.stage 1"], spans["batch execute"]):
        assert span.status.status_code is StatusCode.ERROR
        assert [event.name for event in span.events] == ["exception"]
        assert attrs(span.events[0])["exception.type"] == f"{__name__}.{qualname}"
    assert attrs(spans["batch.stage 1"])["error.type"] == qualname
    assert attrs(spans["batch execute"])["batch.outcome"] == "failure"
    assert b.outcome == "failure"


def test_decorated_async_stage_reraises_and_returns_unchanged(tracing: Tracing) -> None:
    error = BoomError("nope")

    @traced_stage(4)
    async def bad() -> None:
        raise error

    @traced_stage(5)
    async def good(x: int) -> dict[str, int]:
        return {"x": x}

    async def main() -> dict[str, int]:
        async with tracing.open():
            with pytest.raises(BoomError) as caught:
                await bad()
            assert caught.value is error
            return await good(7)

    assert asyncio.run(main()) == {"x": 7}
    spans = tracing.spans()
    assert spans["batch.stage 4"].status.status_code is StatusCode.ERROR
    assert attrs(spans["batch.stage 4"])["error.type"] == "BoomError"
    assert spans["batch.stage 5"].status.status_code is StatusCode.UNSET
    # the batch body did not raise and no item failed
    assert attrs(spans["batch execute"])["batch.outcome"] == "success"


def test_failure_without_exception_and_all_failed_batch(tracing: Tracing) -> None:
    with tracing.open() as b, item("PRP-1") as it:
        it.set_outcome("failure", message="tests red")
    spans = tracing.spans()
    prp = spans["batch.item PRP-1"]
    assert attrs(prp) == item_attrs(
        "PRP-1",
        "failure",
        {"error.type": semconv.ERROR_TYPE_OTHER, "batch.error.message": "tests red"},
        stage_number=None,
    )
    assert prp.status.status_code is StatusCode.ERROR
    assert prp.status.description == "tests red"
    assert prp.events == ()
    assert b.outcome == "failure"


def test_keyboard_interrupt_passes_through_and_spans_end(tracing: Tracing) -> None:
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as caught, tracing.open(), stage(1), item("PRP-1"):
        raise interrupt
    assert caught.value is interrupt
    spans = tracing.spans()
    assert sorted(spans) == ["batch execute", "batch.item PRP-1", "batch.stage 1"]
    for span in spans.values():
        assert span.end_time is not None
        assert span.events == ()
        assert span.status.status_code is StatusCode.UNSET
        assert attrs(span)["error.type"] == "KeyboardInterrupt"
    assert attrs(spans["batch.item PRP-1"])["batch.outcome"] == "failure"
    assert attrs(spans["batch execute"])["batch.outcome"] == "failure"


def test_cancelled_task_passes_through_and_its_spans_end(tracing: Tracing) -> None:
    started = asyncio.Event()

    @traced_stage(1)
    async def slow() -> None:
        with item("PRP-1"):
            started.set()
            await asyncio.Event().wait()  # never set: only cancellation ends it

    async def main() -> None:
        async with tracing.open():
            task = asyncio.create_task(slow())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    spans = tracing.spans()
    for name in ("batch.item PRP-1", "batch.stage 1"):
        assert attrs(spans[name])["error.type"] == "CancelledError"
        assert spans[name].events == ()
    assert attrs(spans["batch.item PRP-1"])["batch.outcome"] == "failure"
    assert attrs(spans["batch execute"])["batch.outcome"] == "failure"


def test_mark_item_span_ends_now_and_started_duration_ago(tracing: Tracing) -> None:
    with tracing.open(operation="update-context"), stage(2):
        mark_item("PRP-5", "failure", duration_seconds=812.5, error_type="TestFailure")
        mark_item("PRP-6", "success")
    spans = tracing.spans()
    failed, ok = spans["batch.item PRP-5"], spans["batch.item PRP-6"]
    assert failed.end_time is not None and failed.start_time is not None
    assert failed.end_time - failed.start_time == 812_500_000_000
    assert ok.end_time == ok.start_time
    assert parent_of(failed) == span_id(spans["batch.stage 2"])
    assert attrs(failed) == item_attrs(
        "PRP-5", "failure", {"error.type": "TestFailure"}, stage_number=2
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(spans["batch update-context"])["batch.outcome"] == "partial"


def test_unusable_mark_item_duration_is_zero_and_logged_once(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="instrumentation"), tracing.open():
        mark_item("PRP-1", "success", duration_seconds=float("nan"))
        mark_item("PRP-2", "success", duration_seconds=-3)
    for name in ("batch.item PRP-1", "batch.item PRP-2"):
        span = tracing.spans()[name]
        assert span.end_time == span.start_time
    assert instrumentation_lines(caplog) == ["mark_item() duration"]


def test_record_tokens_events_and_totals_on_innermost_span(tracing: Tracing) -> None:
    with tracing.open():
        record_tokens(input=5, output=1, model="planner")
        with stage(1):
            with item("PRP-1"):
                record_tokens(input=100, output=20, model="claude-x", cache_read=50)
                record_tokens(input=10, output=2, model="claude-x", cost_usd=0.25)
            record_tokens(input=7, output=3, model="claude-y")
    spans = tracing.spans()
    prp = spans["batch.item PRP-1"]
    assert [attrs(e) for e in prp.events] == [
        {
            "gen_ai.request.model": "claude-x",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 50,
        },
        {
            "gen_ai.request.model": "claude-x",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 2,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "batch.cost.usd": 0.25,
        },
    ]
    assert {e.name for e in prp.events} == {semconv.EVENT_TOKENS}
    assert attrs(prp) == item_attrs(
        "PRP-1",
        "success",
        {
            "gen_ai.usage.input_tokens": 110,
            "gen_ai.usage.output_tokens": 22,
            "gen_ai.usage.cache_read.input_tokens": 50,
        },
    )
    st = spans["batch.stage 1"]
    assert attrs(st)["gen_ai.usage.input_tokens"] == 7
    assert attrs(st)["gen_ai.usage.output_tokens"] == 3
    assert [attrs(e)["gen_ai.request.model"] for e in st.events] == ["claude-y"]
    root = spans["batch execute"]
    assert attrs(root)["gen_ai.usage.input_tokens"] == 5
    assert [attrs(e)["gen_ai.request.model"] for e in root.events] == ["planner"]


def test_invalid_token_values_are_dropped_and_logged_once(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="instrumentation"), tracing.open():
        record_tokens(input=-1, output=2, model="m")
        record_tokens(input=1, output=2, model="")
        record_tokens(input=10, output=2, cache_read=11, model="m")  # input includes cache
    assert tracing.spans()["batch execute"].events == ()
    assert instrumentation_lines(caplog) == ["record_tokens()"]
    assert "got input=-1, output=2," in caplog.records[0].getMessage()


def test_nothing_recorded_outside_a_batch(tracing: Tracing) -> None:
    @traced_stage(1)
    def lonely(x: int) -> int:
        with item("PRP-1") as it:
            record_tokens(input=1, output=1, model="m")
            mark_item("PRP-2", "success")
            it.set_outcome("partial")
        return x * 2

    assert lonely(21) == 42
    with tracing.open():
        pass
    assert sorted(tracing.spans()) == ["batch execute"]


def test_programming_errors_raise_at_call_time(tracing: Tracing) -> None:
    with pytest.raises(ValueError, match="unknown batch operation 'deploy'"):
        batch("47", "deploy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_items"):
        batch("47", "execute", total_items=-1)
    with pytest.raises(ValueError, match="stage must be"):
        traced_stage(-1)
    with pytest.raises(TypeError, match="generator function"):
        traced_stage(1)(lambda: (yield))
    with tracing.open(), item("PRP-1") as it, pytest.raises(ValueError, match="unknown item"):
        it.set_outcome("done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown item outcome"):
        mark_item("PRP-1", "ok")  # type: ignore[arg-type]
    b = tracing.open()
    with b:
        pass
    with pytest.raises(RuntimeError, match="only once"), b:
        pass


def test_item_ids_are_bounded(tracing: Tracing) -> None:
    with tracing.open(), item("P" * 1000):
        pass
    (prp,) = [s for s in tracing.exporter.get_finished_spans() if s.name.startswith("batch.item")]
    assert attrs(prp)["batch.item.id"] == "P" * (semconv.MAX_ID_LENGTH - 1) + "\u2026"


# -- context propagation ---------------------------------------------------------------------


def assert_items_under(tracing: Tracing, batch_id: str, stage_number: int, ids: list[str]) -> None:
    """The items of stage ``stage_number`` of batch ``batch_id`` are exactly ``ids``."""
    finished = tracing.exporter.get_finished_spans()
    (root,) = [s for s in finished if attrs(s).get("batch.id") == batch_id]
    (st,) = [
        s
        for s in finished
        if attrs(s).get("batch.span.kind") == "stage"
        and attrs(s).get("batch.stage") == stage_number
        and parent_of(s) == span_id(root)
    ]
    children = [s for s in finished if parent_of(s) == span_id(st)]
    assert sorted(str(attrs(s)["batch.item.id"]) for s in children) == sorted(ids)
    assert {s.context.trace_id for s in children} == {root.context.trace_id}


def touch(prp: str) -> None:
    with item(prp):
        pass


def test_thread_pool_items_land_in_their_stage_and_batch_with_two_batches(
    tracing: Tracing,
) -> None:
    barrier = threading.Barrier(2)  # both batches are open while items run

    def run_item(prp: str) -> str:
        with item(prp):
            record_tokens(input=1, output=1, model="m")
        return prp

    def run_batch(batch_id: str) -> list[str]:
        with tracing.open(batch_id=batch_id) as b:
            barrier.wait(timeout=10)
            with stage(1), ContextThreadPoolExecutor(max_workers=3) as pool:
                done = list(pool.map(run_item, [f"{batch_id}-{n}" for n in range(6)]))
            barrier.wait(timeout=10)
        assert b.item_counts["success"] == 6
        return done

    with ThreadPoolExecutor(max_workers=2) as outer:
        results = list(outer.map(propagate(run_batch), ["A", "B"]))
    assert results == [[f"{b}-{n}" for n in range(6)] for b in ("A", "B")]
    for batch_id in ("A", "B"):
        assert_items_under(tracing, batch_id, 1, [f"{batch_id}-{n}" for n in range(6)])


def test_propagate_carries_context_into_plain_threads_and_plain_pool_does_not(
    tracing: Tracing,
) -> None:
    with tracing.open(batch_id="47"), stage(2):
        thread = threading.Thread(target=propagate(touch), args=("PRP-T",))
        thread.start()
        thread.join(timeout=10)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(touch, "PRP-LOST").result()
    assert_items_under(tracing, "47", 2, ["PRP-T"])
    assert "batch.item PRP-LOST" not in tracing.spans()


def test_asyncio_gather_items_land_in_their_stage_and_batch_with_two_batches(
    tracing: Tracing,
) -> None:
    async def run_item(prp: str) -> None:
        with item(prp):
            await asyncio.sleep(0)
            record_tokens(input=2, output=1, model="m")
            await asyncio.sleep(0)

    async def run_batch(batch_id: str, stage_number: int) -> None:
        async with tracing.open(batch_id=batch_id):
            await asyncio.sleep(0)
            async with stage(stage_number):
                await asyncio.gather(*(run_item(f"{batch_id}-{n}") for n in range(5)))

    async def main() -> None:
        await asyncio.gather(run_batch("A", 1), run_batch("B", 1), run_batch("C", 2))

    asyncio.run(main())
    for batch_id, number in (("A", 1), ("B", 1), ("C", 2)):
        assert_items_under(tracing, batch_id, number, [f"{batch_id}-{n}" for n in range(5)])
        (root,) = [
            s for s in tracing.exporter.get_finished_spans() if attrs(s).get("batch.id") == batch_id
        ]
        assert attrs(root)["batch.outcome"] == "success"


# -- never break the host --------------------------------------------------------------------


class RaisingProcessor(SpanProcessor):
    def __init__(self, hook: str) -> None:
        self.hook = hook

    def on_start(self, span, parent_context=None) -> None:
        if self.hook == "start":
            raise RuntimeError("processor on_start bug")

    def on_end(self, span: ReadableSpan) -> None:
        if self.hook == "end":
            raise OSError("disk full")


def instrumentation_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What failed, per line the instrumentation logged (other loggers left out)."""
    return [
        re.split(
            r" failed| ignored", r.getMessage().removeprefix("batch-metrics instrumentation: ")
        )[0]
        for r in caplog.records
        if r.name == "instrumentation"
    ]


class RaisingExporter(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        raise OSError("disk full")


class RaisingTracerProvider(TracerProvider):
    def get_tracer(self, *args, **kwargs):
        raise RuntimeError("tracer provider bug")


class RaisingMeterProvider(NoOpMeterProvider):
    def get_meter(self, *args, **kwargs):
        raise RuntimeError("meter provider bug")


def run_host(tracer_provider, meter_provider) -> tuple[int, list[str]]:
    """A small orchestrator run twice; returns its result and the items it finished."""
    seen: list[str] = []

    @traced_stage(1)
    def work(n: int) -> int:
        for k in range(n):
            with item(f"PRP-{k}") as it:
                record_tokens(input=1, output=1, model="m")
                if k == 1:
                    it.set_outcome("partial", error_type="Timeout")
                seen.append(f"PRP-{k}")
        mark_item("PRP-late", "success", duration_seconds=1.0)
        return n * 10

    total = 0
    for run in range(2):
        with batch(
            str(run), "execute", tracer_provider=tracer_provider, meter_provider=meter_provider
        ):
            total += work(3)
    return total, seen


@pytest.mark.parametrize(
    ("make_providers", "kinds"),
    [
        (lambda: (RaisingTracerProvider(shutdown_on_exit=False), None), ["tracer setup"]),
        (lambda: (None, RaisingMeterProvider()), ["metrics setup"]),
    ],
    ids=["tracer-provider-raises", "meter-provider-raises"],
)
def test_broken_providers_do_not_break_the_host(
    make_providers, kinds: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    tracer_provider, meter_provider = make_providers()
    with caplog.at_level(logging.WARNING, logger="instrumentation"):
        assert run_host(tracer_provider, meter_provider or NoOpMeterProvider()) == (
            60,
            ["PRP-0", "PRP-1", "PRP-2"] * 2,
        )
    assert instrumentation_lines(caplog) == kinds


@pytest.mark.parametrize(("hook", "kind"), [("start", "span start"), ("end", "span end")])
def test_raising_span_processor_logs_once_and_host_runs(
    hook: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(RaisingProcessor(hook))
    with caplog.at_level(logging.WARNING, logger="instrumentation"):
        assert run_host(provider, NoOpMeterProvider()) == (60, ["PRP-0", "PRP-1", "PRP-2"] * 2)
    # one line, however many of the 12 spans failed
    assert instrumentation_lines(caplog) == [kind]


def test_raising_exporter_does_not_break_the_host(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    with caplog.at_level(logging.WARNING, logger="instrumentation"):
        assert run_host(provider, NoOpMeterProvider()) == (60, ["PRP-0", "PRP-1", "PRP-2"] * 2)
    assert instrumentation_lines(caplog) == []  # the SDK's processor contains exporter errors


def test_failing_instrument_logs_once_and_spans_still_complete(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenMeterProvider(NoOpMeterProvider):
        def get_meter(self, *args, **kwargs):
            meter = super().get_meter(*args, **kwargs)
            meter.create_counter = _raise  # type: ignore[method-assign]
            return meter

    def _raise(*args, **kwargs):
        raise RuntimeError("instrument bug")

    with caplog.at_level(logging.WARNING, logger="instrumentation"):
        for _ in range(3):
            with (
                batch(
                    "47",
                    "execute",
                    tracer_provider=tracing.provider,
                    meter_provider=BrokenMeterProvider(),
                ),
                item("PRP-1"),
            ):
                pass
    assert instrumentation_lines(caplog) == ["metrics setup"]
    assert "(RuntimeError: instrument bug)" in caplog.records[0].getMessage()
    assert len(tracing.exporter.get_finished_spans()) == 6


def test_importing_instrumentation_loads_no_sdk_pydantic_or_prometheus_client() -> None:
    code = (
        "import sys, instrumentation\n"
        "from instrumentation import batch, item, traced_stage\n"
        "with batch('1', 'execute'):\n"
        "    with item('a'):\n"
        "        pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'prometheus_client') or m.startswith('opentelemetry.sdk'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert out.stderr == ""


def test_manual_usage_example_runs_and_records_the_tree_it_describes(tracing: Tracing) -> None:
    doc = instrumentation.__doc__ or ""
    block = doc.split("::\n", 1)[1].split("\n\n``async with", 1)[0]
    code = "\n".join(
        line for line in textwrap.dedent(block).splitlines() if not line.startswith("from ")
    )

    def run(prp_id: str) -> SimpleNamespace:
        return SimpleNamespace(
            input_tokens=10, output_tokens=2, model="m", unfinished=prp_id.endswith("2"), note="n"
        )

    namespace = {name: getattr(instrumentation, name) for name in instrumentation.__all__}
    namespace["batch"] = functools.partial(
        batch, tracer_provider=tracing.provider, meter_provider=NoOpMeterProvider()
    )
    namespace["subagent"] = SimpleNamespace(run=run)
    exec(code, namespace)

    spans = tracing.spans()
    assert sorted(spans) == [
        "batch execute",
        "batch.item PRP-47.1.1",
        "batch.item PRP-47.1.2",
        "batch.item PRP-47.2.1",
        "batch.stage 1",
        "batch.stage 2",
    ]
    assert attrs(spans["batch execute"])["batch.outcome"] == "partial"
    assert attrs(spans["batch.stage 1"])["batch.stage.name"] == "foundation"
    for prp, number in (("PRP-47.1.1", 1), ("PRP-47.1.2", 1), ("PRP-47.2.1", 2)):
        assert parent_of(spans[f"batch.item {prp}"]) == span_id(spans[f"batch.stage {number}"])
