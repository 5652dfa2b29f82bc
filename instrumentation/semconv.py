"""Names shared by the instrumentation and the exporter: spans, attributes, labels, buckets.

The metrics themselves (instrument names, units, help, labels) are declared once in
:mod:`instrumentation.contract`.
"""

from __future__ import annotations

from typing import Final, Literal

# -- vocabulary ----------------------------------------------------------------------------

Operation = Literal["generate", "execute", "review", "update-context"]
OPERATIONS: Final[tuple[Operation, ...]] = ("generate", "execute", "review", "update-context")

ItemOutcome = Literal["success", "failure", "partial"]
ITEM_OUTCOMES: Final[tuple[ItemOutcome, ...]] = ("success", "failure", "partial")

# Outcome of a whole operation run; see run_outcome.
OperationOutcome = Literal["success", "failure", "partial"]


def run_outcome(total: int, success: int, partial: int, body_failed: bool) -> OperationOutcome:
    """The outcome of an operation run from its item counts: the one rule for every source.

    ``total`` is the number of items the run had (the announced total when larger than the
    number of distinct items seen), ``success`` and ``partial`` how many of them ended so.
    failure if the body raised (``body_failed``) or no item succeeded even partly; success
    if every item succeeded (also when there were none); partial otherwise.
    """
    if body_failed:
        return "failure"
    if success >= total:
        return "success"
    return "partial" if success or partial else "failure"


TokenType = Literal["input", "output", "cache_read"]

# -- spans ---------------------------------------------------------------------------------

SPAN_BATCH: Final = "batch"  # full span name: "batch {operation}"
SPAN_STAGE: Final = "batch.stage"  # full span name: "batch.stage {stage}"
SPAN_ITEM: Final = "batch.item"  # full span name: "batch.item {item_id}"
EVENT_TOKENS: Final = "batch.tokens"  # one event per record_tokens() call

# -- attributes ----------------------------------------------------------------------------

ATTR_KIND: Final = "batch.span.kind"  # "batch" | "stage" | "item"
ATTR_BATCH_ID: Final = "batch.id"
ATTR_OPERATION: Final = "batch.operation"
ATTR_RUN_ID: Final = "batch.run_id"
ATTR_STAGE: Final = "batch.stage"
ATTR_STAGE_NAME: Final = "batch.stage.name"
ATTR_ITEM_ID: Final = "batch.item.id"
ATTR_OUTCOME: Final = "batch.outcome"
ATTR_ERROR_TYPE: Final = "error.type"  # OTel general attribute
ATTR_ERROR_MESSAGE: Final = "batch.error.message"  # bounded, see MAX_ERROR_MESSAGE
ATTR_TOTAL_ITEMS: Final = "batch.items.total"  # announced size of a batch or stage, optional
# Token usage follows the OTel GenAI semantic conventions where they fit.
ATTR_GENAI_MODEL: Final = "gen_ai.request.model"
ATTR_GENAI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
ATTR_GENAI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
ATTR_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
ATTR_COST_USD: Final = "batch.cost.usd"  # provider-reported cost, when known

MAX_ERROR_MESSAGE: Final = 500  # characters kept of an error message
MAX_ID_LENGTH: Final = 128  # characters kept of an item id on a span

# -- instruments ---------------------------------------------------------------------------

METER_NAME: Final = "batch_metrics"
TRACER_NAME: Final = "batch_metrics"

# Metric attribute keys (Prometheus labels); every one has a bounded set of values.
LABEL_OPERATION: Final = "operation"
LABEL_OUTCOME: Final = "outcome"
LABEL_STAGE: Final = "stage"
LABEL_TYPE: Final = "type"
LABEL_MODEL: Final = "model"
LABEL_ERROR_TYPE: Final = "error_type"

# Batches run for minutes to hours. The OTel default boundaries stop at 10 s and have no
# 600 s, the seed's "long_duration" threshold, so an alert on the mean could not be read off
# the buckets. These include 600 exactly and reach 8 hours.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
)

# -- additions used by the instrumentation API -----------------------------------------------

# values of ATTR_KIND
KIND_BATCH: Final = "batch"
KIND_STAGE: Final = "stage"
KIND_ITEM: Final = "item"

# error_type label of a failure that names no error type (the OTel error.type fallback value).
ERROR_TYPE_OTHER: Final = "_OTHER"
MAX_LABEL_LENGTH: Final = 128  # characters kept of a free-text label value (model, error type)
