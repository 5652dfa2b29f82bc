"""Token usage and cost of a batch from the ``batch.tokens`` events of its spans.

Every event on any span counts, so a subagent's tokens roll up into its stage and its batch.
Input tokens include cache reads (OTel GenAI). A provider-reported cost wins over the pricing
table's estimate; an unknown model is unpriced (listed in ``unpriced_models``), never $0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan

from exporter.archive.model import CostSource, ModelUsage, TokenUsage
from exporter.archive.pricing import PricingTable, combine_sources
from exporter.sdk.spans import ROUND_DIGITS, bounded_count, nonempty_str
from instrumentation import semconv as sc

__all__ = ["UNKNOWN_MODEL", "sum_token_usage"]

UNKNOWN_MODEL: Final = "unknown"


@dataclass(slots=True)
class _ModelTotals:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    provider_usd: float = 0.0
    provider_events: int = 0
    # Usage without a provider-reported cost, to be estimated from the table.
    unreported: list[int] = field(default_factory=lambda: [0, 0, 0])


def sum_token_usage(
    spans: Sequence[ReadableSpan],
    stage_of: Callable[[ReadableSpan], int | None],
    pricing: PricingTable,
) -> tuple[TokenUsage | None, dict[int, tuple[int, int]]]:
    """Batch token usage with cost, and (input, output) tokens per stage."""
    per_model: dict[str, _ModelTotals] = {}
    per_stage: dict[int, tuple[int, int]] = {}
    for span in spans:
        for event in span.events:
            if event.name != sc.EVENT_TOKENS:
                continue
            attrs = event.attributes or {}
            model = nonempty_str(attrs.get(sc.ATTR_GENAI_MODEL)) or UNKNOWN_MODEL
            counted = [
                bounded_count(attrs.get(sc.ATTR_GENAI_INPUT_TOKENS)) or 0,
                bounded_count(attrs.get(sc.ATTR_GENAI_OUTPUT_TOKENS)) or 0,
                bounded_count(attrs.get(sc.ATTR_CACHE_READ_TOKENS)) or 0,
            ]
            totals = per_model.setdefault(model, _ModelTotals())
            totals.input_tokens += counted[0]
            totals.output_tokens += counted[1]
            totals.cache_read_tokens += counted[2]
            cost = attrs.get(sc.ATTR_COST_USD)
            if (
                isinstance(cost, int | float)
                and not isinstance(cost, bool)
                and math.isfinite(cost)
                and cost >= 0
            ):
                totals.provider_usd += float(cost)
                totals.provider_events += 1
            else:
                totals.unreported = [a + b for a, b in zip(totals.unreported, counted, strict=True)]
            stage = stage_of(span)
            if stage is not None:
                old_in, old_out = per_stage.get(stage, (0, 0))
                per_stage[stage] = (old_in + counted[0], old_out + counted[1])
    if not per_model:
        return None, per_stage

    by_model: list[ModelUsage] = []
    unpriced: list[str] = []
    for model in sorted(per_model):
        totals = per_model[model]
        sources: list[CostSource] = []
        usd: float | None = None
        if totals.provider_events:
            usd = totals.provider_usd
            sources.append("provider")
        if any(totals.unreported):
            estimate = pricing.cost(model, *totals.unreported)
            sources.append(estimate.source)
            if estimate.usd is None:
                unpriced.append(model)
            else:
                usd = (usd or 0.0) + estimate.usd
        by_model.append(
            ModelUsage(
                model=model,
                input_tokens=totals.input_tokens,
                output_tokens=totals.output_tokens,
                cache_read_tokens=totals.cache_read_tokens,
                cost_usd=None if usd is None else round(usd, ROUND_DIGITS),
                cost_source=combine_sources(sources),
            )
        )
    priced = [m.cost_usd for m in by_model if m.cost_usd is not None]
    input_tokens = sum(m.input_tokens for m in by_model)
    output_tokens = sum(m.output_tokens for m in by_model)
    usage = TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        estimated_cost=round(sum(priced), ROUND_DIGITS) if priced else None,
        cost_source=combine_sources([m.cost_source for m in by_model]),
        unpriced_models=unpriced or None,
        by_model=by_model,
    )
    return usage, per_stage
