"""The archive's fast path: records exactly as our writers write them, decoded by msgspec.

The index reads every record of an archive when it is first built, and pydantic's validation
of :class:`~exporter.archive.model.BatchRecord` is most of a record's cost there (~25 us of a
~35 us parse; msgspec decodes the same document into the structs below in ~7 us). The structs
mirror the model, field for field, with its own vocabularies and limits, and are *stricter*:

* no field the model does not name, at any depth (another tool's extra field goes to the model,
  which keeps it, and to :func:`~exporter.archive.lenient.read_elsewhere`);
* no lax conversion: an integer is a JSON integer, not ``1.0``, ``true`` or ``"1"``;
* the timestamp is read by the model's own rules (``timestamps.read_instant``);
* the model's rules across fields are the model's own functions (``counts_beyond_total``,
  ``ends_in_time``); a record whose outcome comes from its status is left to the model.

So a document :func:`read_quick` accepts is one the model accepts as written, with the same
values (``tests/archive/test_quick.py`` checks this on generated and hostile documents); for
anything else it returns None, and the caller reads the document with the model, which accepts
it, reads it leniently or refuses it with its reason, exactly as without this path.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta, Struct

from exporter.archive.lenient import outcome_from_status
from exporter.archive.model import (
    BATCH_ID_MAX_LENGTH,
    BATCH_ID_RE,
    MAX_COUNT,
    MAX_EFFICIENCY,
    MAX_SECONDS,
    MAX_USD,
    MODEL_NAME_MAX_LENGTH,
    RUN_ID_RE,
    TRACE_ID_RE,
    CostSource,
    RecordSource,
    RecordStatus,
    counts_beyond_total,
    ends_in_time,
)
from exporter.archive.timestamps import read_instant
from instrumentation.semconv import Operation

__all__ = [
    "QuickErrorEntry",
    "QuickMetrics",
    "QuickModelUsage",
    "QuickRecord",
    "QuickStageDuration",
    "QuickTokenUsage",
    "read_quick",
]


def _whole(pattern: str) -> str:
    """``pattern`` matched against the whole string (msgspec searches; ``$`` would also
    match before a final newline, which the model refuses)."""
    return rf"\A(?:{pattern})\Z"


Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Seconds = Annotated[float, Meta(ge=0, le=MAX_SECONDS)]
Usd = Annotated[float, Meta(ge=0, le=MAX_USD)]
StageNumber = Annotated[int, Meta(ge=-MAX_COUNT, le=MAX_COUNT)]
BatchId = Annotated[
    str,
    Meta(max_length=BATCH_ID_MAX_LENGTH, pattern=_whole(rf"(?!.*\.\.){BATCH_ID_RE.pattern}")),
]


class _Strict(Struct, forbid_unknown_fields=True):
    """No field the model does not name."""


class QuickModelUsage(_Strict):
    model: Annotated[str, Meta(min_length=1, max_length=MODEL_NAME_MAX_LENGTH)]
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_tokens: Count = 0
    cost_usd: Usd | None = None
    cost_source: CostSource = "unpriced"


class QuickTokenUsage(_Strict):
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    total_tokens: Count | None = None
    estimated_cost: Usd | None = None
    cost_source: CostSource | None = None
    unpriced_models: list[str] | None = None
    by_model: list[QuickModelUsage] | None = None


class QuickStageDuration(_Strict):
    stage: StageNumber | None = None
    duration_seconds: Seconds | None = None
    items: list[str] = []
    input_tokens: Count | None = None
    output_tokens: Count | None = None


class QuickErrorEntry(_Strict):
    item_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None


class QuickMetrics(_Strict):
    total_items: Count | None = None
    stages: Count | None = None
    success_count: Count | None = None
    failure_count: Count | None = None
    partial_count: Count | None = None
    token_usage: QuickTokenUsage | None = None
    stage_durations: list[QuickStageDuration] | None = None
    errors: list[QuickErrorEntry] | None = None


class _QuickDriftScore(_Strict):
    prp_id: str | None = None
    drift: float | None = None


class _QuickOptimizationMetrics(_Strict):
    shared_context_size: Count | None = None
    token_savings: int | None = None
    parallel_efficiency: Annotated[float, Meta(ge=0, le=MAX_EFFICIENCY)] | None = None
    drift_scores: list[_QuickDriftScore] | None = None


class QuickRecord(_Strict):
    """A record as :class:`~exporter.archive.model.BatchRecord` would hold it, with its
    timestamp still as written (:func:`read_quick` gives the instant)."""

    batch_id: BatchId
    operation: Operation
    timestamp: str
    metrics: QuickMetrics
    duration_seconds: Seconds | None = None
    optimization_metrics: _QuickOptimizationMetrics | None = None
    run_id: Annotated[str, Meta(pattern=_whole(RUN_ID_RE.pattern))] | None = None
    status: RecordStatus | None = None
    source: RecordSource | None = None
    trace_id: Annotated[str, Meta(pattern=_whole(TRACE_ID_RE.pattern))] | None = None
    notes: list[str] | None = None

    # no extra fields, so none to read figures from (BatchRecord.model_extra's place)
    model_extra: ClassVar[None] = None


_DECODER: Final = msgspec.json.Decoder(QuickRecord)


def read_quick(data: bytes) -> tuple[QuickRecord, float] | None:
    """``data`` as a record and its start in epoch seconds, if it is a record exactly as the
    model reads it without help; else None (read it with the model)."""
    try:
        record = _DECODER.decode(data)
    except msgspec.DecodeError:  # what the model may read leniently, or refuse
        return None
    m = record.metrics
    if counts_beyond_total(m) is not None:
        return None
    if outcome_from_status(record):
        return None  # read_elsewhere lists it: the model's reading says so
    try:
        start = read_instant(record.timestamp)
    except (ValueError, OverflowError, TypeError):
        return None
    if not ends_in_time(start, record.duration_seconds):
        return None
    return record, start.timestamp()
