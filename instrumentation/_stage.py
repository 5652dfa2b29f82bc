"""``traced_stage``: one stage of a batch, as a decorator (sync or async) or a context manager."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar, cast

from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._guard import logger, report_internal_error
from instrumentation._spans import activate, child_span, deactivate, end_scope_span
from instrumentation._state import CURRENT, Scope, StageState, enter, leave
from instrumentation._sync_async import SyncAndAsyncContext

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(slots=True)
class _Open:
    """What closing a stage needs to undo."""

    state: StageState
    scope_token: Token[Scope | None]
    context_token: Token[Context] | None
    started: float


# Stages opened by ``with traced_stage(...)`` in this context, innermost last, with the
# instance that opened each. One instance (a module-level ``S2 = stage(2)``) entered by
# concurrent threads or tasks thus closes each one's own stage. A tuple, so a context copied
# into a task or thread never changes ours; one module-level variable, as contextvars advise.
_OPEN: Final[ContextVar[tuple[tuple[traced_stage, _Open | None], ...]]] = ContextVar(
    "batch_metrics_open_stages", default=()
)


def _open(stage: int, name: str | None) -> _Open | None:
    """Start a stage in the current batch; None (and nothing recorded) outside any batch."""
    scope = CURRENT.get()
    if scope is None:
        logger.debug("stage %d outside a batch: not recorded", stage)
        return None
    try:

        def attributes() -> dict[str, AttributeValue]:
            found: dict[str, AttributeValue] = {
                semconv.ATTR_KIND: semconv.KIND_STAGE,
                semconv.ATTR_STAGE: stage,
            }
            if name is not None:
                found[semconv.ATTR_STAGE_NAME] = name
            return found

        span = child_span(
            scope.batch.recording,
            scope.batch.tracer,
            f"{semconv.SPAN_STAGE} {stage}",
            attributes,
        )
        state = StageState(scope.batch, stage, span)
        context_token = activate(span)
        scope_token = enter(Scope(scope.batch, state))
        return _Open(state, scope_token, context_token, time.perf_counter())
    except Exception as exc:
        report_internal_error("stage start", exc)
        return None


def _close(opened: _Open | None, exc: BaseException | None) -> None:
    """End a stage opened by :func:`_open`; ``exc`` is what escaped its body, if anything."""
    if opened is None:
        return
    try:
        duration = time.perf_counter() - opened.started
        leave(opened.scope_token)
        deactivate(opened.context_token)
        state = opened.state
        if exc is not None:
            state.batch.count_error(type(exc).__qualname__, exc)
        end_scope_span(state.span, exc, state.usage)
        state.batch.instruments.record_stage_end(state.batch.operation, state.stage, duration)
    except Exception as error:
        report_internal_error("stage end", error)


class traced_stage(SyncAndAsyncContext):  # lower case: it is used like a function, as a decorator
    """One stage of the current batch: ``@traced_stage(2)`` on a function, or ``with stage(2):``.

    Opens the span ``batch.stage {stage}`` (attributes ``batch.span.kind="stage"``,
    ``batch.stage``, ``batch.stage.name``) and records ``batch.stage.duration``. As a decorator
    it accepts plain and ``async def`` functions, and the stage name defaults to the function's
    name. Outside a batch nothing is recorded. The function's return value and exceptions pass
    through unchanged.
    """

    __slots__ = ("name", "stage")

    def __init__(self, stage: int, name: str | None = None) -> None:
        if isinstance(stage, bool) or not isinstance(stage, int) or stage < 0:
            raise ValueError(f"stage must be a non-negative integer, not {stage!r}")
        self.stage = stage
        self.name = name

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@traced_stage cannot time the generator function {fn.__qualname__!r}: "
                "decorate the function that consumes it, or use `with stage(n):`"
            )
        number = self.stage
        name = fn.__name__ if self.name is None else self.name
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def traced_coroutine(*args: P.args, **kwargs: P.kwargs) -> Any:
                opened = _open(number, name)
                try:
                    result = await async_fn(*args, **kwargs)
                except BaseException as exc:
                    _close(opened, exc)
                    raise
                _close(opened, None)
                return result

            return cast(Callable[P, R], traced_coroutine)

        @functools.wraps(fn)
        def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            opened = _open(number, name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _close(opened, exc)
                raise
            _close(opened, None)
            return result

        return traced

    def __enter__(self) -> Self:
        _OPEN.set((*_OPEN.get(), (self, _open(self.stage, self.name))))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        opened = _OPEN.get()
        for index in range(len(opened) - 1, -1, -1):
            owner, entry = opened[index]
            if owner is self:
                _OPEN.set(opened[:index] + opened[index + 1 :])
                _close(entry, exc)
                return


stage = traced_stage
"""Alias of :class:`traced_stage` that reads better as a context manager: ``with stage(2):``."""
