"""Counting records grouped by their labels gives exactly the totals of counting one record at a
time (:func:`~exporter.prometheus.series.contributions`), for any mix of records; a record that
cannot be counted makes it raise, so that its chunk is counted one record at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.index.summary import ModelTokens, Projection, RecordSummary, StageSummary
from exporter.prometheus.aggregates import Aggregates
from exporter.prometheus.grouped import count_grouped
from exporter.prometheus.series import BUCKETS, LATEST_TIME, contributions
from instrumentation import semconv as sc

_LONG = "m" * (sc.MAX_LABEL_LENGTH + 5)  # two names equal once cut to the label's length
_NAMES = st.sampled_from(["claude-haiku-4-5", "unknown", _LONG, _LONG + "x", "gpt"])
_SECONDS = st.one_of(
    st.none(),
    st.sampled_from([0.0, *BUCKETS]),  # on a bucket's bound
    st.floats(0, 1e9, allow_nan=False),
)
_COUNTS = st.one_of(st.none(), st.integers(0, 40))
_TOKENS = st.one_of(st.none(), st.integers(0, 10**9))
# 0, a cost that rounds to 0 nano-dollars (its series exists all the same), any other
_USD = st.one_of(st.none(), st.sampled_from([0.0, 1e-12, 4e-10]), st.floats(0, 1e12))

_MODELS = st.builds(
    ModelTokens,
    model=_NAMES,
    input_tokens=st.integers(0, 10**9),
    output_tokens=st.integers(0, 10**9),
    cache_read_tokens=st.integers(0, 10**9),
    cost_usd=_USD,
    cost_source=st.just("estimate"),
)
_STAGES = st.builds(
    StageSummary,
    stage=st.one_of(st.none(), st.integers(-3, 5)),
    duration_seconds=_SECONDS,
    items=st.integers(0, 9),
)


@st.composite
def _summaries(draw: st.DrawFn) -> RecordSummary:
    return RecordSummary(
        file=f"batch-{draw(st.integers(0, 10**6))}-x.json",
        batch_id="b",
        operation=draw(st.sampled_from(sc.OPERATIONS)),
        timestamp=draw(st.floats(0, 4e9, allow_nan=False)),
        duration_seconds=draw(_SECONDS),
        status=draw(st.one_of(st.none(), st.sampled_from(["completed", "partial", "failed"]))),
        total_items=draw(_COUNTS),
        success_count=draw(_COUNTS),
        failure_count=draw(_COUNTS),
        partial_count=draw(_COUNTS),
        input_tokens=draw(_TOKENS),
        output_tokens=draw(_TOKENS),
        estimated_cost=draw(_USD),
        parallel_efficiency=draw(st.one_of(st.none(), st.just(0.0), st.floats(0, 1e6))),
        models=tuple(draw(st.lists(_MODELS, max_size=3))),
        stage_durations=tuple(draw(st.lists(_STAGES, max_size=3))),
        error_types=tuple(draw(st.lists(st.sampled_from(["E", "unknown", _LONG]), max_size=3))),
    )


def _projection(s: RecordSummary) -> Projection:
    """What the index stores of ``s`` (the inverse of summary_of)."""
    return (
        tuple(s[1:-3]),
        [tuple(m) for m in s.models],
        [tuple(x) for x in s.stage_durations],
        list(s.error_types),
    )


def _one_at_a_time(summaries: list[RecordSummary]) -> Aggregates:
    totals = Aggregates()
    totals.apply_all(contributions(s) for s in summaries)
    return totals


@settings(max_examples=300, deadline=None)
@given(st.lists(_summaries(), max_size=30))
def test_grouped_totals_are_those_of_counting_one_record_at_a_time(
    summaries: list[RecordSummary],
) -> None:
    grouped = count_grouped([_projection(s) for s in summaries])
    assert grouped.state() == _one_at_a_time(summaries).state()


def test_a_record_that_cannot_be_counted_makes_the_grouped_count_raise() -> None:
    """Past any clock: contributions() refuses it, so the grouped count must not go on."""
    late = RecordSummary("batch-1-x.json", "1", "execute", LATEST_TIME - 10, 20.0)
    with pytest.raises(ValueError, match="past the year 9999"):
        contributions(late)
    with pytest.raises(ValueError, match="past the year 9999"):
        count_grouped([_projection(late)])


def test_nothing_to_count_is_no_totals() -> None:
    assert count_grouped([]).state() == Aggregates().state()
