"""A span processor that writes one archive record when a batch span ends.

It follows each ``batch`` span from its start: every span started under it (stage, item, or any
other span below them, such as a subagent's LLM calls) is attributed to it through its parent,
and its finished spans are buffered. When the batch span ends, the buffer is assembled into a
:class:`~exporter.archive.model.BatchRecord` and written with
:func:`exporter.archive.files.write_record`, and
the run's cost is added to the ``batch.cost.usd`` counter (the instrumentation knows no prices).

That work runs in the thread that ends the batch span: one small local file write per batch,
nothing per item. Memory is bounded: at most ``max_open_batches`` batches are followed at once
(the oldest is dropped when a new one starts beyond that) and at most ``max_spans_per_batch``
spans are kept per batch (later ones are counted and named in the record's ``notes``).
A batch still running when the processor shuts down (at interpreter exit, say) is written
with status ``crashed``, ending at the shutdown, rather than lost.

A process that dies without shutting down (SIGKILL, OOM, power loss) cannot write anything, so
each running batch also has an in-flight marker (:mod:`exporter.archive.recovery`): written
and fsynced
at batch start, rewritten with what is known when a span of the batch ends and at least
``checkpoint_interval`` seconds have passed since the last one (never per item in a busy
batch), and removed once the record is written. ``batch-metrics recover`` (and ``configure()``
at start-up) turns the markers of dead processes into ``crashed`` records.

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

from exporter.archive.files import ArchiveError, write_record
from exporter.archive.model import BatchRecord, describe_validation_error
from exporter.archive.pricing import PricingTable, default_pricing
from exporter.archive.recovery import remove_marker, write_marker
from exporter.sdk.assemble import AssembleError, assemble
from instrumentation import contract
from instrumentation import semconv as sc

__all__ = [
    "DEFAULT_CHECKPOINT_SECONDS",
    "DEFAULT_MAX_OPEN_BATCHES",
    "DEFAULT_MAX_SPANS_PER_BATCH",
    "ArchiveSpanProcessor",
]

logger: Final = logging.getLogger("exporter")

DEFAULT_MAX_OPEN_BATCHES: Final = 256
DEFAULT_MAX_SPANS_PER_BATCH: Final = 20_000
# Minimum time between two updates of a batch's in-flight marker. Each update assembles the
# spans so far (a few ms for a few hundred items) in the thread that ended a span.
DEFAULT_CHECKPOINT_SECONDS: Final = 5.0
_SHOWN_ID: Final = 40  # characters of a (possibly hostile) batch id shown in a log line


@dataclass(slots=True)
class _Batch:
    root: ReadableSpan  # the live batch span (an SDK Span is a ReadableSpan)
    spans: list[ReadableSpan] = field(default_factory=list)
    members: set[int] = field(default_factory=set)  # span ids started under this batch
    dropped: int = 0
    # -- in-flight marker: guarded by checkpoint_lock, except next_checkpoint (processor lock)
    checkpoint_lock: threading.Lock = field(default_factory=threading.Lock)
    next_checkpoint: float = 0.0  # time.monotonic() after which an ended span checkpoints
    marker: Path | None = None  # written at least once: remove it once recorded
    marker_error: str | None = None  # why the marker could not be written (logged at the end)
    closed: bool = False  # the record is being written: no more checkpoints


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
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_SECONDS,
    ) -> None:
        """``checkpoint_interval=None`` keeps no in-flight markers (no crash recovery)."""
        if max_open_batches < 1 or max_spans_per_batch < 1:
            raise ValueError("max_open_batches and max_spans_per_batch must be at least 1")
        if checkpoint_interval is not None and checkpoint_interval < 0:
            raise ValueError("checkpoint_interval must not be negative")
        self.archive_dir = Path(archive_dir)
        self._checkpoint_interval = checkpoint_interval
        self._pricing = pricing or default_pricing()
        self._max_open = max_open_batches
        self._max_spans = max_spans_per_batch
        meter = (meter_provider or get_meter_provider()).get_meter(sc.METER_NAME)
        cost = contract.COST
        self._cost: Counter = meter.create_counter(
            cost.otel_name, unit=cost.unit, description=cost.help
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
            started, evicted = self._start(span)
            if evicted is not None:
                self._drop_marker(evicted)
            if started is not None:
                self._checkpoint(started, durable=True)
        except Exception:
            self._warn_once("internal", "batch-metrics exporter failed on span start", exc=True)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            finished, due = self._end(span)
            if finished is not None:
                self._finish(span, finished)
            elif due is not None:
                self._checkpoint(due, durable=False)
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

    def _start(self, span: Span) -> tuple[_Batch | None, _Batch | None]:
        """Follow ``span``; return the batch it starts (if it is a batch span) and the one
        evicted to make room for it."""
        context = span.get_span_context()
        attrs = span.attributes or {}
        with self._lock:
            if self._shut_down:
                return None, None
            if attrs.get(sc.ATTR_KIND) == sc.KIND_BATCH:
                evicted = None
                if len(self._batches) >= self._max_open:
                    _, evicted = self._batches.popitem(last=False)
                    for member in evicted.members:
                        self._owner.pop(member, None)
                    self._warn_once(
                        "open-batches",
                        "more than %d batches running at once; the oldest will not be recorded",
                        self._max_open,
                    )
                batch = _Batch(span, members={context.span_id})
                self._batches[context.span_id] = batch
                self._owner[context.span_id] = context.span_id
                return (batch if self._checkpoint_interval is not None else None), evicted
            parent = span.parent
            root = self._owner.get(parent.span_id) if parent is not None else None
            owner = self._batches.get(root) if root is not None else None
            if root is None or owner is None:
                return None, None
            if len(owner.members) >= self._max_spans:
                owner.dropped += 1
                self._warn_once(
                    "spans-per-batch",
                    "a batch has more than %d spans; later ones are not recorded",
                    self._max_spans,
                )
                return None, None
            owner.members.add(context.span_id)
            self._owner[context.span_id] = root
            return None, None

    def _end(self, span: ReadableSpan) -> tuple[_Batch | None, _Batch | None]:
        """Buffer ``span``; return (its batch, None) when ``span`` is the batch span itself,
        (None, its batch) when the batch's in-flight marker is due for an update."""
        if span.context is None:
            return None, None
        span_id = span.context.span_id
        with self._lock:
            root = self._owner.pop(span_id, None)
            batch = self._batches.get(root) if root is not None else None
            if root is None or batch is None:
                return None, None
            batch.spans.append(span)
            if span_id != root:
                return None, self._due(batch)
            del self._batches[root]
            for member in batch.members:
                self._owner.pop(member, None)
            return batch, None

    def _due(self, batch: _Batch) -> _Batch | None:
        """``batch`` if its marker should be updated now (the caller holds the lock)."""
        if self._checkpoint_interval is None or batch.marker is None:
            return None
        now = time.monotonic()
        if now < batch.next_checkpoint:
            return None
        batch.next_checkpoint = now + self._checkpoint_interval
        return batch

    def _notes(self, batch: _Batch) -> list[str]:
        if not batch.dropped:
            return []
        return [
            f"{batch.dropped} spans beyond the limit of {self._max_spans} per batch "
            "were not recorded; counts may be low"
        ]

    def _checkpoint(self, batch: _Batch, *, durable: bool) -> None:
        """Write what is known of the running ``batch`` to its in-flight marker."""
        with batch.checkpoint_lock:
            if batch.closed or batch.marker_error is not None:
                return
            with self._lock:
                spans = [*batch.spans, batch.root]
                notes = self._notes(batch)
                if batch.marker is None and self._checkpoint_interval is not None:
                    batch.next_checkpoint = time.monotonic() + self._checkpoint_interval
            try:
                record = assemble(
                    spans, pricing=self._pricing, notes=notes, crashed_at=time.time_ns()
                )
            except Exception as exc:
                # Not recordable (a hostile batch id, or a bug): the batch's end says so, once.
                batch.marker_error = _one_line(exc)
                return
            try:
                batch.marker = write_marker(self.archive_dir, record, durable=durable)
            except ArchiveError as exc:
                batch.marker_error = str(exc)

    def _drop_marker(self, batch: _Batch) -> None:
        with batch.checkpoint_lock:
            batch.closed = True
            marker, batch.marker = batch.marker, None
        if marker is not None:
            try:
                remove_marker(marker)
            except ArchiveError as exc:
                self._warn_once("marker", "batch-metrics exporter: %s", exc)

    def _finish(self, root: ReadableSpan, batch: _Batch, crashed_at: int | None = None) -> None:
        with batch.checkpoint_lock:  # waits for a checkpoint being written; no more after
            batch.closed = True
        notes = self._notes(batch)
        spans = batch.spans
        if crashed_at is not None:
            notes.append("the process shut down while this batch was running")
            spans = [*spans, batch.root]
        try:
            record = assemble(spans, pricing=self._pricing, notes=notes, crashed_at=crashed_at)
        except (AssembleError, ValidationError) as exc:
            self._warn_once(
                "invalid-batch",
                "batch %s was not recorded: %s",
                _shown((root.attributes or {}).get(sc.ATTR_BATCH_ID)),
                _one_line(exc),
            )
            self._drop_marker(batch)
            return
        self._count_cost(record)
        try:
            path = write_record(self.archive_dir, record)
        except ArchiveError as exc:
            kept = self._keep_in_marker(batch, record)
            self._warn_once(
                "write",
                "batch %s was not recorded: %s%s",
                _shown(record.batch_id),
                exc,
                f"; kept in {kept} for 'batch-metrics recover'" if kept else "",
            )
            return
        logger.info("recorded batch %s %s in %s", record.batch_id, record.operation, path)
        with self._lock:
            self._written.append(path)
        self._drop_marker(batch)
        if batch.marker_error is not None:
            self._warn_once(
                "marker",
                "batch %s ran without crash recovery: %s",
                _shown(record.batch_id),
                batch.marker_error,
            )

    def _keep_in_marker(self, batch: _Batch, record: BatchRecord) -> Path | None:
        """Store the final record in the batch's marker when the archive refused it."""
        if batch.marker is None:
            return None
        try:
            return write_marker(self.archive_dir, record, durable=True, complete=True)
        except ArchiveError:
            return None

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


def _shown(batch_id: object) -> str:
    """A batch id for a log line: repr'd (NUL and newlines escaped) and bounded."""
    text = str(batch_id)
    return repr(text[:_SHOWN_ID] + ("..." if len(text) > _SHOWN_ID else ""))


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
