"""The canonical batch record: one pydantic model, the single source of the archive schema.

The field names and nesting are the seed's draft-07 schema (``batch-metrics.json``); every
field the seed leaves optional stays optional, and extra optional fields record what the seed
cannot say (which run, which source, per-model token usage, whether a cost is an estimate).
Records are written with :func:`dump_record` (``None`` fields left out, so the output validates
against the seed schema) and read with :func:`parse_record`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, Final, Literal, NamedTuple, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exporter.archive.timestamps import Timestamp
from exporter.util.errors import UserError, describe_validation_error
from instrumentation.semconv import Operation, OperationOutcome

__all__ = [
    "BATCH_ID_MAX_LENGTH",
    "BATCH_ID_RE",
    "LAST_SAFE_YEAR",
    "MAX_COUNT",
    "MAX_EFFICIENCY",
    "MAX_SECONDS",
    "MAX_USD",
    "MODEL_NAME_MAX_LENGTH",
    "RUN_ID_RE",
    "TRACE_ID_RE",
    "BatchRecord",
    "CostSource",
    "DriftScore",
    "ErrorEntry",
    "InvalidBatchId",
    "LenientRecord",
    "Metrics",
    "ModelUsage",
    "OptimizationMetrics",
    "RecordSource",
    "RecordStatus",
    "StageDuration",
    "TokenUsage",
    "Unused",
    "ValidationError",
    "build_validator",
    "check_batch_id",
    "checked_stage",
    "counts_beyond_total",
    "describe_validation_error",
    "dump_record",
    "ends_in_time",
    "lenient_adapter",
    "measured_efficiency",
    "parse_record",
    "record_status",
]

BATCH_ID_MAX_LENGTH: Final = 64
BATCH_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUN_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TRACE_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
MODEL_NAME_MAX_LENGTH: Final = 200

RecordSource = Literal["instrumentation", "orchestrator", "prp", "git"]
RecordStatus = Literal["completed", "partial", "failed", "crashed"]
CostSource = Literal["provider", "estimate", "mixed", "unpriced"]

_STATUS_BY_OUTCOME: Final[dict[OperationOutcome, RecordStatus]] = {
    "success": "completed",
    "partial": "partial",
    "failure": "failed",
}


def record_status(outcome: OperationOutcome) -> RecordStatus:
    """The record status of a finished run with this outcome (:func:`semconv.run_outcome`)."""
    return _STATUS_BY_OUTCOME[outcome]


class InvalidBatchId(UserError, ValueError):
    """A batch id that could name a file outside the archive or is otherwise unusable."""


def check_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is safe to put in a file name, else raise InvalidBatchId.

    Allowed: 1-64 characters from ``[A-Za-z0-9._-]``, starting with a letter or digit, and no
    ``..``. That keeps every archive file name inside the archive directory.
    """
    if not batch_id:
        raise InvalidBatchId("batch id is empty")
    if len(batch_id) > BATCH_ID_MAX_LENGTH:
        raise InvalidBatchId(
            f"batch id {_shown(batch_id)} is {len(batch_id)} characters long "
            f"(max {BATCH_ID_MAX_LENGTH})"
        )
    if not BATCH_ID_RE.fullmatch(batch_id) or ".." in batch_id:
        raise InvalidBatchId(
            f"batch id {_shown(batch_id)} may only contain letters, digits, '.', '_' and '-', "
            "must start with a letter or digit and must not contain '..'"
        )
    return batch_id


def _shown(batch_id: str) -> str:
    """A refused batch id as an error line shows it (made only to refuse one: every record
    read passes through check_batch_id)."""
    return repr(batch_id[:40] + ("..." if len(batch_id) > 40 else ""))


# Upper bounds keep absurd values out of the index (SQLite integers are 64-bit) and out of
# date arithmetic: 2**53 is the largest count a JSON reader keeps exactly, 1e9 s is 31 years.
MAX_COUNT: Final = 2**53
MAX_SECONDS: Final = 1e9
MAX_USD: Final = 1e12
# Item seconds per wall second: a million items' worth of work at once is already absurd, and
# the bound keeps item time (duration x efficiency) finite in every sum the index keeps.
MAX_EFFICIENCY: Final = 1e6
# A run that starts before this year ends before year 10000, however long it lasts.
LAST_SAFE_YEAR: Final = 9999 - 32
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Usd = Annotated[float, Field(ge=0, le=MAX_USD, allow_inf_nan=False)]
# Any integer the archive's readers (SQLite, JSON parsers) keep exactly.
StageNumber = Annotated[int, Field(ge=-MAX_COUNT, le=MAX_COUNT)]


def ends_in_time(start: datetime, duration: float | None) -> bool:
    """Whether a run that starts at ``start`` (aware) and lasts ``duration`` seconds (at most
    MAX_SECONDS, under 32 years) ends before year 10000: only a start in the last 32 years
    of the calendar can end too late."""
    if duration is None or start.year < LAST_SAFE_YEAR:
        return True
    try:
        start.astimezone(UTC) + timedelta(seconds=duration)
    except OverflowError:
        return False
    return True


