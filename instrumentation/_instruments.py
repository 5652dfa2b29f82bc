"""The batch metrics: instruments created once per meter provider, recorded without raising."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import (
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    NoOpMeter,
    UpDownCounter,
    _Gauge,
)

from instrumentation import contract, semconv
from instrumentation._guard import report_internal_error

_KIND: Final = "metrics"


def _histogram(meter: Meter, spec: contract.MetricSpec) -> Histogram:
    return meter.create_histogram(
        spec.otel_name,
        unit=spec.unit,
        description=spec.help,
        explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS,
    )


def _counter(meter: Meter, spec: contract.MetricSpec) -> Counter:
    return meter.create_counter(spec.otel_name, unit=spec.unit, description=spec.help)


def _gauge(meter: Meter, spec: contract.MetricSpec) -> _Gauge:
    return meter.create_gauge(spec.otel_name, unit=spec.unit, description=spec.help)


def _up_down_counter(meter: Meter, spec: contract.MetricSpec) -> UpDownCounter:
    return meter.create_up_down_counter(spec.otel_name, unit=spec.unit, description=spec.help)


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
        self.operation_duration = _histogram(meter, contract.DURATION)
        self.stage_duration = _histogram(meter, contract.STAGE_DURATION)
        self.operations = _counter(meter, contract.OPERATIONS)
        self.items = _counter(meter, contract.ITEMS)
        self.item_work = _counter(meter, contract.ITEM_WORK)
        self.tokens = _counter(meter, contract.TOKENS)
        self.errors = _counter(meter, contract.ERRORS)
        self.last_completion = _gauge(meter, contract.LAST_COMPLETION)
        self.last_success = _gauge(meter, contract.LAST_SUCCESS)
        self.operations_running = _up_down_counter(meter, contract.OPERATIONS_RUNNING)
        self.items_running = _up_down_counter(meter, contract.ITEMS_RUNNING)

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
