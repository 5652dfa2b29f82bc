"""The current batch, stage and item: one context variable holding an immutable scope.

OpenTelemetry's own context is a context variable too, so both travel together: asyncio tasks
copy them when created, and :mod:`instrumentation._propagation` carries them into threads.
"""

from __future__ import annotations

import threading
from collections import deque
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from instrumentation import semconv
from instrumentation._instruments import Instruments

# Exceptions already counted by the errors metric, so one exception escaping an item, its stage
# and its batch counts once. Bounded: only recently seen exceptions are kept alive.
_SEEN_ERRORS_KEPT: Final = 64


@dataclass(eq=False, slots=True)
class Usage:
    """Running token totals of one span, set on it as attributes when it ends."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    calls: int = 0

    def add(self, input_tokens: int, output_tokens: int, cache_read: int) -> None:
        """Add one call's usage (the caller holds the batch lock)."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_read_tokens += cache_read
        self.calls += 1

    def attributes(self) -> dict[str, AttributeValue]:
        """The totals as span attributes; empty if no usage was recorded."""
        if not self.calls:
            return {}
        totals: dict[str, AttributeValue] = {
            semconv.ATTR_GENAI_INPUT_TOKENS: self.input_tokens,
            semconv.ATTR_GENAI_OUTPUT_TOKENS: self.output_tokens,
        }
        if self.cache_read_tokens:
            totals[semconv.ATTR_CACHE_READ_TOKENS] = self.cache_read_tokens
        return totals


@dataclass(eq=False, slots=True)
class BatchState:
    """One running batch operation; shared by every thread and task working on it."""

    batch_id: str
    operation: str
    run_id: str
    tracer: Tracer
    instruments: Instruments
    span: Span
    usage: Usage | None = None  # created by the first add_usage (see usage_attributes)
    lock: threading.Lock = field(default_factory=threading.Lock)
    total_items: int | None = None  # announced by the caller, if it did
    # Whether the batch's span records. When it does not (no SDK configured, or a sampler
    # said no) its stages and items start no spans of their own: they could not record
    # either, and skipping them keeps an untraced batch cheap.
    recording: bool = True
    # Last outcome of each item id: a retry replaces the earlier attempt (the last to end
    # wins, counted once), as the record does.
    outcomes: dict[str, semconv.ItemOutcome] = field(default_factory=dict)
    seen_errors: deque[BaseException] = field(
        default_factory=lambda: deque(maxlen=_SEEN_ERRORS_KEPT)
    )

    def count_item(self, item_id: str, outcome: semconv.ItemOutcome) -> None:
        """Note how item ``item_id`` ended; a later attempt of the same id replaces it."""
        with self.lock:
            self.outcomes[item_id] = outcome

    def counts(self) -> dict[str, int]:
        """Distinct items finished so far, by their last outcome (a new dict)."""
        counts: dict[str, int] = dict.fromkeys(semconv.ITEM_OUTCOMES, 0)
        with self.lock:
            for outcome in self.outcomes.values():
                counts[outcome] += 1
        return counts

    def count_error(self, error_type: str, exc: BaseException | None) -> None:
        """Count an error on the errors metric, once per exception object."""
        if exc is not None:
            with self.lock:
                if any(seen is exc for seen in self.seen_errors):
                    return
                self.seen_errors.append(exc)
        self.instruments.record_error(self.operation, error_type)

    def add_usage(
        self, owner: UsageOwner, input_tokens: int, output_tokens: int, cache: int
    ) -> None:
        """Add token usage to ``owner`` (this batch, or a stage or item of it) under its lock."""
        with self.lock:
            if owner.usage is None:
                owner.usage = Usage()
            owner.usage.add(input_tokens, output_tokens, cache)

    def outcome(self, failed: bool) -> semconv.OperationOutcome:
        """The run's outcome (:func:`semconv.run_outcome`); ``failed``: the body raised."""
        counts = self.counts()
        total = max(sum(counts.values()), self.total_items or 0)
        return semconv.run_outcome(total, counts["success"], counts["partial"], failed)


@dataclass(eq=False, slots=True)
class StageState:
    """One running stage of a batch."""

    batch: BatchState
    stage: int
    span: Span
    usage: Usage | None = None


@dataclass(eq=False, slots=True)
class ItemState:
    """One running work item."""

    batch: BatchState
    stage: StageState | None
    item_id: str
    span: Span
    usage: Usage | None = None


class Scope(NamedTuple):
    """What is current: the batch, and the stage and item inside it if any.

    A named tuple: immutable, and built on every stage and item, where a frozen dataclass
    costs twice as much.
    """

    batch: BatchState
    stage: StageState | None = None
    item: ItemState | None = None

    def innermost(self) -> UsageOwner:
        """The item, stage or batch that usage recorded now belongs to."""
        if self.item is not None:
            return self.item
        if self.stage is not None:
            return self.stage
        return self.batch


UsageOwner = BatchState | StageState | ItemState


def usage_attributes(usage: Usage | None) -> dict[str, AttributeValue]:
    """Token totals as span attributes; empty when none were recorded.

    Only recording spans collect usage: their totals are attributes, which nothing else reads.
    """
    return {} if usage is None else usage.attributes()


CURRENT: Final[ContextVar[Scope | None]] = ContextVar("batch_metrics_scope", default=None)


def enter(scope: Scope) -> Token[Scope | None]:
    """Make ``scope`` current; pass the token to :func:`leave`."""
    return CURRENT.set(scope)


def leave(token: Token[Scope | None]) -> None:
    """Restore the scope that was current before :func:`enter`.

    A scope left in another context than it was entered in (an async fixture torn down in a
    different task) cannot be reset by token; the previous value is set instead.
    """
    try:
        CURRENT.reset(token)
    except ValueError:
        previous = token.old_value
        CURRENT.set(None if previous is Token.MISSING else previous)
