"""Records built in code for tests: one call per record, sensible defaults."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    ModelUsage,
    OptimizationMetrics,
    StageDuration,
    TokenUsage,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rec(
    batch: str,
    op: str = "execute",
    *,
    duration: float | None = 700.5,
    total: int | None = 5,
    success: int | None = 3,
    failure: int | None = 1,
    partial: int | None = 0,
    status: str | None = "partial",
    start: datetime = T0,
    models: list[ModelUsage] | None = None,
    errors: Sequence[str] = (),
    stages: list[StageDuration] | None = None,
    usage: TokenUsage | None = None,
    efficiency: float | None = None,
) -> BatchRecord:
    if usage is None and models is not None:
        usage = TokenUsage(by_model=models)
    return BatchRecord(
        batch_id=batch,
        operation=op,
        timestamp=start,
        duration_seconds=duration,
        metrics=Metrics(
            total_items=total,
            success_count=success,
            failure_count=failure,
            partial_count=partial,
            token_usage=usage,
            stage_durations=stages,
            errors=[ErrorEntry(item_id="x", error_type=e) for e in errors] or None,
        ),
        status=status,
        run_id=f"run-{batch}-{op}",
        optimization_metrics=None
        if efficiency is None
        else OptimizationMetrics(parallel_efficiency=efficiency),
    )


# Batch ids an attacker or a broken tool might send: each must be refused.
HOSTILE_IDS = [
    "../x",
    "a/b",
    "a\\b",
    "x\x00y",
    "4" * 10_240,
    "ünïcode",
    "",
    "..",
    ".",
    "-x",
    "a..b",
]
