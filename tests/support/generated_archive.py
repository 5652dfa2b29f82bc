"""Deterministic synthetic archives for the trends tests and benchmark.

Records are valid :class:`BatchRecord` s (so the seed's scripts, which read the same files,
see every field they need); durations, item counts, tokens, models, stages and errors vary
with a seeded random generator. Files are written without fsync: this is test data.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from exporter.archive.files import record_path
from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    ModelUsage,
    OptimizationMetrics,
    StageDuration,
    TokenUsage,
    dump_record,
)
from instrumentation.semconv import OPERATIONS

START: Final = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
_MODELS: Final = ("claude-sonnet-4-5", "claude-haiku-4-5", "mystery-model")
_ERRORS: Final = ("TimeoutError", "ValidationError", "RateLimitError")


def make_record(
    rng: random.Random, n: int, *, with_duration: bool = True, operation: str | None = None
) -> BatchRecord:
    """The ``n``-th synthetic run: batch ``n // 4``, operations in turn, one hour apart."""
    op = operation or OPERATIONS[n % len(OPERATIONS)]
    total = rng.randint(0, 10) if op == "review" else rng.randint(1, 10)
    success = rng.randint(max(total - 3, 0), total)
    failure = rng.randint(0, total - success)
    partial = total - success - failure
    stages = [
        StageDuration(
            stage=s + 1,
            duration_seconds=round(rng.uniform(10, 400), 3),
            items=[f"PRP-{n // 4}.{s + 1}.{i}" for i in range(rng.randint(1, 3))],
        )
        for s in range(rng.randint(1, 3))
    ]
    models = [
        ModelUsage(
            model=model,
            input_tokens=rng.randint(1_000, 90_000),
            output_tokens=rng.randint(100, 20_000),
            cost_usd=None if model == "mystery-model" else round(rng.uniform(0.01, 2.0), 4),
            cost_source="unpriced" if model == "mystery-model" else "estimate",
        )
        for model in rng.sample(_MODELS, rng.randint(1, 2))
    ]
    priced = [m.cost_usd for m in models if m.cost_usd is not None]
    return BatchRecord(
        batch_id=str(n // 4),
        operation=op,
        timestamp=START + timedelta(hours=n),
        duration_seconds=round(rng.uniform(30, 1500), 3) if with_duration else None,
        metrics=Metrics(
            total_items=total,
            stages=len(stages),
            success_count=success,
            failure_count=failure,
            partial_count=partial,
            token_usage=TokenUsage(
                input_tokens=sum(m.input_tokens for m in models),
                output_tokens=sum(m.output_tokens for m in models),
                total_tokens=sum(m.input_tokens + m.output_tokens for m in models),
                estimated_cost=sum(priced) if priced else None,
                cost_source="estimate" if priced else "unpriced",
                by_model=models,
            ),
            stage_durations=stages,
            errors=[
                ErrorEntry(item_id=f"PRP-{n // 4}.{i}", error_type=rng.choice(_ERRORS))
                for i in range(failure)
            ],
        ),
        optimization_metrics=OptimizationMetrics(parallel_efficiency=round(rng.uniform(1, 3), 3)),
        run_id=f"gen-{n}",
        source="instrumentation",
    )


def write_archive(archive: Path, count: int, *, seed: int = 47, every_nth_without: int = 0) -> None:
    """Write ``count`` synthetic runs into ``archive``; every n-th run without a duration."""
    rng = random.Random(seed)
    archive.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        without = every_nth_without > 0 and n % every_nth_without == every_nth_without - 1
        record = make_record(rng, n, with_duration=not without)
        record_path(archive, record).write_text(dump_record(record), encoding="utf-8")
