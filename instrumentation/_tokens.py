"""``record_tokens``: LLM token usage of the current item, stage or batch."""

from __future__ import annotations

import math

from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._guard import logger, report_bad_argument, report_internal_error
from instrumentation._spans import truncate
from instrumentation._state import CURRENT


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def record_tokens(
    *,
    input: int = 0,  # shadows the builtin: the name users know from LLM usage reports
    output: int = 0,
    model: str,
    cache_read: int = 0,
    cost_usd: float | None = None,
) -> None:
    """Attach one LLM call's token usage to the innermost current item, stage or batch.

    As in the OTel GenAI conventions, ``input`` counts all input tokens *including* the
    ``cache_read`` ones (add Anthropic's ``cache_read_input_tokens`` to its ``input_tokens``).
    Adds a ``batch.tokens`` event to that span (``batch.cost.usd`` only when the provider
    reported a cost), adds to the span's running totals and to the ``batch.tokens`` counter.
    Outside a batch it does nothing. Invalid values (negative or non-integer counts, more cache
    reads than input, an empty model) are logged once and the call is ignored.
    """
    scope = CURRENT.get()
    if scope is None:
        logger.debug("record_tokens() outside a batch: not recorded")
        return
    if not (
        _is_count(input)
        and _is_count(output)
        and _is_count(cache_read)
        and cache_read <= input
        and isinstance(model, str)
        and model
        and (cost_usd is None or _is_cost(cost_usd))
    ):
        report_bad_argument(
            "record_tokens()",
            (
                "token counts must be integers >= 0 with cache_read <= input (input includes "
                "cache reads), model a non-empty string and cost_usd a finite number >= 0; "
                f"got input={input!r}, output={output!r}, "
                f"cache_read={cache_read!r}, model={model!r}, cost_usd={cost_usd!r}"
            ),
        )
        return
    try:
        batch = scope.batch
        model = truncate(model, semconv.MAX_LABEL_LENGTH)
        owner = scope.innermost()
        span = owner.span
        if span.is_recording():
            batch.add_usage(owner, input, output, cache_read)
            attributes: dict[str, AttributeValue] = {
                semconv.ATTR_GENAI_MODEL: model,
                semconv.ATTR_GENAI_INPUT_TOKENS: input,
                semconv.ATTR_GENAI_OUTPUT_TOKENS: output,
                semconv.ATTR_CACHE_READ_TOKENS: cache_read,
            }
            if cost_usd is not None:
                attributes[semconv.ATTR_COST_USD] = float(cost_usd)
            span.add_event(semconv.EVENT_TOKENS, attributes)
        batch.instruments.record_tokens(batch.operation, model, input, output, cache_read)
    except Exception as exc:
        report_internal_error("record_tokens", exc)


def _is_cost(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
