"""assemble(): finished span trees built with the OTel SDK tracer -> exact records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError

from exporter.archive.model import StageDuration
from exporter.sdk.assemble import AssembleError, assemble
from instrumentation import semconv as sc
from tests.support.span_trees import PRICING, T0, SpanTree, three_stage_tree


def test_three_stage_batch_gives_exact_record() -> None:
    record = assemble(three_stage_tree().finished(), pricing=PRICING)
    assert record.batch_id == "47"
    assert record.operation == "execute"
    assert record.run_id == "run-1"
    assert record.source == "instrumentation"
    assert record.status == "partial"
    assert record.timestamp == datetime.fromtimestamp(T0, tz=UTC)
    assert record.duration_seconds == 100.0
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (5, 3, 1, 1)
    assert m.stages == 3
    assert m.stage_durations == [
        StageDuration(
            stage=1,
            duration_seconds=30.0,
            items=["PRP-1", "PRP-2"],
            input_tokens=1000,
            output_tokens=200,
        ),
        StageDuration(
            stage=2,
            duration_seconds=30.0,
            items=["PRP-3", "PRP-4"],
            input_tokens=510,
            output_tokens=105,
        ),
        StageDuration(
            stage=3,
            duration_seconds=30.0,
            items=["PRP-5"],
            input_tokens=2000,
            output_tokens=1000,
        ),
    ]
    assert [(e.item_id, e.error_type, e.error_message) for e in m.errors or []] == [
        ("PRP-2", "TimeoutError", None),
        ("PRP-3", None, "2 of 3 phases"),
    ]
    # attempts: 20 + 30 + 30 + 10 + 10 + 30 = 130 s of item work in 100 s of wall time
    assert record.optimization_metrics is not None
    assert record.optimization_metrics.parallel_efficiency == 1.3
    assert record.trace_id is not None and len(record.trace_id) == 32
    assert record.notes is None


def test_token_usage_sums_events_and_prices_each_model() -> None:
    usage = assemble(three_stage_tree().finished(), pricing=PRICING).metrics.token_usage
    assert usage is not None
    big = (600 * 10.0 + 400 * 1.0 + 200 * 50.0) / 1e6  # cache reads at the cache price
    small = 0.5 + 100 * 1.0 / 1e6
    rows = [
        (u.model, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cost_usd, u.cost_source)
        for u in usage.by_model or []
    ]
    assert rows == [
        ("big", 1000, 200, 400, round(big, 6), "estimate"),
        ("big-latest", 500, 100, 0, 0.01, "estimate"),
        ("mystery-model", 10, 5, 0, None, "unpriced"),
        ("small", 2100, 1000, 0, round(small, 6), "mixed"),
    ]
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (3610, 1305, 4915)
    assert usage.estimated_cost == round(0.0164 + 0.01 + small, 6)
    assert usage.cost_source == "mixed"
    assert usage.unpriced_models == ["mystery-model"]


def test_unpriced_only_is_none_not_zero() -> None:
    t = SpanTree()
    root = t.batch()
    t.tokens(root, None, 10, 10)
    t.end(root, 5)
    usage = assemble(t.finished(), pricing=PRICING).metrics.token_usage
    assert usage is not None
    assert usage.estimated_cost is None
    assert usage.cost_source == "unpriced"
    assert usage.unpriced_models == ["unknown"]


def test_provider_cost_only_is_provider() -> None:
    t = SpanTree()
    root = t.batch()
    t.tokens(root, "mystery-model", 10, 10, cost=0.25)
    t.end(root, 5)
    usage = assemble(t.finished(), pricing=PRICING).metrics.token_usage
    assert usage is not None
    assert (usage.estimated_cost, usage.cost_source, usage.unpriced_models) == (
        0.25,
        "provider",
        None,
    )


def test_batch_body_exception_is_a_failed_run_with_its_error() -> None:
    t = SpanTree()
    root = t.batch()
    s1 = t.stage(root, 1, 0)
    t.item(s1, "A", 0, 2)
    t.end(s1, 2)
    root.set_status(Status(StatusCode.ERROR, "boom"))
    root.record_exception(RuntimeError("orchestrator\ncrashed"))
    t.end(root, 4)
    record = assemble(t.finished())
    assert record.status == "failed"
    assert [(e.item_id, e.error_type, e.error_message) for e in record.metrics.errors or []] == [
        (None, "RuntimeError", "orchestrator crashed")
    ]
    assert record.metrics.success_count == 1


def test_status_comes_from_the_counts_not_the_root_outcome_attribute() -> None:
    t = SpanTree()
    root = t.batch({sc.ATTR_OUTCOME: "partial"})  # what an attempt-counting writer said
    t.item(root, "A", 0, 1, "failure", **{sc.ATTR_ERROR_TYPE: "Timeout"})
    t.item(root, "A", 1, 2)  # the retry succeeds: last outcome wins, counted once
    t.end(root, 2)
    record = assemble(t.finished())
    assert (record.metrics.total_items, record.metrics.success_count) == (1, 1)
    assert record.status == "completed"


def test_only_partly_done_items_are_a_partial_run() -> None:
    t = SpanTree()
    root = t.batch({sc.ATTR_OUTCOME: "failure"})
    t.item(root, "A", 0, 1, "partial")
    t.item(root, "B", 0, 1, "failure")
    t.end(root, 2)
    assert assemble(t.finished()).status == "partial"


def test_items_without_outcome_follow_span_status_and_messages_are_bounded() -> None:
    t = SpanTree()
    root = t.batch()
    ok = t.start("batch.item x", {sc.ATTR_KIND: "item", sc.ATTR_ITEM_ID: "x"}, 0, root)
    t.end(ok, 1)
    bad = t.start(
        "batch.item y",
        {sc.ATTR_KIND: "item", sc.ATTR_ITEM_ID: "y", sc.ATTR_STAGE: 2},
        0,
        root,
    )
    bad.set_status(Status(StatusCode.ERROR, "e" * 2000))
    t.end(bad, 1)
    t.end(root, 2)
    record = assemble(t.finished())
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.stages) == (2, 1, 1, 1)
    assert m.stage_durations == [StageDuration(stage=2, duration_seconds=1.0, items=["y"])]
    (error,) = m.errors or []
    assert error.error_message is not None
    assert len(error.error_message) == sc.MAX_ERROR_MESSAGE
    assert error.error_message.endswith("\u2026")
    assert record.status == "partial"


def test_announced_items_that_never_ran_count_and_are_noted() -> None:
    t = SpanTree()
    root = t.batch({sc.ATTR_TOTAL_ITEMS: 4})
    t.item(root, "a", 0, 1)
    t.end(root, 1)
    record = assemble(t.finished(), notes=["caller note"])
    assert (record.metrics.total_items, record.metrics.success_count) == (4, 1)
    assert record.notes == ["caller note", "3 of 4 announced items reported no outcome"]
    assert record.status == "partial"


def test_empty_batch_has_no_efficiency_and_no_token_usage() -> None:
    t = SpanTree()
    root = t.batch({sc.ATTR_RUN_ID: ""})
    t.end(root, 3)
    record = assemble(t.finished())
    assert record.status == "completed"
    assert record.metrics.total_items == 0
    assert record.metrics.token_usage is None
    assert record.metrics.stage_durations is None
    assert record.optimization_metrics is not None
    assert record.optimization_metrics.parallel_efficiency is None
    # no run id attribute: the batch span's id stands in, so re-assembly is idempotent
    assert record.run_id == format(root.get_span_context().span_id, "016x")


def test_zero_wall_time_gives_no_efficiency() -> None:
    t = SpanTree()
    root = t.batch()
    t.item(root, "a", 0, 0)
    t.end(root, 0)
    record = assemble(t.finished())
    assert record.optimization_metrics is not None
    assert record.optimization_metrics.parallel_efficiency is None


def test_an_absurd_efficiency_is_left_out_not_a_lost_record() -> None:
    # Items marked after the fact with a day's work, in a batch that ran for a microsecond:
    # the ratio says nothing, and the model refuses one above MAX_EFFICIENCY.
    t = SpanTree()
    root = t.batch()
    t.item(root, "a", -86_400, 0)
    t.end(root, 1e-6)
    record = assemble(t.finished())
    assert record.optimization_metrics is not None
    assert record.optimization_metrics.parallel_efficiency is None
    assert record.metrics.success_count == 1


def test_no_batch_span_or_two_are_refused() -> None:
    t = SpanTree()
    other = t.start("x", {}, 0)
    t.end(other, 1)
    with pytest.raises(AssembleError, match="found 0"):
        assemble(t.finished())
    t.end(t.batch(), 1)
    t.end(t.batch(), 1)
    with pytest.raises(AssembleError, match="found 2"):
        assemble(t.finished())


def test_hostile_batch_id_on_span_is_refused() -> None:
    t = SpanTree()
    t.end(t.batch({sc.ATTR_BATCH_ID: "../etc"}), 1)
    with pytest.raises(ValidationError, match="batch id"):
        assemble(t.finished())


def test_a_stage_run_twice_is_one_window() -> None:
    t = SpanTree()
    root = t.batch()
    for start, end in ((0, 5), (8, 10)):
        s = t.stage(root, 1, start)
        t.item(s, f"i{start}", start, end)
        t.end(s, end)
    t.end(root, 10)
    m = assemble(t.finished()).metrics
    assert m.stages == 1
    assert m.stage_durations == [StageDuration(stage=1, duration_seconds=10.0, items=["i0", "i8"])]
