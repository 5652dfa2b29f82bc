"""What the index keeps of a record, which records a query covers, what a refresh changed.

:class:`RecordSummary` is the flat projection of a record that reports and the Prometheus
exporter read; :func:`project` turns a validated record into the parts the index stores,
:func:`summarize` into a summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from exporter.archive.lenient import ReadElsewhere
    from exporter.archive.model import BatchRecord, TokenUsage
    from exporter.archive.quick import QuickRecord, QuickTokenUsage

__all__ = [
    "END_SQL",
    "ModelTokens",
    "Projection",
    "RecordFilter",
    "RecordSummary",
    "RefreshResult",
    "StageSummary",
    "project",
    "project_quick",
    "summarize",
    "summary_of",
]


class ModelTokens(NamedTuple):
    """Tokens and cost of one model in one record."""

    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float | None
    cost_source: str


class StageSummary(NamedTuple):
    stage: int | None  # None: the seed's analyze-batch.py writes null for PRPs without a stage
    duration_seconds: float | None
    items: int


class RecordSummary(NamedTuple):
    """What reports and exporters read of one record; ``timestamp`` is epoch seconds (start).

    A named tuple: reports build a hundred thousand of these, and tuples are the cheapest
    immutable records Python has.
    """

    file: str
    batch_id: str
    operation: str
    timestamp: float
    duration_seconds: float | None = None
    run_id: str | None = None
    source: str | None = None
    status: str | None = None
    total_items: int | None = None
    success_count: int | None = None
    failure_count: int | None = None
    partial_count: int | None = None
    stages: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    estimated_cost: float | None = None
    cost_source: str | None = None
    parallel_efficiency: float | None = None
    # figures taken from outside ``metrics`` (exporter.archive.lenient.read_elsewhere), if any
    read_elsewhere: str | None = None
    models: tuple[ModelTokens, ...] = ()
    stage_durations: tuple[StageSummary, ...] = ()
    error_types: tuple[str, ...] = ()

    @property
    def end_timestamp(self) -> float:
        """Completion time in epoch seconds (the start when the duration is unknown)."""
        return self.timestamp + (self.duration_seconds or 0.0)


# A record as the index stores it: the scalar fields of RecordSummary (``batch_id`` to
# ``read_elsewhere``, in field order), then the fields of its ModelTokens, of its
# StageSummaries, and its error types, each as plain tuples: what a row is made of.
Projection = tuple[
    tuple[object, ...], list[tuple[object, ...]], list[tuple[object, ...]], list[str]
]


def project(record: BatchRecord) -> Projection:
    """Project a validated record onto the fields the index keeps, as plain tuples.

    A first index build projects a hundred thousand records straight into rows: no named
    tuple is made here (:func:`summary_of` makes the summary when one is wanted).
    """
    elsewhere = _read_elsewhere()(record)
    read_elsewhere = ",".join(elsewhere.fields) or None
    return _projection(record, record.timestamp.timestamp(), elsewhere.usage, read_elsewhere)


def project_quick(record: QuickRecord, start: float) -> Projection:
    """:func:`project` of a record the fast path read (:func:`exporter.archive.quick.read_quick`
    gives it and its ``start``): the same projection the model's reading would give."""
    return _projection(record, start, record.metrics.token_usage, None)


def _projection(
    record: BatchRecord | QuickRecord,
    start: float,
    usage: TokenUsage | QuickTokenUsage | None,
    read_elsewhere: str | None,
) -> Projection:
    m = record.metrics
    opt = record.optimization_metrics
    by_model = usage.by_model if usage is not None else None
    stage_durations = m.stage_durations
    errors = m.errors
    # Written out, not generated from the field names: this runs once per record.
    return (
        (
            record.batch_id,
            record.operation,
            start,
            record.duration_seconds,
            record.run_id,
            record.source,
            record.status,
            m.total_items,
            m.success_count,
            m.failure_count,
            m.partial_count,
            m.stages,
            *(
                (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.total_tokens,
                    usage.estimated_cost,
                    usage.cost_source,
                )
                if usage is not None
                else _NO_USAGE
            ),
            opt.parallel_efficiency if opt is not None else None,
            read_elsewhere,
        ),
        [
            (
                u.model,
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cost_usd,
                u.cost_source,
            )
            for u in by_model
        ]
        if by_model
        else [],
        [(x.stage, x.duration_seconds, len(x.items)) for x in stage_durations]
        if stage_durations
        else [],
        [e.error_type or "unknown" for e in errors] if errors else [],
    )


