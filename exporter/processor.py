"""A span processor that writes one archive record when a batch span ends.

It follows each ``batch`` span from its start: every span started under it (stage, item, or any
other span below them, such as a subagent's LLM calls) is attributed to it through its parent,
and its finished spans are buffered. When the batch span ends, the buffer is assembled into a
:class:`~exporter.model.BatchRecord` and written with :func:`exporter.archive.write_record`, and
the run's cost is added to the ``batch.cost.usd`` counter (the instrumentation knows no prices).

That work runs in the thread that ends the batch span: one small local file write per batch,
nothing per item. Memory is bounded: at most ``max_open_batches`` batches are followed at once
(the oldest is dropped when a new one starts beyond that) and at most ``max_spans_per_batch``
spans are kept per batch (later ones are counted and named in the record's ``notes``).
A batch still running when the processor shuts down (at interpreter exit, say) is written
with status ``crashed``, ending at the shutdown, rather than lost.

The processor never raises into the host. A failure (read-only or full disk, an invalid batch
id, a bug) is logged on the ``exporter`` logger, with its reason, once per kind; later ones of
the same kind go to debug level, and the batch code returns normally.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from opentelemetry import context as context_api
from opentelemetry.metrics import Counter, MeterProvider, get_meter_provider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from pydantic import ValidationError

from exporter.archive import ArchiveError, write_record
from exporter.assemble import AssembleError, assemble
from exporter.model import BatchRecord, describe_validation_error
from exporter.pricing import PricingTable, default_pricing
from instrumentation import semconv as sc

__all__ = ["DEFAULT_MAX_OPEN_BATCHES", "DEFAULT_MAX_SPANS_PER_BATCH", "ArchiveSpanProcessor"]

logger: Final = logging.getLogger("exporter")

DEFAULT_MAX_OPEN_BATCHES: Final = 256
DEFAULT_MAX_SPANS_PER_BATCH: Final = 20_000


@dataclass(slots=True)
class _Batch:
    root: ReadableSpan  # the live batch span (an SDK Span is a ReadableSpan)
    spans: list[ReadableSpan] = field(default_factory=list)
    members: set[int] = field(default_factory=set)  # span ids started under this batch
    dropped: int = 0


class ArchiveSpanProcessor(SpanProcessor):
    """Assemble each finished batch span tree into a record in ``archive_dir``."""

    def __init__(
        self,
        archive_dir: Path | str,
        *,
        meter_provider: MeterProvider | None = None,
        pricing: PricingTable | None = None,
        max_open_batches: int = DEFAULT_MAX_OPEN_BATCHES,
        max_spans_per_batch: int = DEFAULT_MAX_SPANS_PER_BATCH,
    ) -> None:
        if max_open_batches < 1 or max_spans_per_batch < 1:
            raise ValueError("max_open_batches and max_spans_per_batch must be at least 1")
        self.archive_dir = Path(archive_dir)
        self._pricing = pricing or default_pricing()
        self._max_open = max_open_batches
        self._max_spans = max_spans_per_batch
        meter = (meter_provider or get_meter_provider()).get_meter(sc.METER_NAME)
        self._cost: Counter = meter.create_counter(
            sc.INSTR_COST, unit="{USD}", description="Cost of batch operations in USD"
        )
        self._lock = threading.Lock()
        self._batches: OrderedDict[int, _Batch] = OrderedDict()
        self._owner: dict[int, int] = {}  # started, not yet ended span id -> batch span id
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        self._shut_down = False
        self._written: deque[Path] = deque(maxlen=100)

    @property
    def written(self) -> tuple[Path, ...]:
        """Paths of the most recent records written (up to 100), oldest first."""
        with self._lock:
            return tuple(self._written)

    # -- SpanProcessor -------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            self._start(span)
        except Exception:
            self._warn_once("internal", "batch-metrics exporter failed on span start", exc=True)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            finished = self._end(span)
            if finished is not None:
                self._finish(span, finished)
        except Exception:
            self._warn_once("internal", "batch-metrics exporter failed on span end", exc=True)

    def shutdown(self) -> None:
        """Stop recording; batches still running are written as ``crashed`` (idempotent)."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
            running = list(self._batches.values())
            self._batches.clear()
            self._owner.clear()
        if running:
            logger.warning(
                "batch-metrics exporter shut down with %d batch(es) still running; "
                "recording them as crashed",
                len(running),
            )
        crashed_at = time.time_ns()
        for batch in running:
            try:
                self._finish(batch.root, batch, crashed_at=crashed_at)
            except Exception:
                self._warn_once("internal", "batch-metrics exporter failed on shutdown", exc=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Records are written synchronously when their batch ends: nothing is pending.
        return True

    # -- internals -----------------------------------------------------------------------

    def _start(self, span: Span) -> None:
        context = span.get_span_context()
        attrs = span.attributes or {}
        with self._lock:
            if self._shut_down:
                return
            if attrs.get(sc.ATTR_KIND) == "batch":
                if len(self._batches) >= self._max_open:
                    _, evicted = self._batches.popitem(last=False)
                    for member in evicted.members:
                        self._owner.pop(member, None)
                    self._warn_once(
                        "open-batches",
                        "more than %d batches running at once; the oldest will not be recorded",
                        self._max_open,
                    )
                self._batches[context.span_id] = _Batch(span, members={context.span_id})
                self._owner[context.span_id] = context.span_id
                return
            parent = span.parent
            root = self._owner.get(parent.span_id) if parent is not None else None
            batch = self._batches.get(root) if root is not None else None
            if root is None or batch is None:
                return
            if len(batch.members) >= self._max_spans:
                batch.dropped += 1
                self._warn_once(
                    "spans-per-batch",
                    "a batch has more than %d spans; later ones are not recorded",
                    self._max_spans,
                )
                return
            batch.members.add(context.span_id)
            self._owner[context.span_id] = root

    def _end(self, span: ReadableSpan) -> _Batch | None:
        """Buffer ``span``; return its batch when ``span`` is the batch span itself."""
        if span.context is None:
            return None
        span_id = span.context.span_id
        with self._lock:
            root = self._owner.pop(span_id, None)
            batch = self._batches.get(root) if root is not None else None
            if root is None or batch is None:
                return None
            batch.spans.append(span)
            if span_id != root:
                return None
            del self._batches[root]
            for member in batch.members:
                self._owner.pop(member, None)
            return batch

    def _finish(self, root: ReadableSpan, batch: _Batch, crashed_at: int | None = None) -> None:
        notes = []
        if batch.dropped:
            notes.append(
                f"{batch.dropped} spans beyond the limit of {self._max_spans} per batch "
                "were not recorded; counts may be low"
            )
        spans = batch.spans
        if crashed_at is not None:
            notes.append("the process shut down while this batch was running")
            spans = [*spans, batch.root]
        try:
            record = assemble(spans, pricing=self._pricing, notes=notes, crashed_at=crashed_at)
        except (AssembleError, ValidationError) as exc:
            self._warn_once(
                "invalid-batch",
                "batch %r was not recorded: %s",
                (root.attributes or {}).get(sc.ATTR_BATCH_ID),
                _one_line(exc),
            )
            return
        self._count_cost(record)
        try:
            path = write_record(self.archive_dir, record)
        except ArchiveError as exc:
            self._warn_once("write", "batch %r was not recorded: %s", record.batch_id, exc)
            return
        logger.info("recorded batch %s %s in %s", record.batch_id, record.operation, path)
        with self._lock:
            self._written.append(path)

    def _count_cost(self, record: BatchRecord) -> None:
        usage = record.metrics.token_usage
        for model in (usage.by_model or []) if usage is not None else []:
            if model.cost_usd:
                self._cost.add(
                    model.cost_usd,
                    {sc.LABEL_OPERATION: record.operation, sc.LABEL_MODEL: model.model},
                )

    def _warn_once(self, kind: str, message: str, *args: object, exc: bool = False) -> None:
        with self._warn_lock:
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            logger.error(
                message + " (further problems of this kind are logged at debug level)",
                *args,
                exc_info=exc,
            )
        else:
            logger.debug(message, *args, exc_info=exc)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
