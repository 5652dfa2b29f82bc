"""The batch metrics: instruments created once per meter provider, recorded without raising."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import Meter, MeterProvider, NoOpMeter

from instrumentation import semconv
from instrumentation._guard import report_internal_error

_KIND: Final = "metrics"


class Instruments:
    """Every batch instrument of one meter; each ``record_*`` method swallows its own errors.

    Labels are bounded: operation, outcome, stage number, token type, model and error type.
    Never a batch id, item id or message.
    """

    __slots__ = (
        "errors",
        "item_work",
        "items",
        "items_running",
        "last_completion",
        "last_success",
        "operation_duration",
        "operations",
        "operations_running",
        "stage_duration",
        "tokens",
    )

    def __init__(self, meter: Meter) -> None:
        buckets = semconv.DURATION_BUCKETS
        self.operation_duration = meter.create_histogram(
            semconv.INSTR_OPERATION_DURATION,
            unit=semconv.UNIT_SECONDS,
            description="Wall time of one batch operation run.",
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.stage_duration = meter.create_histogram(
            semconv.INSTR_STAGE_DURATION,
            unit=semconv.UNIT_SECONDS,
            description="Wall time of one stage of a batch operation.",
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.operations = meter.create_counter(
            semconv.INSTR_OPERATIONS,
            unit=semconv.UNIT_OPERATIONS,
            description="Batch operation runs finished, by outcome.",
        )
        self.items = meter.create_counter(
            semconv.INSTR_ITEMS,
            unit=semconv.UNIT_ITEMS,
            description="Work items finished, by outcome.",
        )
        self.item_work = meter.create_counter(
            semconv.INSTR_ITEM_WORK,
            unit=semconv.UNIT_SECONDS,
            description=(
                "Seconds of item work, summed over items "
                "(over the runs' wall time: parallel efficiency)."
            ),
        )
        self.tokens = meter.create_counter(
            semconv.INSTR_TOKENS,
            unit=semconv.UNIT_TOKENS,
            description="LLM tokens used, by type (input, output, cache_read) and model.",
        )
        self.errors = meter.create_counter(
            semconv.INSTR_ERRORS,
            unit=semconv.UNIT_ERRORS,
            description="Errors of items, stages and operation runs, by error type.",
        )
        self.last_completion = meter.create_gauge(
            semconv.INSTR_LAST_COMPLETION,
            unit=semconv.UNIT_SECONDS,
            description="Unix time at which an operation run last finished, by outcome.",
        )
        self.last_success = meter.create_gauge(
            semconv.INSTR_LAST_SUCCESS,
            unit=semconv.UNIT_SECONDS,
            description="Unix time at which an operation run last finished successfully.",
        )
        self.operations_running = meter.create_up_down_counter(
            semconv.INSTR_RUNNING_OPERATIONS,
            unit=semconv.UNIT_OPERATIONS,
            description="Batch operation runs in progress.",
        )
        self.items_running = meter.create_up_down_counter(
            semconv.INSTR_RUNNING_ITEMS,
            unit=semconv.UNIT_ITEMS,
            description="Work items in progress.",
        )

    def record_operation_start(self, operation: str) -> None:
        """One more run of ``operation`` in progress."""
        try:
            self.operations_running.add(1, {semconv.LABEL_OPERATION: operation})
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_operation_end(self, operation: str, outcome: str, duration_s: float) -> None:
        """A run of ``operation`` finished after ``duration_s`` seconds with ``outcome``."""
        try:
            op = {semconv.LABEL_OPERATION: operation}
            op_outcome = {semconv.LABEL_OPERATION: operation, semconv.LABEL_OUTCOME: outcome}
            now = time.time()
            self.operations_running.add(-1, op)
            self.operation_duration.record(duration_s, op_outcome)
            self.operations.add(1, op_outcome)
            self.last_completion.set(now, op_outcome)
            if outcome == "success":
                self.last_success.set(now, op)
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_stage_end(self, operation: str, stage: int, duration_s: float) -> None:
        """A stage of ``operation`` finished after ``duration_s`` seconds."""
        try:
            self.stage_duration.record(
                duration_s, {semconv.LABEL_OPERATION: operation, semconv.LABEL_STAGE: str(stage)}
            )
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_item_start(self, operation: str) -> None:
        """One more item of ``operation`` in progress."""
        try:
            self.items_running.add(1, {semconv.LABEL_OPERATION: operation})
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_item_end(
        self, operation: str, outcome: str, duration_s: float, *, was_running: bool
    ) -> None:
        """An item finished with ``outcome`` after ``duration_s`` seconds of work.

        ``was_running`` if it was counted as running.
        """
        try:
            op = {semconv.LABEL_OPERATION: operation}
            if was_running:
                self.items_running.add(-1, op)
            self.items.add(1, {**op, semconv.LABEL_OUTCOME: outcome})
            self.item_work.add(duration_s, op)
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_error(self, operation: str, error_type: str) -> None:
        """One error of ``error_type`` in ``operation``."""
        try:
            self.errors.add(
                1, {semconv.LABEL_OPERATION: operation, semconv.LABEL_ERROR_TYPE: error_type}
            )
        except Exception as exc:
            report_internal_error(_KIND, exc)

    def record_tokens(
        self, operation: str, model: str, input_tokens: int, output_tokens: int, cache_read: int
    ) -> None:
        """Token usage of one call; cache reads only when some were reported."""
        try:
            labels = {semconv.LABEL_OPERATION: operation, semconv.LABEL_MODEL: model}
            self.tokens.add(input_tokens, {**labels, semconv.LABEL_TYPE: "input"})
            self.tokens.add(output_tokens, {**labels, semconv.LABEL_TYPE: "output"})
            if cache_read:
                self.tokens.add(cache_read, {**labels, semconv.LABEL_TYPE: "cache_read"})
        except Exception as exc:
            report_internal_error(_KIND, exc)


_NOOP: Final = Instruments(NoOpMeter(semconv.METER_NAME))
_cache: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_cache_lock: Final = threading.Lock()


def instruments_for(provider: MeterProvider | None) -> Instruments:
    """The instruments of ``provider`` (the global one if None), created once per provider.

    If the provider fails to make them, the failure is logged once and no-op instruments are
    returned, so the caller always has something to record on.
    """
    try:
        if provider is None:
            provider = metrics.get_meter_provider()
        try:
            found = _cache.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: do not cache
            return Instruments(provider.get_meter(semconv.METER_NAME))
        if found is not None:
            return found
        with _cache_lock:
            found = _cache.get(provider)
            if found is None:
                found = Instruments(provider.get_meter(semconv.METER_NAME))
                _cache[provider] = found
            return found
    except Exception as exc:
        report_internal_error("metrics setup", exc)
        return _NOOP