def _finite_json(value: Any) -> Any:
    """An extra field's value, refused if it holds NaN or Infinity at any depth.

    Python's JSON reader accepts them, JSON does not; written back they would become null.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if isinstance(value, dict):
        for item in value.values():
            _finite_json(item)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item)
    return value


class _Model(BaseModel):
    # Extra fields are kept: the seed schema allows them and newer writers may add some.
    model_config = ConfigDict(
        extra="allow", allow_inf_nan=False, populate_by_name=True, defer_build=True
    )
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(_finite_json)]] = Field(init=False)


class ModelUsage(_Model):
    """Tokens and cost of one model within a run (extension to the seed schema)."""

    model: str = Field(min_length=1, max_length=MODEL_NAME_MAX_LENGTH)
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_tokens: Count = 0
    cost_usd: Usd | None = Field(default=None, description="USD; absent when the model is unpriced")
    cost_source: CostSource = "unpriced"


class TokenUsage(_Model):
    """Token usage of a run, as in the seed schema, plus per-model detail."""

    input_tokens: Count | None = None
    output_tokens: Count | None = None
    total_tokens: Count | None = None
    estimated_cost: Usd | None = Field(
        default=None,
        description="USD; the sum over priced models (see cost_source and unpriced_models)",
    )
    cost_source: CostSource | None = None
    unpriced_models: list[str] | None = None
    by_model: list[ModelUsage] | None = None


class StageDuration(_Model):
    """Wall time of one stage and the items it ran."""

    # None: the seed's analyze-batch.py writes null for PRPs whose front matter has no stage.
    stage: StageNumber | None = None
    duration_seconds: Seconds | None = None
    items: list[str] = Field(default_factory=list)
    # -- extensions: tokens used inside the stage, subagents' included --
    input_tokens: Count | None = None
    output_tokens: Count | None = None


class ErrorEntry(_Model):
    """One failed (or partly failed) item: the error's type and a bounded message."""

    item_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None


class Metrics(_Model):
    """The seed's ``metrics`` object."""

    total_items: Count | None = None
    stages: Count | None = None
    success_count: Count | None = None
    failure_count: Count | None = None
    partial_count: Count | None = None
    token_usage: TokenUsage | None = None
    stage_durations: list[StageDuration] | None = None
    errors: list[ErrorEntry] | None = None

    @model_validator(mode="after")
    def _counts_add_up(self) -> Metrics:
        counted = counts_beyond_total(self)
        if counted is not None:
            raise PydanticCustomError(
                "counts_exceed_total",
                "success + failure + partial = {counted} exceeds total_items = {total}",
                {"counted": counted, "total": self.total_items},
            )
        return self


class _Counts(Protocol):
    """The item counts of a record's metrics (:class:`Metrics`, or the fast path's)."""

    @property
    def total_items(self) -> int | None: ...
    @property
    def success_count(self) -> int | None: ...
    @property
    def failure_count(self) -> int | None: ...
    @property
    def partial_count(self) -> int | None: ...


def counts_beyond_total(metrics: _Counts) -> int | None:
    """success + failure + partial when they exceed ``total_items`` (refused), else None."""
    counted = (metrics.success_count or 0) + (metrics.failure_count or 0)
    counted += metrics.partial_count or 0
    if metrics.total_items is not None and counted > metrics.total_items:
        return counted
    return None


class DriftScore(_Model):
    prp_id: str | None = None
    drift: float | None = None


class OptimizationMetrics(_Model):
    """The seed's operation-specific optimization metrics."""

    shared_context_size: Count | None = None
    token_savings: int | None = None
    parallel_efficiency: (
        Annotated[float, Field(ge=0, le=MAX_EFFICIENCY, allow_inf_nan=False)] | None
    ) = Field(
        default=None,
        description=(
            "Sum of item durations over the run's wall time: 1.0 = no speedup from "
            "parallel stages, N = N items' worth of work per second of wall time"
        ),
    )
    drift_scores: list[DriftScore] | None = None


