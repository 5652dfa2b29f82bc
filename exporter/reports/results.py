"""What a trend report holds: the result models ``trends`` computes and every renderer reads.

Frozen pydantic models, so the JSON output (``--format json``) is their ``model_dump_json``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from exporter.index.stats import DurationStats, ItemCounts

__all__ = [
    "BottleneckFinding",
    "CostFigures",
    "ErrorTypeFigures",
    "ModelFigures",
    "OperationTrend",
    "ParallelFigures",
    "Selection",
    "StageFigures",
    "TokenFigures",
    "TrendReport",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class TokenFigures(_Out):
    """Token totals over the runs that reported token usage."""

    runs_with_tokens: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    mean_per_run: float | None


class CostFigures(_Out):
    """USD over the runs with a cost; runs with tokens but no price are counted apart."""

    runs_priced: int
    runs_unpriced: int
    cost_usd: float
    mean_per_run: float | None


class ParallelFigures(_Out):
    """``parallel_efficiency`` = item time / wall time (1.0 = no speedup)."""

    runs: int
    mean_efficiency: float
    # summed item time over summed wall time (exporter.index.stats), as the Prometheus panel
    # shows it
    overall_efficiency: float | None
    # item time minus wall time, summed over the runs that also recorded a duration
    seconds_saved: float


class StageFigures(_Out):
    stage: int | None
    runs: int
    total_seconds: float
    mean_seconds: float
    share: float  # of the operation's summed stage time


class OperationTrend(_Out):
    operation: str
    runs: int
    batches: int
    runs_without_duration: int
    durations: DurationStats | None
    items: ItemCounts
    success_rate: float | None  # None: no items recorded ("no data")
    tokens: TokenFigures
    cost: CostFigures
    parallel: ParallelFigures | None
    stages: list[StageFigures]

    @property
    def hot_spot(self) -> StageFigures | None:
        """The stage with the largest share of the operation's stage time."""
        return max(self.stages, key=lambda s: s.total_seconds, default=None)


class ModelFigures(_Out):
    operation: str
    model: str
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float | None  # None when no run of this model was priced
    runs_unpriced: int


class ErrorTypeFigures(_Out):
    error_type: str
    count: int
    by_operation: dict[str, int]


class BottleneckFinding(_Out):
    name: str
    operation: str
    signal: str
    value: float
    comparison: str
    threshold: float
    severity: str
    summary: str
    recommendation: str


class Selection(_Out):
    operation: str | None = None
    since: datetime | None = None
    recent: int | None = None


class TrendReport(_Out):
    generated_at: datetime
    archive: str
    selection: Selection
    records: int
    invalid_files: dict[str, str]
    first_run: datetime | None
    last_run: datetime | None
    operations: dict[str, OperationTrend]
    models: list[ModelFigures]
    errors: list[ErrorTypeFigures]
    bottlenecks: list[BottleneckFinding]
    # file name -> figures read from outside ``metrics`` (exporter.archive.lenient.read_elsewhere)
    read_elsewhere: dict[str, list[str]] = {}


# -- gathering the figures -----------------------------------------------------------------
