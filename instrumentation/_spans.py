"""Span plumbing: tracers cached per provider, spans started and ended without raising."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Span, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._guard import report_internal_error
from instrumentation._state import Usage, usage_attributes

Attributes = Mapping[str, AttributeValue]

_NOOP_TRACER: Final = NoOpTracer()
_cache: weakref.WeakKeyDictionary[TracerProvider, Tracer] = weakref.WeakKeyDictionary()
_cache_lock: Final = threading.Lock()


def tracer_for(provider: TracerProvider | None) -> Tracer:
    """The batch tracer of ``provider`` (the global one if None), created once per provider."""
    try:
        if provider is None:
            provider = trace.get_tracer_provider()
        try:
            found = _cache.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: do not cache
            return provider.get_tracer(semconv.TRACER_NAME)
        if found is not None:
            return found
        with _cache_lock:
            found = _cache.get(provider)
            if found is None:
                found = provider.get_tracer(semconv.TRACER_NAME)
                _cache[provider] = found
            return found
    except Exception as exc:
        report_internal_error("tracer setup", exc)
        return _NOOP_TRACER


def start_span(
    tracer: Tracer, name: str, attributes: Attributes, *, start_time: int | None = None
) -> Span:
    """Start a child of the current span; on failure log once and return the invalid span."""
    try:
        return tracer.start_span(name, attributes=attributes, start_time=start_time)
    except Exception as exc:
        report_internal_error("span start", exc)
        return trace.INVALID_SPAN


def child_span(
    batch_recording: bool,
    tracer: Tracer,
    name: str,
    attributes: Callable[[], Attributes],
    *,
    start_time: int | None = None,
) -> Span:
    """A stage's or item's span: started only when its batch records (else the invalid span).

    ``attributes`` is called only then, so an untraced batch builds none.
    """
    if not batch_recording:
        return trace.INVALID_SPAN
    return start_span(tracer, name, attributes(), start_time=start_time)


def activate(span: Span) -> Token[Context] | None:
    """Make ``span`` the current span; the token undoes it (None if there is nothing to undo).

    The invalid span (an untraced batch's stages and items) is not attached: the batch's own
    span already is the current one.
    """
    if span is trace.INVALID_SPAN:
        return None
    try:
        return otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:
        report_internal_error("context attach", exc)
        return None


def deactivate(token: Token[Context] | None) -> None:
    """Undo :func:`activate`."""
    if token is None:
        return
    try:
        otel_context.detach(token)
    except Exception as exc:
        report_internal_error("context detach", exc)


def end_span(
    span: Span,
    attributes: Attributes,
    *,
    exc: BaseException | None,
    failed: bool,
    description: str | None,
    end_time: int | None = None,
) -> None:
    """Set the final attributes and status of ``span`` and end it.

    An ``Exception`` is recorded as an exception event and the status is ERROR. A bare
    ``BaseException`` (KeyboardInterrupt, CancelledError) is not recorded as an event: the span
    only ends. ``failed`` sets status ERROR without an exception (an item marked failure).
    """
    if span is trace.INVALID_SPAN:  # an untraced batch's stage or item: nothing to end
        return
    try:
        if span.is_recording():
            span.set_attributes(attributes)
            if isinstance(exc, Exception):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, description))
            elif failed and exc is None:
                span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time=end_time)
    except Exception as error:
        report_internal_error("span end", error)


def end_scope_span(
    span: Span,
    exc: BaseException | None,
    usage: Usage | None,
    outcome: str | None = None,
) -> None:
    """End the span of a batch or stage: its outcome, token ``usage`` and what escaped it."""
    attributes: dict[str, AttributeValue] = {}
    description = None
    if span.is_recording():
        if outcome is not None:
            attributes[semconv.ATTR_OUTCOME] = outcome
        attributes.update(usage_attributes(usage))
        if exc is not None:
            attributes[semconv.ATTR_ERROR_TYPE] = type(exc).__qualname__
        description = describe(exc)
    end_span(span, attributes, exc=exc, failed=False, description=description)


def describe(exc: BaseException | None) -> str | None:
    """A bounded one-line description of ``exc`` for a span status (None for no exception)."""
    if exc is None:
        return None
    return bounded_message(exc, prefix=f"{type(exc).__qualname__}: ")


def bounded_message(exc: BaseException, prefix: str = "") -> str:
    """``prefix + str(exc)`` cut to :data:`semconv.MAX_ERROR_MESSAGE` characters.

    An exception whose ``__str__`` itself fails is described by its prefix alone.
    """
    try:
        text = f"{prefix}{exc}"
    except Exception:
        text = prefix.rstrip(": ")
    return truncate(text, semconv.MAX_ERROR_MESSAGE)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
