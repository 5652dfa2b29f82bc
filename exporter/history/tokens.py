"""Token usage of an operation from the orchestrator's task files or its batch result."""

from __future__ import annotations

from collections import defaultdict

from exporter.archive.model import ModelUsage, TokenUsage
from exporter.archive.pricing import PricingTable, combine_sources
from exporter.history.sources.batch_result import BatchResult
from exporter.history.sources.orchestrator import Task

__all__ = ["token_usage"]


def _from_tasks(tasks: list[Task], pricing: PricingTable) -> TokenUsage | None:
    """Token totals; input/output, models and cost from the tasks that report the split."""
    with_tokens = [t for t in tasks if t.tokens_used is not None or t.input_tokens is not None]
    if not with_tokens:
        return None
    split = [t for t in with_tokens if t.input_tokens is not None and t.output_tokens is not None]
    total = sum(
        t.tokens_used
        if t.tokens_used is not None
        else (t.input_tokens or 0) + (t.output_tokens or 0)
        for t in with_tokens
    )
    if not split:
        return TokenUsage(total_tokens=total, cost_source="unpriced")
    by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in split:
        usage = by_model[t.model or "unknown"]
        usage[0] += t.input_tokens or 0
        usage[1] += t.output_tokens or 0
    models = []
    for model, (tin, tout) in sorted(by_model.items()):
        cost = pricing.cost(model, tin, tout)
        models.append(
            ModelUsage(
                model=model,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=cost.usd,
                cost_source=cost.source,
            )
        )
    priced = [m.cost_usd for m in models if m.cost_usd is not None]
    unpriced = [m.model for m in models if m.cost_usd is None]
    return TokenUsage(
        input_tokens=sum(m.input_tokens for m in models),
        output_tokens=sum(m.output_tokens for m in models),
        total_tokens=total,
        estimated_cost=sum(priced) if priced else None,
        cost_source=combine_sources([m.cost_source for m in models]),
        unpriced_models=unpriced or None,
        by_model=models,
    )


def token_usage(
    tasks: list[Task], result: BatchResult | None, pricing: PricingTable, notes: list[str]
) -> TokenUsage | None:
    """Tasks first (per model, priced); else the batch result's total (no split, unpriced)."""
    usage = _from_tasks(tasks, pricing)
    if usage is not None:
        notes.append("tokens: the task files")
        if result is not None and result.tokens is not None and result.tokens != usage.total_tokens:
            notes.append(
                f"tokens: {result.path.name} says {result.tokens}, the task files add up to "
                f"{usage.total_tokens}; the task files counted"
            )
        return usage
    if result is not None and result.tokens is not None:
        notes.append(f"tokens: {result.path.name} total only (no input/output split, no cost)")
        return TokenUsage(total_tokens=result.tokens, cost_source="unpriced")
    return None