class BatchRecord(_Model):
    """One operation run of one batch: the unit of the archive."""

    model_config = ConfigDict(
        title="Batch Metrics",
        json_schema_extra={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "description": "Standard metrics schema for batch operations",
        },
    )

    batch_id: str = Field(
        description="Batch identifier (e.g., '47')",
        # What check_batch_id enforces, stated for schema users (the validator is the rule).
        json_schema_extra={
            "pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]*$",
            "maxLength": BATCH_ID_MAX_LENGTH,
        },
    )
    operation: Operation = Field(description="Batch operation type")
    timestamp: Timestamp = Field(description="Operation start time (ISO 8601)")
    duration_seconds: Seconds | None = Field(
        default=None, description="Total operation duration in seconds"
    )
    metrics: Metrics
    optimization_metrics: OptimizationMetrics | None = None
    # -- extensions (optional, allowed by the seed schema) --
    run_id: str | None = Field(
        default=None,
        description="Identity of this run; re-writing the same run is idempotent",
        json_schema_extra={"pattern": "^" + RUN_ID_RE.pattern + "$"},
    )
    status: RecordStatus | None = None
    source: RecordSource | None = Field(default=None, description="Where the figures come from")
    trace_id: str | None = Field(default=None, pattern="^" + TRACE_ID_RE.pattern + "$")
    notes: list[str] | None = Field(
        default=None, description="What this record could not measure, in words"
    )

    @field_validator("batch_id")
    @classmethod
    def _safe_batch_id(cls, value: str, info: ValidationInfo) -> str:
        if info.context and info.context.get("lenient"):
            return value  # another tool's id, read as a name only: never part of a path
        return check_batch_id(value)

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, value: str | None) -> str | None:
        if value is not None and not RUN_ID_RE.fullmatch(value):
            raise ValueError("run_id may only contain letters, digits, '_' and '-' (max 64)")
        return value

    @model_validator(mode="after")
    def _ends_before_year_10000(self) -> BatchRecord:
        if not ends_in_time(self.timestamp, self.duration_seconds):
            raise PydanticCustomError(
                "ends_after_year_9999", "timestamp + duration_seconds is after year 9999"
            )
        return self

    @property
    def unused(self) -> tuple[Unused, ...]:
        """What the record holds that the project could not use, each with its reason.

        Empty for every record the model reads as written; filled by the lenient read of a
        record the seed's schema accepts but the model alone would refuse (a
        :class:`LenientRecord`).
        """
        return ()

    @property
    def end_timestamp(self) -> datetime | None:
        """Start plus duration, when the duration is known."""
        if self.duration_seconds is None:
            return None
        return datetime.fromtimestamp(self.timestamp.timestamp() + self.duration_seconds, tz=UTC)


class LenientRecord(BatchRecord):
    """A record read leniently (:mod:`exporter.archive.lenient`), with what was set aside.

    A subclass, so that the records read as written (nearly all) carry no private attribute:
    pydantic initializes one for every instance, ~2 us of a record's ~19 us validation.
    """

    _unused: tuple[Unused, ...] = PrivateAttr(default=())

    @property
    def unused(self) -> tuple[Unused, ...]:
        return self._unused


def checked_stage(value: object) -> int | None:
    """A stage number as a record can hold it (an int within +-2**53, not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and -MAX_COUNT <= value <= MAX_COUNT:
        return value
    return None


def measured_efficiency(item_seconds: float, wall_seconds: float | None) -> float | None:
    """Parallel efficiency as a record stores it: item seconds per wall second, 4 decimals.

    None without item time or wall time, and when the wall time is too short for the ratio to
    mean anything (above :data:`MAX_EFFICIENCY`).
    """
    if not item_seconds or not wall_seconds:
        return None
    ratio = round(item_seconds / wall_seconds, 4)
    return ratio if ratio <= MAX_EFFICIENCY else None


@cache
def _record_adapter() -> TypeAdapter[BatchRecord]:
    # Built on first use: building the validators costs ~0.2 s, which commands that only read
    # the index (trends, serve when warm) should not pay at start-up.
    return TypeAdapter(BatchRecord)


def build_validator() -> None:
    """Build the record validator now rather than at the first record read (~0.2 s)."""
    _record_adapter()


@cache
def lenient_adapter() -> TypeAdapter[LenientRecord]:
    """The validator of :class:`LenientRecord` (built on first use, as :func:`_record_adapter`)."""
    return TypeAdapter(LenientRecord)


class Unused(NamedTuple):
    """A value of a record that the project could not use: where, the value, and why."""

    path: tuple[str | int, ...]
    value: Any
    reason: str

    @property
    def where(self) -> str:
        """``metrics.stage_durations[0].stage``."""
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)[1:]


def parse_record(data: bytes | str) -> BatchRecord:
    """Parse and validate one archive file's content. Raises pydantic ValidationError.

    A document the model refuses but the seed's schema accepts is read leniently
    (:func:`exporter.archive.lenient.read_leniently`): what the model cannot use is set aside
    in :attr:`BatchRecord.unused` and the record keeps every figure it can.
    """
    try:
        return _record_adapter().validate_json(data)
    except ValidationError as exc:
        from exporter.archive.lenient import read_leniently  # noqa: PLC0415 (imports this module)

        return read_leniently(data, exc)


def dump_record(record: BatchRecord) -> str:
    """Serialize a record as the archive stores it: indented JSON, ``None`` fields left out.

    Values a lenient read set aside are written back where they were, so that another tool's
    record is never stripped of its own fields by passing through ours.
    """
    if record.unused:
        from exporter.archive.lenient import dump_with_unused  # noqa: PLC0415 (imports this module)

        return dump_with_unused(record)
    return record.model_dump_json(indent=2, exclude_none=True, by_alias=True) + "\n"
