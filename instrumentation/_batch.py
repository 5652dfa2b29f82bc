"""``batch(...)``: the root span and the operation metrics of one batch operation run."""

from __future__ import annotations

import time
import uuid
from contextvars import Token
from types import TracebackType
from typing import Self

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._guard import report_internal_error
from instrumentation._instruments import instruments_for
from instrumentation._spans import (
    activate,
    deactivate,
    end_scope_span,
    start_span,
    tracer_for,
)
from instrumentation._state import BatchState, Scope, enter, leave
from instrumentation._sync_async import SyncAndAsyncContext


class Batch(SyncAndAsyncContext):
    """One batch operation run, used as ``with`` or ``async with``; see :func:`batch`."""

    __slots__ = (
        "_context_token",
        "_entered",
        "_meter_provider",
        "_outcome",
        "_scope_token",
        "_started",
        "_state",
        "_total_items",
        "_tracer_provider",
        "batch_id",
        "operation",
        "run_id",
    )

    def __init__(
        self,
        batch_id: str,
        operation: semconv.Operation,
        *,
        run_id: str,
        total_items: int | None,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self.batch_id = batch_id
        self.operation: semconv.Operation = operation
        self.run_id = run_id
        self._total_items = total_items
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._entered = False
        self._state: BatchState | None = None
        self._scope_token: Token[Scope | None] | None = None
        self._context_token: Token[Context] | None = None
        self._started = 0.0
        self._outcome: str | None = None

    @property
    def outcome(self) -> str | None:
        """success, partial or failure once the batch has ended; None before."""
        return self._outcome

    @property
    def item_counts(self) -> dict[str, int]:
        """Distinct items finished so far, by their last outcome (a retry replaces an attempt)."""
        state = self._state
        if state is None:
            return dict.fromkeys(semconv.ITEM_OUTCOMES, 0)
        return state.counts()

    def __enter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a batch(...) context can be entered only once")
        self._entered = True
        try:
            self._start()
        except Exception as exc:
            report_internal_error("batch start", exc)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._finish(exc)
        except Exception as error:
            report_internal_error("batch end", error)

    def _start(self) -> None:
        attributes: dict[str, AttributeValue] = {
            semconv.ATTR_KIND: semconv.KIND_BATCH,
            semconv.ATTR_BATCH_ID: self.batch_id,
            semconv.ATTR_OPERATION: self.operation,
            semconv.ATTR_RUN_ID: self.run_id,
        }
        if self._total_items is not None:
            attributes[semconv.ATTR_TOTAL_ITEMS] = self._total_items
        tracer = tracer_for(self._tracer_provider)
        instruments = instruments_for(self._meter_provider)
        span = start_span(tracer, f"{semconv.SPAN_BATCH} {self.operation}", attributes)
        state = BatchState(
            self.batch_id,
            self.operation,
            self.run_id,
            tracer,
            instruments,
            span,
            total_items=self._total_items,
            recording=span.is_recording(),
        )
        self._context_token = activate(span)
        self._scope_token = enter(Scope(state))
        self._state = state
        self._started = time.perf_counter()
        instruments.record_operation_start(self.operation)

    def _finish(self, exc: BaseException | None) -> None:
        state = self._state
        if state is None:
            return
        duration = time.perf_counter() - self._started
        if self._scope_token is not None:
            leave(self._scope_token)
        deactivate(self._context_token)
        outcome = state.outcome(failed=exc is not None)
        self._outcome = outcome
        if exc is not None:
            state.count_error(type(exc).__qualname__, exc)
        end_scope_span(state.span, exc, state.usage, outcome)
        state.instruments.record_operation_end(self.operation, outcome, duration)


def batch(
    batch_id: str,
    operation: semconv.Operation,
    *,
    run_id: str | None = None,
    total_items: int | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Batch:
    """Trace and measure one run of a batch operation; use as ``with`` or ``async with``.

    Raises ValueError at once for an ``operation`` outside :data:`semconv.OPERATIONS` or a
    negative ``total_items``. ``run_id`` defaults to a fresh UUID4 (hex); pass the
    orchestrator's own id when a run is resumed.
    """
    if operation not in semconv.OPERATIONS:
        raise ValueError(
            f"unknown batch operation {operation!r}; expected one of "
            + ", ".join(semconv.OPERATIONS)
        )
    if total_items is not None and (
        isinstance(total_items, bool) or not isinstance(total_items, int) or total_items < 0
    ):
        raise ValueError(f"total_items must be a non-negative integer, not {total_items!r}")
    return Batch(
        str(batch_id),
        operation,
        run_id=uuid.uuid4().hex if run_id is None else str(run_id),
        total_items=total_items,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
