"""Work items: ``with item(...)`` while one runs, ``mark_item(...)`` once its outcome is known."""

from __future__ import annotations

import math
import time
from contextvars import Token
from types import TracebackType
from typing import Self

from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._guard import logger, report_bad_argument, report_internal_error
from instrumentation._spans import (
    activate,
    bounded_message,
    child_span,
    deactivate,
    end_span,
    truncate,
)
from instrumentation._state import CURRENT, ItemState, Scope, enter, leave, usage_attributes


def _check_outcome(outcome: str) -> semconv.ItemOutcome:
    for known in semconv.ITEM_OUTCOMES:
        if outcome == known:
            return known
    raise ValueError(
        f"unknown item outcome {outcome!r}; expected one of " + ", ".join(semconv.ITEM_OUTCOMES)
    )


def _start_item(scope: Scope, item_id: str, start_time: int | None = None) -> ItemState:
    def attributes() -> dict[str, AttributeValue]:
        found: dict[str, AttributeValue] = {
            semconv.ATTR_KIND: semconv.KIND_ITEM,
            semconv.ATTR_ITEM_ID: item_id,
        }
        if scope.stage is not None:
            found[semconv.ATTR_STAGE] = scope.stage.stage
        return found

    span = child_span(
        scope.batch.recording,
        scope.batch.tracer,
        f"{semconv.SPAN_ITEM} {item_id}",
        attributes,
        start_time=start_time,
    )
    return ItemState(scope.batch, scope.stage, item_id, span)


def _finish_item(
    state: ItemState,
    outcome: semconv.ItemOutcome,
    error_type: str | None,
    message: str | None,
    exc: BaseException | None,
    *,
    duration_s: float,
    was_running: bool,
    end_time: int | None = None,
) -> None:
    """Record the end of an item: span attributes and status, item, work and error metrics."""
    batch = state.batch
    if exc is not None:
        outcome, error_type = "failure", type(exc).__qualname__
    elif outcome == "success":
        error_type = message = None  # a succeeded item carries no error
    elif error_type is not None:
        error_type = truncate(error_type, semconv.MAX_LABEL_LENGTH)
    elif outcome == "failure":
        error_type = semconv.ERROR_TYPE_OTHER
    batch.count_item(state.item_id, outcome)
    if error_type is not None:
        batch.count_error(error_type, exc)
    attributes: dict[str, AttributeValue] = {}
    description = None
    if state.span.is_recording():
        attributes[semconv.ATTR_OUTCOME] = outcome
        if error_type is not None:
            attributes[semconv.ATTR_ERROR_TYPE] = error_type
        if isinstance(exc, Exception):
            message = bounded_message(exc)
        elif message is not None:
            message = truncate(message, semconv.MAX_ERROR_MESSAGE)
        if message:
            attributes[semconv.ATTR_ERROR_MESSAGE] = message
        attributes.update(usage_attributes(state.usage))
        description = message or error_type
    end_span(
        state.span,
        attributes,
        exc=exc,
        failed=outcome == "failure",
        description=description,
        end_time=end_time,
    )
    batch.instruments.record_item_end(batch.operation, outcome, duration_s, was_running=was_running)


class Item:
    """One work item of the current stage; see :func:`item`."""

    __slots__ = (
        "_context_token",
        "_entered",
        "_scope_token",
        "_started",
        "_state",
        "error_type",
        "item_id",
        "message",
        "outcome",
    )

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        self.outcome: semconv.ItemOutcome = "success"
        self.error_type: str | None = None
        self.message: str | None = None
        self._entered = False
        self._started = 0.0
        self._state: ItemState | None = None
        self._scope_token: Token[Scope | None] | None = None
        self._context_token: Token[Context] | None = None

    def set_outcome(
        self,
        outcome: semconv.ItemOutcome,
        *,
        error_type: str | None = None,
        message: str | None = None,
    ) -> None:
        """Set how the item ended (success, failure or partial), with an error type and message.

        An exception escaping the block still wins: the item is then a failure of that type.
        Raises ValueError for an unknown outcome.
        """
        self.outcome = _check_outcome(outcome)
        self.error_type = error_type
        self.message = message

    def __enter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an item(...) context can be entered only once")
        self._entered = True
        scope = CURRENT.get()
        if scope is None:
            logger.debug("item %r outside a batch: not recorded", self.item_id)
            return self
        try:
            state = _start_item(scope, self.item_id)
            self._context_token = activate(state.span)
            self._scope_token = enter(Scope(scope.batch, scope.stage, state))
            self._state = state
            self._started = time.perf_counter()
            state.batch.instruments.record_item_start(state.batch.operation)
        except Exception as exc:
            report_internal_error("item start", exc)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return
        try:
            if self._scope_token is not None:
                leave(self._scope_token)
            deactivate(self._context_token)
            duration = time.perf_counter() - self._started
            _finish_item(
                state,
                self.outcome,
                self.error_type,
                self.message,
                exc,
                duration_s=duration,
                was_running=True,
            )
        except Exception as error:
            report_internal_error("item end", error)


def item(item_id: str) -> Item:
    """Trace one work item (a PRP) of the current stage: ``with item("PRP-47.1.1") as it:``.

    The item succeeds unless ``it.set_outcome(...)`` says otherwise or an exception escapes
    the block; then it is a failure with ``error.type`` set to the exception's qualified name
    and ``batch.error.message`` to its (truncated) text, and the exception is re-raised
    unchanged. Works in threads and coroutines alike; outside a batch nothing is recorded.
    """
    return Item(truncate(str(item_id), semconv.MAX_ID_LENGTH))


def mark_item(
    item_id: str,
    outcome: semconv.ItemOutcome,
    *,
    duration_seconds: float | None = None,
    error_type: str | None = None,
    message: str | None = None,
) -> None:
    """Record an item whose outcome is known after the fact (e.g. from a result file).

    Emits the item's span in the current stage, ending now and started ``duration_seconds``
    ago (zero length if not given). Raises ValueError for an unknown outcome; an unusable
    duration is logged (once) and taken as zero.
    """
    checked = _check_outcome(outcome)
    scope = CURRENT.get()
    if scope is None:
        logger.debug("mark_item(%r) outside a batch: not recorded", item_id)
        return
    try:
        seconds = _checked_duration(duration_seconds)
        end_time = time.time_ns()
        start_time = end_time - int(seconds * 1e9)
        state = _start_item(scope, truncate(str(item_id), semconv.MAX_ID_LENGTH), start_time)
        _finish_item(
            state,
            checked,
            error_type,
            message,
            None,
            duration_s=seconds,
            was_running=False,
            end_time=end_time,
        )
    except Exception as exc:
        report_internal_error("mark_item", exc)


def _checked_duration(duration_seconds: float | None) -> float:
    """``duration_seconds`` as a usable number of seconds; zero (logged once) if unusable."""
    if duration_seconds is None:
        return 0.0
    if (
        isinstance(duration_seconds, bool)
        or not isinstance(duration_seconds, int | float)
        or not math.isfinite(duration_seconds)
        or duration_seconds < 0
    ):
        report_bad_argument(
            "mark_item() duration",
            f"duration_seconds must be a finite number >= 0, not {duration_seconds!r}; "
            "the item is recorded with zero duration",
        )
        return 0.0
    return float(duration_seconds)