_NO_USAGE: Final = (None,) * 5


@cache
def _read_elsewhere() -> Callable[[BatchRecord], ReadElsewhere]:
    # imported on first use (it loads pydantic), once: an import statement costs ~1 us a record
    from exporter.archive.lenient import read_elsewhere  # noqa: PLC0415

    return read_elsewhere


def summary_of(
    file: str,
    scalars: Sequence[object],
    models: Iterable[Sequence[object]] = (),
    stages: Iterable[Sequence[object]] = (),
    errors: Iterable[str] = (),
) -> RecordSummary:
    """The summary of a record from its parts as :func:`project` gives them (or as the index
    reads them back)."""
    return RecordSummary._make(
        (
            file,
            *scalars,
            tuple(map(ModelTokens._make, models)),
            tuple(map(StageSummary._make, stages)),
            tuple(errors),
        )
    )


def summarize(record: BatchRecord, file: str) -> RecordSummary:
    """Project a validated record onto the fields the index keeps."""
    return summary_of(file, *project(record))


# A record's end time in SQL over table ``files`` aliased ``f``: start plus duration, or the
# start when the duration is unknown (as RecordSummary.end_timestamp); an index has this form.
END_SQL: Final = "(f.timestamp + COALESCE(f.duration_seconds, 0.0))"


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which valid records a query covers: one operation, a time window, the N most recent.

    A record is in a time window when its end time is (the one window rule, used by ``serve``,
    ``backfill`` and ``trends --since``: docs/architecture.md, "Windows: when a record counts").
    """

    operation: str | None = None
    since: float | None = None  # epoch seconds; records that ended at or after it
    recent: int | None = None  # the N most recent by start timestamp (not by file name)

    def sql(self) -> tuple[str, list[object]]:
        """A condition on table ``files`` aliased ``f``, and its parameters."""
        clauses = ["f.invalid_reason IS NULL"]
        params: list[object] = []
        if self.operation is not None:
            clauses.append("f.operation = ?")
            params.append(self.operation)
        if self.since is not None:
            clauses.append(f"{END_SQL} >= ?")
            params.append(self.since)
        if self.recent is not None:
            inner = " AND ".join(c.replace("f.", "g.") for c in clauses)
            clauses.append(
                "f.name IN (SELECT g.name FROM files g WHERE "  # noqa: S608 (constant SQL)
                f"{inner} ORDER BY g.timestamp DESC, g.name DESC LIMIT ?)"
            )
            params = [*params, *params, max(self.recent, 0)]
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one refresh changed; ``removed`` holds the summaries that were dropped or replaced."""

    # every summary added, in file-name order (a bulk load's are read back when first used)
    added: Sequence[RecordSummary] = ()
    removed: tuple[RecordSummary, ...] = ()
    invalid: dict[str, str] = field(default_factory=dict)  # file name -> reason, all known now
    newly_invalid: dict[str, str] = field(default_factory=dict)
    # Another process changed rows this instance had reported: consumers that apply the
    # deltas (added/removed) must rebuild from summaries() instead.
    reset: bool = False
    scanned_files: int = 0
    seconds: float = 0.0
    # A bulk load's fold, one result per chunk, over every valid record it added; empty when
    # there was none to make, or one failed (see exporter.index.parsing.Fold).
    folded: tuple[object, ...] = ()
    # ``added`` is every valid record of the index: this refresh built it from empty
    complete: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.newly_invalid or self.reset)
